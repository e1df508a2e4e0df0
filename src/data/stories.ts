// Synthetic stories: a seeded simulation over the world of src/data/world.ts (a cast, an initial
// state, a sequence of possible events and the state after each), rendered into English by
// src/data/templates.ts. The simulation and the rendering draw from separate random streams, so the
// facts of story `seed` do not change when a template is added.
import { ArgumentError } from '../errors.js';
import { RandomStream, deriveSeed } from './rng.js';
import { renderStory, type Sentence } from './templates.js';
import {
  ANIMAL_NAMES, CONTAINER_KINDS, FEMALE_NAMES, ITEM_KINDS, MALE_NAMES, PERSON_NOUNS, PLACE_KINDS, SPECIES, SURFACE_KINDS,
  applyEvent, canCarry, capacity, eventKey, fitsIn, heldBy, placeOfObject,
  type Character, type Gender, type ObjectKind, type ObjectLocation, type World, type WorldEvent, type WorldObject, type WorldState,
} from './world.js';

export interface StoryOptions {
  /** Number of events after the introduction (default: 5 to 10, drawn from the seed). */
  events?: number;
  /** Number of places (default 2 to 4). */
  places?: number;
  /** Number of people (default 1 to 3). */
  people?: number;
  /** Number of animals (default 0 to 2). */
  animals?: number;
  /** Surfaces per place (default 0 to 2), containers (default 0 to 2) and small items (default 2 to 4). */
  surfaces?: number;
  containers?: number;
  items?: number;
}

export interface Story {
  seed: number;
  world: World;
  initial: WorldState;
  events: WorldEvent[];
  /** states[i] is the world after events[i]. */
  states: WorldState[];
  final: WorldState;
  sentences: Sentence[];
  text: string;
}

/** Story `seed`: the same seed always gives the same story, facts and text. */
export function generateStory(seed: number, options: StoryOptions = {}): Story {
  if (!Number.isInteger(seed)) throw new ArgumentError(`story seed must be an integer, got ${seed}`);
  const sim = new RandomStream(deriveSeed(seed, 0));
  const { world, initial } = makeCast(sim, options);
  const nEvents = options.events ?? 5 + sim.int(6);
  if (!Number.isInteger(nEvents) || nEvents < 0) throw new ArgumentError(`events must be a non-negative integer, got ${nEvents}`);
  const events: WorldEvent[] = [];
  const states: WorldState[] = [];
  let state = initial;
  for (let i = 0; i < nEvents; i++) {
    const e = chooseEvent(sim, world, state, events);
    if (!e) break;
    state = applyEvent(world, state, e);
    events.push(e);
    states.push(state);
  }
  const sentences = renderStory(new RandomStream(deriveSeed(seed, 1)), world, initial, events, states);
  return { seed, world, initial, events, states, final: state, sentences, text: sentences.map((s) => s.text).join(' ') };
}

// ---- the cast and the initial state --------------------------------------------------------------

function makeCast(rng: RandomStream, options: StoryOptions): { world: World; initial: WorldState } {
  const nPlaces = options.places ?? 2 + rng.int(3);
  if (!Number.isInteger(nPlaces) || nPlaces < 1 || nPlaces > PLACE_KINDS.length) {
    throw new ArgumentError(`places must be an integer in [1, ${PLACE_KINDS.length}], got ${nPlaces}`);
  }
  const placeKinds = rng.sample(PLACE_KINDS, nPlaces);
  const world: World = {
    places: placeKinds.map((k, id) => ({ id, name: k.name, preposition: k.preposition, indoors: k.indoors })),
    characters: [],
    objects: [],
  };

  // People, then animals (an animal usually belongs to one of the people).
  // A count given in the options replaces its draw (so the default stories do not change).
  const nPeople = count(options.people, 'people', 1, 3) ?? rng.pick([1, 2, 2, 2, 3]);
  const nAnimals = count(options.animals, 'animals', 0, 2) ?? rng.pick([0, 1, 1, 2]);
  const names = { female: rng.sample(FEMALE_NAMES, 3), male: rng.sample(MALE_NAMES, 3) };
  const animalNames = { female: rng.sample(ANIMAL_NAMES.female, 2), male: rng.sample(ANIMAL_NAMES.male, 2) };
  const used = { female: 0, male: 0 };
  const characterPlace: number[] = [];
  for (let i = 0; i < nPeople; i++) {
    const gender: Gender = rng.chance(0.5) ? 'female' : 'male';
    const name = names[gender][used[gender]++];
    world.characters.push({ id: i, name, kind: 'person', gender, noun: rng.pick(PERSON_NOUNS[gender]), owner: null });
    characterPlace.push(rng.int(nPlaces));
  }
  for (let i = 0; i < nAnimals; i++) {
    const id = world.characters.length;
    const owner = rng.chance(0.7) ? rng.int(nPeople) : null;
    const gender: Gender = rng.chance(0.5) ? 'female' : 'male';
    const c: Character = { id, name: animalNames[gender][i], kind: 'animal', gender, noun: rng.pick(SPECIES), owner };
    world.characters.push(c);
    characterPlace.push(owner !== null && rng.chance(0.8) ? characterPlace[owner] : rng.int(nPlaces));
  }

  // Objects get distinct (noun, colour) pairs, so "the red ball" always names exactly one thing.
  const taken = new Set<string>();
  const addObject = (kind: ObjectKind): WorldObject | null => {
    for (let tries = 0; tries < 8; tries++) {
      const colour = rng.pick(kind.colours);
      if (taken.has(`${kind.noun}/${colour}`)) continue;
      taken.add(`${kind.noun}/${colour}`);
      const o: WorldObject = { id: world.objects.length, noun: kind.noun, role: kind.role, colour, size: rng.pick(kind.sizes) };
      world.objects.push(o);
      return o;
    }
    return null;
  };
  const objectLocation: ObjectLocation[] = [];
  const surfacesIn: number[][] = placeKinds.map(() => []);
  const nSurfaces = count(options.surfaces, 'surfaces', 0, 2);
  placeKinds.forEach((pk, p) => {
    for (const noun of rng.sample(pk.surfaces, nSurfaces !== undefined ? Math.min(nSurfaces, pk.surfaces.length) : rng.pick([0, 1, 1, 2]))) {
      const o = addObject(SURFACE_KINDS.find((k) => k.noun === noun)!);
      if (!o) continue;
      objectLocation.push({ type: 'ground', place: p });
      surfacesIn[p].push(o.id);
    }
  });
  const allSurfaces = surfacesIn.flat();
  const state: WorldState = { characterPlace, objectLocation };
  const holders = world.characters.filter((c) => c.kind === 'person');
  const placeLoose = (o: WorldObject, options: { inContainer: boolean }): ObjectLocation => {
    const r = rng.uniform();
    if (r < 0.25 && allSurfaces.length > 0) return { type: 'on', surface: rng.pick(allSurfaces) };
    if (r < 0.45 && options.inContainer) {
      const fits = world.objects.filter((k) => k.role === 'container' && fitsIn(o, k));
      if (fits.length > 0) return { type: 'in', container: rng.pick(fits).id };
    }
    if (r < 0.65) {
      const free = holders.filter((c) => canCarry(c, o) && heldBy(state, c.id).length < capacity(c));
      if (free.length > 0) return { type: 'held', character: rng.pick(free).id };
    }
    return { type: 'ground', place: rng.int(nPlaces) };
  };
  for (let i = count(options.containers, 'containers', 0, 4) ?? rng.pick([0, 1, 1, 2]); i > 0; i--) {
    const o = addObject(rng.pick(CONTAINER_KINDS));
    if (o) objectLocation.push(placeLoose(o, { inContainer: false }));
  }
  for (let i = count(options.items, 'items', 0, 8) ?? 2 + rng.int(3); i > 0; i--) {
    const o = addObject(rng.pick(ITEM_KINDS));
    if (o) objectLocation.push(placeLoose(o, { inContainer: true }));
  }
  return { world, initial: state };
}

/** A cast size from the options, checked; undefined when the option is not given. */
function count(v: number | undefined, name: string, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  if (!Number.isInteger(v) || v < min || v > max) throw new ArgumentError(`${name} must be an integer in [${min}, ${max}], got ${v}`);
  return v;
}

// ---- what happens next ---------------------------------------------------------------------------

/**
 * One possible event, drawn with weights that favour a plot: taking and handing things over more
 * than wandering, and rarely undoing the previous event. null when nothing can happen.
 */
function chooseEvent(rng: RandomStream, w: World, s: WorldState, history: WorldEvent[]): WorldEvent | null {
  // Candidates are enumerated valid by construction (the rules of checkEvent, inlined because this
  // runs for every event of every story); applyEvent still checks the one chosen.
  const options: WorldEvent[] = [];
  const weights: number[] = [];
  const seen = new Set(history.map(eventKey));
  const last = history.length > 0 ? eventKey(history[history.length - 1]) : '';
  const add = (e: WorldEvent, weight: number) => {
    options.push(e);
    weights.push(weight * novelty(e, history, seen, last));
  };
  const objectPlace = w.objects.map((o) => placeOfObject(s, o.id));
  const held = w.characters.map((c) => heldBy(s, c.id));
  const heldByOther = (o: number, c: number) => {
    const l = s.objectLocation[o];
    return l.type === 'held' && l.character !== c;
  };
  for (const c of w.characters) {
    const here = s.characterPlace[c.id];
    const others = w.characters.filter((d) => d.id !== c.id && s.characterPlace[d.id] === here);
    const visible = w.objects.filter((o) => objectPlace[o.id] === here);
    const free = held[c.id].length < capacity(c);
    for (let p = 0; p < w.places.length; p++) {
      if (p === here) continue;
      add({ type: 'go', character: c.id, companions: [], from: here, to: p }, 1 / (w.places.length - 1));
      for (const d of others) {
        const bond = d.owner === c.id || c.owner === d.id ? 0.6 : 0.15;
        add({ type: 'go', character: c.id, companions: [d.id], from: here, to: p }, bond / (w.places.length - 1));
      }
    }
    for (const o of visible) {
      const from = s.objectLocation[o.id];
      const mine = from.type === 'held' && from.character === c.id;
      const inOthersHands = from.type === 'in' && heldByOther(from.container, c.id);
      if (o.role !== 'surface' && !mine && !inOthersHands && free && canCarry(c, o)) {
        add({ type: 'take', character: c.id, object: o.id, from: { ...from } }, from.type === 'held' ? 0.2 : 1.2);
      }
      if (!mine) add({ type: 'see', character: c.id, target: { kind: 'object', id: o.id } }, o.role === 'surface' ? 0.03 : 0.12);
    }
    for (const d of others) add({ type: 'see', character: c.id, target: { kind: 'character', id: d.id } }, 0.2);
    for (const id of held[c.id]) {
      const o = w.objects[id];
      for (const d of others) {
        if (canCarry(d, o) && held[d.id].length < capacity(d)) add({ type: 'give', character: c.id, recipient: d.id, object: id }, 1.0);
      }
      add({ type: 'drop', character: c.id, object: id, place: here }, 0.35);
      if (c.kind !== 'person') continue;
      for (const t of visible) {
        if (t.id === id || heldByOther(t.id, c.id)) continue;
        if (fitsIn(o, t)) add({ type: 'put', character: c.id, object: id, relation: 'in', target: t.id }, 1.0);
        if (t.role === 'surface') add({ type: 'put', character: c.id, object: id, relation: 'on', target: t.id }, 0.8);
      }
    }
  }
  if (options.length === 0) return null;
  return options[rng.weighted(weights)];
}

/** Down-weights an event that repeats or undoes a recent one (going straight back, re-taking). */
function novelty(e: WorldEvent, history: WorldEvent[], seen: Set<string>, lastKey: string): number {
  const last = history[history.length - 1];
  if (!last) return 1;
  const key = e.type === last.type || e.type === 'see' ? eventKey(e) : '';
  if (lastKey === key) return 0.02;
  if (e.type === 'go' && last.type === 'go' && last.character === e.character && last.from === e.to) return 0.15;
  const lastObject = 'object' in last ? last.object : -1;
  if (e.type === 'take' && lastObject === e.object && (last.type === 'drop' || last.type === 'put' || last.type === 'give')) return 0.15;
  if (last.type === 'take' && e.type === 'drop' && last.object === e.object) return 0.15;
  if (last.type === 'give' && e.type === 'give' && last.object === e.object && last.character === e.recipient) return 0.1;
  if (last.type === 'take' && e.type === 'put' && last.object === e.object
    && ((last.from.type === 'in' && last.from.container === e.target) || (last.from.type === 'on' && last.from.surface === e.target))) return 0.1;
  if (e.type === 'see' && seen.has(key)) return 0.05;
  return 1;
}

// ---- corpora -------------------------------------------------------------------------------------

export interface CorpusOptions {
  seed?: number;
  /** Number of stories; or */
  stories?: number;
  /** stop once the text reaches this many UTF-8 bytes (at a story boundary). */
  bytes?: number;
  /** Between stories (default a blank line). */
  separator?: string;
  story?: StoryOptions;
}

/** Story i of a corpus with seed s is generateStory(deriveSeed(s, i)): any one can be regenerated alone. */
export function corpusStorySeed(seed: number, index: number): number {
  return deriveSeed(seed >>> 0, index + 1);
}

/** The story texts of a corpus, one at a time (constant memory, however many). */
export function* corpusStories(options: CorpusOptions): Generator<Story> {
  const seed = options.seed ?? 0;
  if (options.stories === undefined && options.bytes === undefined) throw new ArgumentError('a corpus needs a number of stories or bytes');
  for (const [name, v] of [['stories', options.stories], ['bytes', options.bytes]] as const) {
    if (v !== undefined && (!Number.isInteger(v) || v < 0)) throw new ArgumentError(`corpus ${name} must be a non-negative integer, got ${v}`);
  }
  const sepBytes = Buffer.byteLength(options.separator ?? '\n\n');
  let bytes = 0;
  for (let i = 0; options.stories === undefined || i < options.stories; i++) {
    if (options.bytes !== undefined && bytes >= options.bytes) return;
    const story = generateStory(corpusStorySeed(seed, i), options.story);
    bytes += Buffer.byteLength(story.text) + (i > 0 ? sepBytes : 0);
    yield story;
  }
}

/** A corpus of stories as one string, stories separated by `separator`. */
export function generateCorpus(options: CorpusOptions): string {
  const texts: string[] = [];
  for (const s of corpusStories(options)) texts.push(s.text);
  return texts.join(options.separator ?? '\n\n');
}
