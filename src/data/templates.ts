// English for the story world: renders a cast, its initial state and its events as sentences. Every
// sentence records which events it tells and which entities it mentions, so a reader of the story
// can be checked against the world's facts. All wording lives here; src/data/world.ts has none.
//
// Variety comes from several templates per event, optional openers and adverbs, pronouns where the
// referent is unambiguous (the previous sentence's subject, the one object just mentioned), two
// events of one character joined into one sentence, and small reactions that state no new facts.
import type { RandomStream } from './rng.js';
import {
  holderOf, sameLocation,
  type Character, type ObjectLocation, type World, type WorldEvent, type WorldObject, type WorldState,
} from './world.js';

export type SentenceKind = 'intro' | 'event' | 'reaction' | 'ending';

export interface Sentence {
  text: string;
  kind: SentenceKind;
  /** Indices into the story's events of the events this sentence tells (reactions: the event reacted to). */
  events: number[];
  /** Ids of the characters, objects and places this sentence mentions (by name, noun or pronoun). */
  characters: number[];
  objects: number[];
  places: number[];
}

const TIME_OPENERS = ['Then', 'Then,', 'After that,', 'Later,', 'Next,', 'Soon,', 'A little later,', 'Soon after,', 'After a while,', 'Just then,'];
const DAY_OPENERS = ['One day,', 'One morning,', 'One sunny afternoon,', 'On a rainy day,', 'One evening,', 'One bright morning,', 'Last summer,'];
const END_OPENERS = ['In the end,', 'At the end of the day,', 'By evening,', 'When the day was over,', 'Finally,', 'That evening,'];
const PERSON_ADJECTIVES = ['little', 'kind', 'happy', 'curious', 'brave', 'clever', 'young', 'friendly', 'shy', 'cheerful', 'funny', 'quiet', 'busy', 'gentle'];
const ANIMAL_ADJECTIVES = ['little', 'fluffy', 'playful', 'sleepy', 'friendly', 'clever', 'old', 'young', 'happy', 'curious', 'lazy', 'cheeky'];
const PERSON_ACTIVITIES = ['playing', 'reading', 'sitting', 'waiting', 'drawing', 'singing', 'resting'];
const ANIMAL_ACTIVITIES = ['sleeping', 'playing', 'resting', 'sitting'];
const PERSON_GO = ['went', 'went', 'walked', 'ran', 'hurried', 'skipped', 'wandered'];
const MANNER = ['quickly', 'slowly', 'happily', 'quietly', 'carefully'];
const SPECIES_GO: Record<string, string[]> = {
  dog: ['ran', 'trotted', 'walked'], cat: ['walked', 'crept', 'strolled'], rabbit: ['hopped'], bird: ['flew'],
  duck: ['waddled', 'flew'], mouse: ['ran', 'scurried'], horse: ['trotted', 'galloped'], pig: ['trotted', 'walked'],
  fox: ['ran', 'crept'], frog: ['hopped', 'jumped'], goat: ['walked', 'trotted'], owl: ['flew'],
};
const SPECIES_SOUNDS: Record<string, string[]> = {
  dog: ['barked', 'wagged {his} tail', 'barked happily'], cat: ['purred', 'meowed', 'licked {his} paw'],
  rabbit: ['twitched {his} nose', 'thumped {his} foot'], bird: ['sang a song', 'chirped'], duck: ['quacked', 'flapped {his} wings'],
  mouse: ['squeaked'], horse: ['neighed', 'shook {his} mane'], pig: ['oinked', 'grunted happily'], fox: ['yipped', 'swished {his} tail'],
  frog: ['croaked', 'croaked loudly'], goat: ['bleated'], owl: ['hooted', 'blinked {his} big eyes'],
};

/** The sentences of a story, drawing template choices from `rng`. states[i] is the world after events[i]. */
export function renderStory(rng: RandomStream, w: World, initial: WorldState, events: WorldEvent[], states: WorldState[]): Sentence[] {
  const r = new Renderer(rng, w);
  r.intro(initial);
  for (let i = 0; i < events.length;) {
    const before = i === 0 ? initial : states[i - 1];
    i += r.event(events, i, before, states);
  }
  r.ending(initial, events.length > 0 ? states[states.length - 1] : initial);
  return r.sentences;
}

function article(word: string): string {
  return /^[aeiou]/.test(word) ? 'an' : 'a';
}

/** Upper-cases the first letter (which may follow an opening quote). */
function capitalise(text: string): string {
  return text.replace(/[A-Za-z]/, (ch) => ch.toUpperCase());
}

class Renderer {
  readonly sentences: Sentence[] = [];
  // What the sentence being built mentions.
  private chars = new Set<number>();
  private objs = new Set<number>();
  private places = new Set<number>();
  // The discourse so far: what a pronoun may refer to.
  private prevSubject: number | null = null;
  private prevChars = new Set<number>();
  private itObject: number | null = null;
  private itChance = 0.5;
  private subject: number | null = null;
  private prevPlace: number | null = null;
  private visited = new Set<string>();
  /** Once everyone has been introduced by name, an animal may also be "the dog" or "Anna's dog". */
  private nicknames = false;

  constructor(private readonly rng: RandomStream, private readonly w: World) {}

  private pick<T>(items: readonly T[]): T {
    return this.rng.pick(items);
  }

  /** Evaluates one of the templates (each a closure, so only the chosen one records mentions). */
  private one(templates: (() => string)[]): string {
    return this.pick(templates)();
  }

  private emit(kind: SentenceKind, events: number[], text: string, place: number | null): void {
    const body = capitalise(text.trim());
    this.sentences.push({
      text: /[.!?]"?$/.test(body) ? body : body + '.',
      kind, events,
      characters: [...this.chars], objects: [...this.objs], places: [...this.places],
    });
    this.prevSubject = this.subject;
    this.prevChars = this.chars;
    this.itObject = this.objs.size === 1 ? [...this.objs][0] : null;
    this.itChance = 0.5;
    this.prevPlace = place ?? this.prevPlace;
    this.chars = new Set();
    this.objs = new Set();
    this.places = new Set();
    this.subject = null;
  }

  // ---- noun phrases ------------------------------------------------------------------------------

  private he(c: Character): string {
    return c.gender === 'female' ? 'she' : 'he';
  }

  private him(c: Character): string {
    return c.gender === 'female' ? 'her' : 'him';
  }

  private his(c: Character): string {
    return c.gender === 'female' ? 'her' : 'his';
  }

  /** Whether a pronoun for c can only mean c: no other character of c's gender was just mentioned. */
  private unambiguous(c: Character): boolean {
    for (const d of [...this.prevChars, ...this.chars]) {
      if (d !== c.id && this.w.characters[d].gender === c.gender) return false;
    }
    return true;
  }

  /** The character as the subject of the sentence being built. */
  private subj(id: number, allowPronoun = true): string {
    const c = this.w.characters[id];
    this.subject = id;
    const pronoun = allowPronoun && this.prevSubject === id && this.unambiguous(c) && this.rng.chance(0.6);
    this.chars.add(id);
    return pronoun ? this.he(c) : this.nameOf(c);
  }

  /** The character as an object of the verb ("gave it to her"). */
  private obj(id: number): string {
    const c = this.w.characters[id];
    const pronoun = this.prevSubject === id && this.subject !== id && this.unambiguous(c)
      && (this.subject === null || this.w.characters[this.subject].gender !== c.gender) && this.rng.chance(0.5);
    this.chars.add(id);
    return pronoun ? this.him(c) : this.nameOf(c);
  }

  /** A name, or for an animal sometimes "the dog" / "Anna's dog" when that picks out only it. */
  private nameOf(c: Character): string {
    this.chars.add(c.id);
    if (this.nicknames && c.kind === 'animal' && this.w.characters.filter((d) => d.noun === c.noun).length === 1) {
      const u = this.rng.uniform();
      if (u < 0.2) return `the ${c.noun}`;
      if (u < 0.3 && c.owner !== null && !this.chars.has(c.owner)) {
        this.chars.add(c.owner);
        return `${this.w.characters[c.owner].name}'s ${c.noun}`;
      }
    }
    return c.name;
  }

  /** "the ball", "the red ball" (when another ball exists, or sometimes anyway), or "it". */
  private the(id: number, allowPronoun = true): string {
    const o = this.w.objects[id];
    if (allowPronoun && this.itObject === id && this.rng.chance(this.itChance)) {
      this.objs.add(id);
      return 'it';
    }
    this.objs.add(id);
    const shared = this.w.objects.some((x) => x.id !== id && x.noun === o.noun);
    const u = this.rng.uniform();
    if (shared || u < 0.35) return u < 0.06 ? `the ${o.size} ${o.colour} ${o.noun}` : `the ${o.colour} ${o.noun}`;
    return `the ${o.noun}`;
  }

  /** First mention: "a big red ball". */
  private a(o: WorldObject): string {
    this.objs.add(o.id);
    return `${article(o.size)} ${o.size} ${o.colour} ${o.noun}`;
  }

  private placeName(p: number): string {
    this.places.add(p);
    return `the ${this.w.places[p].name}`;
  }

  /** "in the kitchen", "at the beach", "on the farm", "by the river". */
  private at(p: number): string {
    return `${this.w.places[p].preposition} ${this.placeName(p)}`;
  }

  /** Where an object is, as a phrase after "was": "in the box", "on the table", "in the park". */
  private where(l: ObjectLocation): string {
    switch (l.type) {
      case 'ground': return this.at(l.place);
      case 'in': return `in ${this.the(l.container, false)}`;
      case 'on': return `on ${this.the(l.surface, false)}`;
      case 'held': return `with ${this.nameOf(this.w.characters[l.character])}`;
    }
  }

  // ---- the introduction --------------------------------------------------------------------------

  intro(s: WorldState): void {
    const w = this.w;
    let first = true;
    for (const c of w.characters) {
      const adj = this.rng.chance(0.6) ? (c.kind === 'person' ? this.pick(PERSON_ADJECTIVES) : this.pick(ANIMAL_ADJECTIVES)) + ' ' : '';
      const noun = adj + c.noun;
      const an = article(noun);
      let text: string;
      if (c.kind === 'person') {
        const templates = [
          () => `there was ${first ? '' : 'also '}${an} ${noun} named ${this.subj(c.id, false)}`,
          () => `${this.subj(c.id, false)} was ${an} ${noun}`,
        ];
        if (first) {
          templates.push(
            () => `once upon a time, there was ${an} ${noun} named ${this.subj(c.id, false)}`,
            () => `once upon a time, there was ${an} ${noun} named ${this.subj(c.id, false)}`,
            () => `there was once ${an} ${noun} called ${this.subj(c.id, false)}`,
            () => `this is a story about ${an} ${noun} named ${this.subj(c.id, false)}`,
          );
        } else {
          templates.push(() => `${this.subj(c.id, false)} was ${first ? '' : 'also '}${an} ${noun}`);
        }
        text = this.one(templates);
      } else if (c.owner !== null) {
        const owner = c.owner;
        text = this.one([
          () => `${this.subj(owner)} had ${an} ${noun} named ${c.name}`,
          () => `${this.subj(owner)} had a pet ${c.noun} called ${c.name}`,
          () => `${this.subj(c.id, false)} was ${w.characters[owner].name}'s ${noun}`,
        ]);
        this.chars.add(c.id);
        this.chars.add(owner);
      } else {
        text = this.one([
          () => `there was also ${an} ${noun} named ${this.subj(c.id, false)}`,
          () => `${an} ${noun} called ${this.subj(c.id, false)} lived nearby`,
        ]);
      }
      this.emit('intro', [], text, null);
      first = false;
    }
    this.nicknames = true;

    // Where everyone is, one sentence per place that has someone in it.
    let opener = this.rng.chance(0.7) ? this.pick(DAY_OPENERS) + ' ' : '';
    for (let p = 0; p < w.places.length; p++) {
      const here = w.characters.filter((c) => s.characterPlace[c.id] === p);
      if (here.length === 0) continue;
      let text: string;
      if (here.length === 1) {
        const c = here[0];
        const activity = this.pick(c.kind === 'person' ? PERSON_ACTIVITIES : ANIMAL_ACTIVITIES);
        text = this.one([
          () => `${this.subj(c.id)} was ${this.at(p)}`,
          () => `${this.subj(c.id)} was ${activity} ${this.at(p)}`,
        ]);
      } else if (here.length === 2 && this.rng.chance(0.4)) {
        text = `${this.subj(here[0].id)} was ${this.at(p)} with ${this.obj(here[1].id)}`;
      } else {
        const names = here.map((c) => this.nameOf(c));
        text = `${names.slice(0, -1).join(', ')} and ${names[names.length - 1]} were ${this.at(p)}`;
      }
      this.emit('intro', [], opener + text, p);
      opener = '';
    }

    // Then every object: surfaces first, then containers, then items, so that what an object is
    // in or on has always been introduced before it.
    for (const role of ['surface', 'container', 'item'] as const) {
      for (const o of w.objects) {
        const l = s.objectLocation[o.id];
        if (o.role !== role) continue;
        if (l.type === 'held') {
          // What a character holds is told in one sentence: "Tom had a red cup and a big blue ball."
          const holder = l.character;
          const held = w.objects.filter((x) => x.role !== 'surface' && holder === holderOf(s, x.id));
          if (held[0] !== o) continue;
          this.emit('intro', [], this.introHeld(w.characters[holder], held), null);
        } else {
          this.emit('intro', [], this.introObject(o, l), null);
        }
      }
    }
  }

  private introObject(o: WorldObject, l: ObjectLocation): string {
    switch (l.type) {
      case 'ground':
        if (o.role === 'surface') {
          return this.one([
            () => `there was ${this.a(o)} ${this.at(l.place)}`,
            () => `${this.at(l.place)}, there was ${this.a(o)}`,
            () => `${this.placeName(l.place)} had ${this.a(o)}`,
          ]);
        }
        return this.one([
          () => `there was ${this.a(o)} ${this.at(l.place)}`,
          () => `${this.at(l.place)}, there was ${this.a(o)}`,
          () => `${this.a(o)} lay on the ground ${this.at(l.place)}`,
          () => `${this.a(o)} was ${this.at(l.place)}`,
        ]);
      case 'on':
        return this.one([
          () => `there was ${this.a(o)} on ${this.the(l.surface, false)}`,
          () => `on ${this.the(l.surface, false)}, there was ${this.a(o)}`,
          () => `${this.a(o)} sat on ${this.the(l.surface, false)}`,
          () => `${this.a(o)} was on ${this.the(l.surface, false)}`,
        ]);
      case 'in':
        return this.one([
          () => `there was ${this.a(o)} in ${this.the(l.container, false)}`,
          () => `inside ${this.the(l.container, false)}, there was ${this.a(o)}`,
          () => `${this.the(l.container, false)} had ${this.a(o)} in it`,
          () => `${this.a(o)} was in ${this.the(l.container, false)}`,
        ]);
      case 'held':
        return this.introHeld(this.w.characters[l.character], [o]);
    }
  }

  private introHeld(c: Character, objects: WorldObject[]): string {
    const s = this.subj(c.id);
    const list = objects.map((o) => this.a(o)).join(' and ');
    return this.one([
      () => `${s} had ${list}`,
      () => `${s} was holding ${list}`,
      () => `${s} carried ${list}`,
      () => `${s} had ${list} with ${this.him(c)}`,
    ]);
  }

  // ---- events ------------------------------------------------------------------------------------

  /** Renders events[i] (and maybe events[i+1] in the same sentence); returns how many it told. */
  event(events: WorldEvent[], i: number, before: WorldState, states: WorldState[]): number {
    const e = events[i];
    const place = e.type === 'go' ? e.to : before.characterPlace[e.character];
    const next = events[i + 1];
    const c = this.w.characters[e.character];

    // Whole-sentence forms: speech, and sentences whose subject is not the actor.
    if (e.type === 'see' && c.kind === 'person' && this.rng.chance(0.35)) {
      this.emit('event', [i], this.speech(e), place);
      return 1;
    }
    if (e.type === 'give' && this.rng.chance(0.2)) {
      const s = this.subj(e.recipient);
      const verb = this.pick(['got', 'received']);
      this.emit('event', [i], `${this.opener(i)}${s} ${verb} ${this.the(e.object)} from ${this.obj(e.character)}`, place);
      this.reaction(e, i);
      return 1;
    }
    if (e.type === 'go' && e.companions.length > 0) {
      this.emit('event', [i], this.opener(i) + this.goTogether(e), place);
      return 1;
    }

    let lead = this.opener(i);
    if (lead === '' && e.type !== 'go' && place !== this.prevPlace && this.rng.chance(0.4)) lead = `${this.at(place)}, `;
    const s = this.subj(e.character);
    let text = `${lead}${s} ${this.vp(e, before)}`;
    let told = 1;
    // Two events of one character in a row can share a sentence: "picked up the cup and put it ...".
    if (next && next.character === e.character && e.type !== 'see' && next.type !== 'see' && !(next.type === 'go' && next.companions.length > 0)
      && !(e.type === 'go' && next.type === 'go') && this.rng.chance(0.35)) {
      this.itObject = this.objs.size === 1 ? [...this.objs][0] : null;
      this.itChance = 0.85;
      text += `${this.pick([' and', ' and then', ', then'])} ${this.vp(next, states[i])}`;
      told = 2;
    }
    this.emit('event', told === 2 ? [i, i + 1] : [i], text, told === 2 && next.type === 'go' ? next.to : place);
    this.reaction(events[i + told - 1], i + told - 1);
    return told;
  }

  private opener(i: number): string {
    return i > 0 && this.rng.chance(0.35) ? this.pick(TIME_OPENERS) + ' ' : '';
  }

  /** The verb phrase of an event, its subject being the actor (already emitted). */
  private vp(e: WorldEvent, before: WorldState): string {
    const c = this.w.characters[e.character];
    switch (e.type) {
      case 'go': return this.goVp(c, e.to);
      case 'take': return this.takeVp(c, e.object, e.from);
      case 'give': return this.giveVp(c, e.object, e.recipient);
      case 'drop': return this.dropVp(c, e.object, e.place);
      case 'put': return this.putVp(e.object, e.relation, e.target);
      case 'see': return this.seeVp(c, e, before);
    }
  }

  private goVp(c: Character, to: number): string {
    const key = `${c.id}:${to}`;
    const back = this.visited.has(key);
    this.visited.add(key);
    const verb = this.pick(c.kind === 'person' ? PERSON_GO : SPECIES_GO[c.noun]);
    const manner = this.rng.chance(0.2) ? ` ${this.pick(MANNER)}` : '';
    const place = this.w.places[to];
    const prep = back && this.rng.chance(0.7) ? 'back to' : place.indoors && this.rng.chance(0.4) ? 'into' : 'to';
    return `${verb}${manner} ${prep} ${this.placeName(to)}`;
  }

  private goTogether(e: Extract<WorldEvent, { type: 'go' }>): string {
    const c = this.w.characters[e.character];
    const d = this.w.characters[e.companions[0]];
    for (const x of [c, d]) this.visited.add(`${x.id}:${e.to}`);
    const verb = c.kind === 'person' ? this.pick(['went', 'walked', 'went']) : this.pick(SPECIES_GO[c.noun]);
    const templates = [
      () => `${this.nameOf(c)} and ${this.nameOf(d)} ${c.kind === 'person' && d.kind === 'person' ? verb : 'went'} to ${this.placeName(e.to)} together`,
      () => `${this.subj(c.id)} ${verb} to ${this.placeName(e.to)} with ${this.obj(d.id)}`,
    ];
    if (d.kind === 'person' || d.owner === c.id) templates.push(() => `${this.subj(d.id)} followed ${this.obj(c.id)} to ${this.placeName(e.to)}`);
    if (c.kind === 'person' && d.owner === c.id) templates.push(() => `${this.subj(c.id)} took ${this.his(c)} ${d.noun} to ${this.placeName(e.to)}`);
    return this.one(templates);
  }

  private takeVp(c: Character, o: number, from: ObjectLocation): string {
    const animal = c.kind === 'animal';
    switch (from.type) {
      case 'ground':
        return this.one(animal ? [
          () => `picked up ${this.the(o)} in ${this.his(c)} mouth`,
          () => `grabbed ${this.the(o)}`,
          () => `took ${this.the(o)}`,
        ] : [
          () => `picked up ${this.the(o)}`,
          () => `took ${this.the(o)}`,
          () => { const x = this.the(o); return x === 'it' ? 'picked it up' : `found ${x} and picked it up`; },
          () => `grabbed ${this.the(o)}`,
          () => `picked ${this.the(o)} up off the ground`,
        ]);
      case 'in':
        return this.one([
          () => `took ${this.the(o)} out of ${this.the(from.container, false)}`,
          () => `${animal ? 'pulled' : 'got'} ${this.the(o)} out of ${this.the(from.container, false)}`,
          () => `took ${this.the(o)} from ${this.the(from.container, false)}`,
          () => { const x = this.the(o, false); return `found ${x} in ${this.the(from.container, false)} and took it`; },
        ]);
      case 'on':
        return this.one([
          () => `took ${this.the(o)} from ${this.the(from.surface, false)}`,
          () => `picked up ${this.the(o)} from ${this.the(from.surface, false)}`,
          () => `took ${this.the(o)} off ${this.the(from.surface, false)}`,
          () => `grabbed ${this.the(o)} from ${this.the(from.surface, false)}`,
        ]);
      case 'held':
        return this.one([
          () => `took ${this.the(o)} from ${this.obj(from.character)}`,
          () => `grabbed ${this.the(o)} from ${this.obj(from.character)}`,
          () => `snatched ${this.the(o)} from ${this.obj(from.character)}`,
        ]);
    }
  }

  private giveVp(c: Character, o: number, to: number): string {
    const templates = [
      () => `gave ${this.the(o)} to ${this.obj(to)}`,
      () => `brought ${this.the(o)} to ${this.obj(to)}`,
      () => { const x = this.the(o, false); return `gave ${this.obj(to)} ${x}`; },
    ];
    if (c.kind === 'person') {
      templates.push(
        () => `handed ${this.the(o)} to ${this.obj(to)}`,
        () => { const x = this.the(o, false); return `handed ${this.obj(to)} ${x}`; },
        () => `passed ${this.the(o)} to ${this.obj(to)}`,
      );
    }
    return this.one(templates);
  }

  private dropVp(c: Character, o: number, place: number): string {
    return this.one(c.kind === 'animal' ? [
      () => `dropped ${this.the(o)}`,
      () => `dropped ${this.the(o)} on the ground`,
      () => `left ${this.the(o)} ${this.at(place)}`,
    ] : [
      () => `dropped ${this.the(o)}`,
      () => `put ${this.the(o)} down`,
      () => { const x = this.the(o); return x === 'it' ? 'put it down' : `put down ${x}`; },
      () => `left ${this.the(o)} ${this.at(place)}`,
      () => `set ${this.the(o)} down on the ground`,
      () => `let go of ${this.the(o)}`,
    ]);
  }

  private putVp(o: number, relation: 'in' | 'on', target: number): string {
    const t = () => this.the(target, false);
    if (relation === 'in') {
      const k = this.w.objects[target];
      const templates = [
        () => `put ${this.the(o)} in ${t()}`,
        () => `put ${this.the(o)} into ${t()}`,
        () => `placed ${this.the(o)} in ${t()}`,
        () => `dropped ${this.the(o)} into ${t()}`,
        () => `hid ${this.the(o)} in ${t()}`,
      ];
      if (k.noun === 'bag' || k.noun === 'backpack' || k.noun === 'basket') templates.push(() => `packed ${this.the(o)} into ${t()}`);
      if (k.size !== 'small') templates.push(() => `tucked ${this.the(o)} into ${t()}`);
      return this.one(templates);
    }
    return this.one([
      () => `put ${this.the(o)} on ${t()}`,
      () => `placed ${this.the(o)} on ${t()}`,
      () => `set ${this.the(o)} on ${t()}`,
      () => `left ${this.the(o)} on ${t()}`,
      () => `laid ${this.the(o)} on ${t()}`,
    ]);
  }

  private seeVp(c: Character, e: Extract<WorldEvent, { type: 'see' }>, before: WorldState): string {
    if (e.target.kind === 'character') {
      const d = this.w.characters[e.target.id];
      const templates = [() => `saw ${this.obj(d.id)}`, () => `noticed ${this.obj(d.id)}`];
      if (c.kind === 'person' && d.kind === 'person') templates.push(() => `waved to ${this.obj(d.id)}`, () => `said hello to ${this.obj(d.id)}`, () => `smiled at ${this.obj(d.id)}`);
      if (c.kind === 'person' && d.kind === 'animal') templates.push(() => `played with ${this.obj(d.id)}`, () => `petted ${this.obj(d.id)}`);
      if (c.kind === 'animal') templates.push(() => `ran up to ${this.obj(d.id)}`, () => `sniffed ${this.obj(d.id)}`);
      return this.one(templates);
    }
    const o = e.target.id;
    const l = before.objectLocation[o];
    const seen = [() => `saw ${this.the(o)}`, () => `noticed ${this.the(o)}`, () => `looked at ${this.the(o)}`, () => `spotted ${this.the(o)}`];
    if (l.type === 'held' && l.character !== c.id) {
      seen.push(() => { const x = this.the(o, false); return `saw that ${this.obj(l.character)} had ${x}`; });
    } else if (l.type !== 'held') {
      seen.push(() => { const x = this.the(o, false); return `saw ${x} ${this.where(l)}`; }, () => { const x = this.the(o, false); return `found ${x} ${this.where(l)}`; });
    }
    return this.one(seen);
  }

  private speech(e: Extract<WorldEvent, { type: 'see' }>): string {
    const said = () => this.pick(['said', 'called', 'cried']);
    if (e.target.kind === 'character') {
      const d = this.w.characters[e.target.id];
      const greeting = this.pick(['Hello', 'Hi', 'Good morning']);
      this.chars.add(d.id);
      return this.one([
        () => `"${greeting}, ${d.name}!" ${said()} ${this.subj(e.character, false)}`,
        () => `${this.subj(e.character)} said, "${greeting}, ${d.name}!"`,
      ]);
    }
    const o = e.target.id;
    return this.one([
      () => `"Look at ${this.the(o, false)}!" ${said()} ${this.subj(e.character, false)}`,
      () => `${this.subj(e.character)} said, "I can see ${this.the(o, false)}."`,
      () => `"There is ${this.the(o, false)}," said ${this.subj(e.character, false)}`,
    ]);
  }

  /** A short reaction that states no new fact: thanks, protest, an animal's sound. */
  private reaction(e: WorldEvent, i: number): void {
    let text: string | null = null;
    if (e.type === 'give' && this.rng.chance(0.4)) {
      const d = this.w.characters[e.recipient];
      const giver = e.character;
      text = d.kind === 'person'
        ? this.one([
          () => `${this.subj(d.id)} smiled`,
          () => `"Thank you!" said ${this.subj(d.id, false)}`,
          () => `${this.subj(d.id)} said thank you`,
          () => `${this.subj(d.id)} was very happy`,
          () => `${this.subj(d.id)} thanked ${this.obj(giver)}`,
        ])
        : this.animalSound(d);
    } else if (e.type === 'take' && e.from.type === 'held' && this.w.characters[e.from.character].kind === 'person' && this.rng.chance(0.5)) {
      const v = e.from.character;
      text = this.one([
        () => `${this.subj(v)} was sad`,
        () => `"Hey, give it back!" said ${this.subj(v, false)}`,
        () => `${this.subj(v)} did not like that`,
      ]);
    } else if (this.w.characters[e.character].kind === 'animal' && this.rng.chance(0.25)) {
      text = this.animalSound(this.w.characters[e.character]);
    }
    if (text !== null) this.emit('reaction', [i], text, null);
  }

  private animalSound(c: Character): string {
    const sound = this.pick(SPECIES_SOUNDS[c.noun]).replace('{his}', this.his(c));
    return `${this.subj(c.id)} ${sound}`;
  }

  // ---- the ending --------------------------------------------------------------------------------

  /** One or two facts of the final state, preferring objects that moved, and sometimes a mood. */
  ending(initial: WorldState, s: WorldState): void {
    const moved = this.w.objects.filter((o) => !sameLocation(initial.objectLocation[o.id], s.objectLocation[o.id]));
    const pool = moved.length > 0 ? moved : this.w.objects.filter((o) => o.role !== 'surface');
    for (const o of this.rng.sample(pool, Math.min(pool.length, 1 + this.rng.int(2)))) {
      const l = s.objectLocation[o.id];
      const opener = this.rng.chance(0.6) ? this.pick(END_OPENERS) + ' ' : '';
      let text: string;
      if (l.type === 'held') {
        const h = l.character;
        text = this.one([
          () => `${opener}${this.subj(h)} had ${this.the(o.id)}`,
          () => `${opener}${this.the(o.id)} was with ${this.obj(h)}`,
          () => `${this.subj(h)} kept ${this.the(o.id)}`,
        ]);
      } else {
        text = this.one([
          () => `${opener}${this.the(o.id)} was ${this.where(l)}`,
          () => `${this.the(o.id)} stayed ${this.where(l)}`,
        ]);
      }
      this.emit('ending', [], text, null);
    }
    if (this.rng.chance(0.5)) {
      const people = this.w.characters.filter((c) => c.kind === 'person');
      this.emit('ending', [], this.one([
        () => 'everyone was happy',
        () => 'it was a good day',
        () => 'what a fun day it was!',
        () => `${this.subj(this.pick(people).id)} was happy`,
        () => `${this.subj(this.pick(people).id)} smiled`,
      ]), null);
    }
  }
}
