// Built-in alignment tasks with exact answers: questions about the facts of a synthetic story (who
// holds something, where something or someone is, what colour something is) and small arithmetic
// word problems. Every question is read from the world state the story was simulated with, so the
// answer is known; each also comes with a plausible wrong answer (another name, place, colour or a
// near number) and a rambling but correct answer, from which the preference pairs are built. The
// programmatic reward scores a response by whether it is the exact answer.
import { ArgumentError } from '../errors.js';
import { RandomStream, deriveSeed } from './rng.js';
import { generateStory, type Story } from './stories.js';
import { COLOURS, holderOf, placeOfCharacter, placeOfObject } from './world.js';

export type TaskKind = 'holder' | 'location' | 'colour' | 'arithmetic';
export const TASK_KINDS: readonly TaskKind[] = ['holder', 'location', 'colour', 'arithmetic'];

export interface TaskExample {
  kind: TaskKind;
  /** The user's turn: the story and the question, or the word problem. */
  prompt: string;
  /** The exact answer ("Anna", "kitchen", "red", "7"). */
  answer: string;
  /** A plausible wrong answer of the same type. */
  wrong: string;
  /** A correct answer buried in needless words. */
  rambling: string;
}

export interface TaskOptions {
  /** Split seed: different seeds give disjoint stories (pre-training uses the corpus of seed 0). */
  seed: number;
  count: number;
  /** Which kinds to draw (default all, in turn). */
  kinds?: readonly TaskKind[];
  /** Keeps only examples this accepts (for instance: the prompt fits the model's context). */
  accept?: (e: TaskExample) => boolean;
}

/** A preference pair in TRL's shape: the prompt and a preferred and a dispreferred response. */
export interface PreferencePair {
  prompt: string;
  chosen: string;
  rejected: string;
}

/** 'correct': the answer over a plausible wrong one; 'concise': the answer over a rambling version of it. */
export type PairKind = 'correct' | 'concise';

// The split seed is mixed with a constant so that split 0 is not the pre-training corpus of seed 0.
const SPLIT_SALT = 0x5eed_a1;

/**
 * `count` task examples of split `seed`, cycling through the kinds. Deterministic: the same options
 * give the same examples; two seeds share no story.
 */
export function taskExamples(options: TaskOptions): TaskExample[] {
  const kinds = options.kinds ?? TASK_KINDS;
  if (kinds.length === 0) throw new ArgumentError('taskExamples needs at least one kind');
  for (const k of kinds) if (!TASK_KINDS.includes(k)) throw new ArgumentError(`unknown task kind '${k}': choose ${TASK_KINDS.join(', ')}`);
  if (!Number.isInteger(options.count) || options.count < 0) throw new ArgumentError(`count must be a non-negative integer, got ${options.count}`);
  const base = deriveSeed((options.seed ^ SPLIT_SALT) >>> 0, 7);
  const out: TaskExample[] = [];
  let misses = 0;
  for (let i = 0; out.length < options.count; i++) {
    const kind = kinds[out.length % kinds.length];
    const rng = new RandomStream(deriveSeed(base, i));
    const e = kind === 'arithmetic' ? arithmeticProblem(rng) : storyQuestion(rng, kind);
    if (e && (!options.accept || options.accept(e))) {
      out.push(e);
      misses = 0;
    } else if (++misses > 1000) {
      throw new ArgumentError(`could not draw a '${kind}' example the filter accepts in 1000 tries (is the model's context too short for the stories?)`);
    }
  }
  return out;
}

// ---- story questions -----------------------------------------------------------------------------

const RAMBLE_OPENERS = [
  'Let me think about the story carefully.', 'That is a good question about the story.', 'I read the whole story again.',
  'Hmm, let me remember what happened.', 'Well, after thinking about every part of the story,',
];
const RAMBLE_CLOSERS = ['I am quite sure about that.', 'That is what the story says.', 'I hope that helps.', ''];

function ramble(rng: RandomStream, answer: string): string {
  return `${rng.pick(RAMBLE_OPENERS)} The answer is ${answer}. ${rng.pick(RAMBLE_CLOSERS)}`.trim();
}

const TASK_STORY = { places: 2, people: 2, animals: 0, surfaces: 0, containers: 0, items: 3 } as const;

/** A question of `kind` about story facts, or null when this story has none of that kind. */
function storyQuestion(rng: RandomStream, kind: Exclude<TaskKind, 'arithmetic'>): TaskExample | null {
  // Small casts (two people in two places, three things) and one or two events: a question then has
  // a few candidate answers in the text, and story and question fit a small model's context.
  const story = generateStory(rng.word(), { ...TASK_STORY, events: 1 + rng.int(2) });
  const q = kind === 'holder' ? holderQuestion(rng, story) : kind === 'location' ? locationQuestion(rng, story) : colourQuestion(rng, story);
  if (!q) return null;
  return { kind, prompt: `${story.text}\nQuestion: ${q.question}`, answer: q.answer, wrong: q.wrong, rambling: ramble(rng, q.answer) };
}

interface QA {
  question: string;
  answer: string;
  wrong: string;
}

/** Objects the text mentions, by id. */
function mentioned(story: Story): Set<number> {
  return new Set(story.sentences.flatMap((s) => s.objects));
}

/** "the red ball" when the noun alone is ambiguous in this world, else "the ball". */
function objectName(story: Story, o: number): string {
  const obj = story.world.objects[o];
  const shared = story.world.objects.some((x) => x.id !== o && x.noun === obj.noun);
  return shared ? `the ${obj.colour} ${obj.noun}` : `the ${obj.noun}`;
}

function holderQuestion(rng: RandomStream, story: Story): QA | null {
  const { world, final } = story;
  const seen = mentioned(story);
  const held = world.objects.filter((o) => seen.has(o.id) && holderOf(final, o.id) !== null);
  if (held.length === 0 || world.characters.length < 2) return null;
  const o = rng.pick(held);
  const holder = holderOf(final, o.id)!;
  const others = world.characters.filter((c) => c.id !== holder);
  return { question: `Who has ${objectName(story, o.id)}?`, answer: world.characters[holder].name, wrong: rng.pick(others).name };
}

function locationQuestion(rng: RandomStream, story: Story): QA | null {
  const { world, final } = story;
  if (world.places.length < 2) return null;
  const seen = mentioned(story);
  // Half about a character, half about a portable object (surfaces never move).
  const objects = world.objects.filter((o) => seen.has(o.id) && o.role !== 'surface');
  let question: string;
  let where: number;
  if (objects.length > 0 && rng.chance(0.5)) {
    const o = rng.pick(objects);
    question = `Where is ${objectName(story, o.id)}?`;
    where = placeOfObject(final, o.id);
  } else {
    const c = rng.pick(world.characters);
    question = `Where is ${c.name}?`;
    where = placeOfCharacter(final, c.id);
  }
  const others = world.places.filter((p) => p.id !== where);
  return { question, answer: world.places[where].name, wrong: rng.pick(others).name };
}

function colourQuestion(rng: RandomStream, story: Story): QA | null {
  const { world } = story;
  const seen = mentioned(story);
  // Only nouns that name one object of the story: "the ball" must be unambiguous.
  const unique = world.objects.filter((o) => seen.has(o.id) && world.objects.filter((x) => x.noun === o.noun).length === 1);
  if (unique.length === 0) return null;
  const o = rng.pick(unique);
  // A wrong colour from the story itself when there is one, so it is plausible.
  const storyColours = [...new Set(world.objects.map((x) => x.colour))].filter((c) => c !== o.colour);
  const wrong = storyColours.length > 0 ? rng.pick(storyColours) : rng.pick(COLOURS.filter((c) => c !== o.colour));
  return { question: `What colour is the ${o.noun}?`, answer: o.colour, wrong };
}

// ---- arithmetic word problems --------------------------------------------------------------------

// In words the stories use, so a small model trained on them learns the habit, not new spellings.
const ARITHMETIC_OPENERS = ['That is a good question.', 'I thought about it for a while.', 'Hmm, let me think about all of them.'];
const PEOPLE = ['Anna', 'Tom', 'Lily', 'Ben', 'Mia', 'Sam', 'Emma', 'Leo', 'Zoe', 'Jack', 'Ella', 'Noah'];
const THINGS = ['apples', 'balls', 'books', 'cups', 'coins', 'shells', 'flowers', 'crayons', 'marbles', 'buttons', 'kites', 'hats'];

function arithmeticProblem(rng: RandomStream): TaskExample {
  const [a, b] = rng.sample(PEOPLE, 2);
  const thing = rng.pick(THINGS);
  const form = rng.int(3);
  // Numbers within ten, as in a first school year: sums up to 10, differences of numbers up to 10.
  let x = 1 + rng.int(9);
  const y = 1 + rng.int(10 - x);
  let prompt: string;
  let value: number;
  if (form === 0) {
    prompt = `${a} has ${x} ${thing}. ${b} gives ${a} ${y} more ${thing}. How many ${thing} does ${a} have now?`;
    value = x + y;
  } else if (form === 1) {
    x += y;
    prompt = `${a} has ${x} ${thing}. ${a} gives ${y} ${thing} to ${b}. How many ${thing} does ${a} have now?`;
    value = x - y;
  } else {
    prompt = `${a} has ${x} ${thing} and ${b} has ${y} ${thing}. How many ${thing} do they have together?`;
    value = x + y;
  }
  const off = rng.pick([-2, -1, 1, 2]);
  const wrong = String(value + off >= 0 ? value + off : value + 1);
  return { kind: 'arithmetic', prompt, answer: String(value), wrong, rambling: `${rng.pick(ARITHMETIC_OPENERS)} The answer is ${value}. ${rng.pick(RAMBLE_CLOSERS)}`.trim() };
}

// ---- pairs and rewards ---------------------------------------------------------------------------

/** Preference pairs from task examples: the answer over a wrong one, or over a rambling version of it. */
export function preferencePairs(examples: readonly TaskExample[], kind: PairKind | 'both' = 'correct'): PreferencePair[] {
  return examples.flatMap((e, i) => {
    const pairs: PreferencePair[] = [];
    if (kind === 'correct' || (kind === 'both' && i % 2 === 0)) pairs.push({ prompt: e.prompt, chosen: e.answer, rejected: e.wrong });
    if (kind === 'concise' || (kind === 'both' && i % 2 === 1)) pairs.push({ prompt: e.prompt, chosen: e.answer, rejected: e.rambling });
    return pairs;
  });
}

/** How exact-match compares a response with an answer: case, surrounding space and a final full stop do not count. */
export function normaliseAnswer(s: string): string {
  return s.trim().replace(/[.!]+$/, '').trim().toLowerCase();
}

/**
 * The answer a response states: what follows its last "the answer is" (a rambling response), else
 * the whole response. Accuracy compares this with the answer; the reward asks for the answer alone.
 */
export function statedAnswer(response: string): string {
  const all = [...response.matchAll(/the answer is\s+([^.!?,;\n]*)/gi)];
  return all.length > 0 ? all[all.length - 1][1] : response;
}

/** Whether a response states the exact answer, alone or inside needless words. */
export function statesAnswer(e: Pick<TaskExample, 'answer'>, response: string): boolean {
  return normaliseAnswer(statedAnswer(response)) === normaliseAnswer(e.answer);
}

/**
 * The programmatic reward, for correctness first and brevity second: 1 for exactly the answer, 0.5
 * for the right answer stated in needless words, 0 otherwise.
 */
export function taskReward(e: Pick<TaskExample, 'answer'>, response: string): number {
  if (normaliseAnswer(response) === normaliseAnswer(e.answer)) return 1;
  return statesAnswer(e, response) ? 0.5 : 0;
}
