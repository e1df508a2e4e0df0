// The synthetic story world: who and what exists (a cast of characters, objects and places), the
// state of the world at one moment (where everyone is, who holds what, what is in or on what), the
// events that change it, and queries over it. Nothing here knows English: src/data/templates.ts
// renders events as sentences, and later stages (questions, answers, preference pairs) read the same
// facts straight from the states recorded here.
import { ArgumentError } from '../errors.js';

// ---- the catalogue -------------------------------------------------------------------------------

export type CharacterKind = 'person' | 'animal';
export type Gender = 'female' | 'male';
export type Size = 'tiny' | 'small' | 'big' | 'huge';
/** Smallest first: an item fits in a container whose size rank is at least its own. */
export const SIZES: readonly Size[] = ['tiny', 'small', 'big', 'huge'];
export const COLOURS = [
  'red', 'blue', 'green', 'yellow', 'orange', 'purple', 'pink', 'white', 'black', 'brown', 'grey', 'gold', 'silver',
] as const;
export type Colour = (typeof COLOURS)[number];
/** Items are carried around; containers are carried and hold items; surfaces stay where they are. */
export type ObjectRole = 'item' | 'container' | 'surface';
/** How a place is named in English ("in the kitchen", "at the beach", "on the farm", "by the river"). */
export type PlacePreposition = 'in' | 'at' | 'on' | 'by';

export interface ObjectKind {
  noun: string;
  role: ObjectRole;
  sizes: readonly Size[];
  colours: readonly Colour[];
}

export interface PlaceKind {
  name: string;
  preposition: PlacePreposition;
  /** Whether you go "into" it. */
  indoors: boolean;
  /** The surfaces (furniture, rocks) this place can have. */
  surfaces: readonly string[];
}

export const FEMALE_NAMES: readonly string[] = [
  'Anna', 'Lily', 'Mia', 'Sara', 'Emma', 'Lucy', 'Zoe', 'Ella', 'Ruby', 'Nora', 'Grace', 'Amy',
  'Ivy', 'Rose', 'Maya', 'Chloe', 'Hannah', 'Julia', 'Kate', 'Leah', 'Alice', 'Clara', 'Eva', 'Molly',
];
export const MALE_NAMES: readonly string[] = [
  'Tom', 'Ben', 'Sam', 'Jack', 'Leo', 'Finn', 'Noah', 'Oliver', 'Jake', 'Luke', 'Adam', 'Owen',
  'Theo', 'Eli', 'Ryan', 'Hugo', 'Oscar', 'Peter', 'Paul', 'Dan', 'Henry', 'Liam', 'Jonas', 'Felix',
];
export const ANIMAL_NAMES: Readonly<Record<Gender, readonly string[]>> = {
  female: ['Bella', 'Coco', 'Luna', 'Daisy', 'Rosie', 'Fluffy', 'Ginger', 'Nutmeg', 'Pepper', 'Sunny', 'Poppy', 'Honey'],
  male: ['Max', 'Rex', 'Milo', 'Buddy', 'Tiger', 'Spot', 'Oreo', 'Ziggy', 'Biscuit', 'Shadow', 'Bingo', 'Patch'],
};
export const PERSON_NOUNS: Readonly<Record<Gender, readonly string[]>> = {
  female: ['girl', 'girl', 'girl', 'woman'],
  male: ['boy', 'boy', 'boy', 'man'],
};
export const SPECIES: readonly string[] = [
  'dog', 'cat', 'rabbit', 'bird', 'duck', 'mouse', 'horse', 'pig', 'fox', 'frog', 'goat', 'owl',
];

const ALL_COLOURS: readonly Colour[] = COLOURS;
const PLAIN: readonly Colour[] = ['red', 'blue', 'green', 'yellow', 'orange', 'purple', 'pink', 'white', 'black', 'brown', 'grey'];
const WOOD: readonly Colour[] = ['brown', 'white', 'black', 'grey', 'red', 'blue', 'green', 'yellow'];
const STONE: readonly Colour[] = ['grey', 'brown', 'white', 'black'];
const SMALLISH: readonly Size[] = ['tiny', 'small', 'big'];
const TWO: readonly Size[] = ['small', 'big'];

function kinds(role: ObjectRole, rows: [string, readonly Size[], readonly Colour[]][]): ObjectKind[] {
  return rows.map(([noun, sizes, colours]) => ({ noun, role, sizes, colours }));
}

export const ITEM_KINDS: readonly ObjectKind[] = kinds('item', [
  ['ball', SIZES, PLAIN], ['cup', SMALLISH, PLAIN], ['book', TWO, PLAIN], ['hat', TWO, PLAIN],
  ['apple', TWO, ['red', 'green', 'yellow']], ['kite', ['small', 'big', 'huge'], PLAIN], ['key', ['tiny', 'small'], ALL_COLOURS],
  ['doll', SMALLISH, PLAIN], ['toy car', SMALLISH, PLAIN], ['spoon', ['tiny', 'small', 'big'], ALL_COLOURS],
  ['shoe', TWO, PLAIN], ['flower', SMALLISH, ['red', 'blue', 'yellow', 'orange', 'purple', 'pink', 'white']],
  ['stick', SMALLISH, ['brown', 'grey', 'black']], ['bowl', SMALLISH, PLAIN], ['sock', TWO, PLAIN],
  ['block', SMALLISH, PLAIN], ['teddy bear', SIZES, ['brown', 'white', 'pink', 'grey', 'yellow', 'blue']],
  ['balloon', TWO, PLAIN], ['pencil', ['tiny', 'small'], PLAIN], ['drum', TWO, PLAIN],
  ['bell', ['tiny', 'small', 'big'], ALL_COLOURS], ['ribbon', ['tiny', 'small'], PLAIN], ['coin', ['tiny', 'small'], ['gold', 'silver']],
  ['shell', SMALLISH, ['white', 'pink', 'brown', 'grey', 'orange']], ['feather', ['tiny', 'small'], PLAIN],
  ['ring', ['tiny'], ['gold', 'silver', 'red', 'blue', 'green']], ['crayon', ['tiny', 'small'], PLAIN],
  ['umbrella', TWO, PLAIN], ['scarf', TWO, PLAIN], ['mitten', ['tiny', 'small'], PLAIN],
  ['button', ['tiny'], ALL_COLOURS], ['marble', ['tiny'], PLAIN], ['bone', TWO, ['white', 'brown', 'grey']],
  ['map', TWO, ['white', 'brown', 'yellow']], ['lamp', TWO, PLAIN], ['clock', TWO, PLAIN],
]);

export const CONTAINER_KINDS: readonly ObjectKind[] = kinds('container', [
  ['box', ['small', 'big', 'huge'], PLAIN], ['basket', TWO, ['brown', 'white', 'red', 'yellow', 'green']],
  ['bag', TWO, PLAIN], ['bucket', TWO, PLAIN], ['jar', ['small'], ['white', 'blue', 'green', 'yellow', 'red']],
  ['backpack', TWO, PLAIN], ['pot', TWO, PLAIN], ['chest', ['big', 'huge'], ['brown', 'black', 'red', 'blue', 'gold']],
]);

export const SURFACE_KINDS: readonly ObjectKind[] = kinds('surface', [
  ['table', TWO, WOOD], ['shelf', TWO, WOOD], ['counter', TWO, WOOD], ['chair', TWO, WOOD], ['bed', TWO, WOOD],
  ['desk', TWO, WOOD], ['sofa', TWO, PLAIN], ['bench', TWO, WOOD], ['rock', ['small', 'big', 'huge'], STONE],
  ['tree stump', TWO, ['brown', 'grey']], ['log', TWO, ['brown', 'grey']], ['blanket', TWO, PLAIN],
  ['fence', TWO, WOOD], ['wall', TWO, STONE],
]);

export const PLACE_KINDS: readonly PlaceKind[] = [
  { name: 'kitchen', preposition: 'in', indoors: true, surfaces: ['table', 'shelf', 'counter', 'chair'] },
  { name: 'bedroom', preposition: 'in', indoors: true, surfaces: ['bed', 'shelf', 'desk', 'chair'] },
  { name: 'living room', preposition: 'in', indoors: true, surfaces: ['sofa', 'table', 'shelf'] },
  { name: 'garden', preposition: 'in', indoors: false, surfaces: ['bench', 'table', 'rock', 'wall'] },
  { name: 'park', preposition: 'in', indoors: false, surfaces: ['bench', 'rock'] },
  { name: 'forest', preposition: 'in', indoors: false, surfaces: ['rock', 'tree stump', 'log'] },
  { name: 'beach', preposition: 'at', indoors: false, surfaces: ['rock', 'blanket'] },
  { name: 'school', preposition: 'at', indoors: false, surfaces: ['desk', 'table', 'shelf'] },
  { name: 'library', preposition: 'in', indoors: true, surfaces: ['table', 'shelf', 'desk'] },
  { name: 'farm', preposition: 'on', indoors: false, surfaces: ['bench', 'fence'] },
  { name: 'barn', preposition: 'in', indoors: true, surfaces: ['shelf', 'bench'] },
  { name: 'shop', preposition: 'in', indoors: true, surfaces: ['counter', 'shelf'] },
  { name: 'playground', preposition: 'at', indoors: false, surfaces: ['bench'] },
  { name: 'yard', preposition: 'in', indoors: false, surfaces: ['bench', 'table', 'fence'] },
  { name: 'river', preposition: 'by', indoors: false, surfaces: ['rock', 'log'] },
  { name: 'hill', preposition: 'on', indoors: false, surfaces: ['rock', 'log'] },
  { name: 'classroom', preposition: 'in', indoors: true, surfaces: ['desk', 'table', 'shelf'] },
  { name: 'attic', preposition: 'in', indoors: true, surfaces: ['shelf', 'chair'] },
];

// ---- a story's cast ------------------------------------------------------------------------------

export interface Character {
  id: number;
  name: string;
  kind: CharacterKind;
  gender: Gender;
  /** 'girl', 'boy', 'woman', 'man' for people; the species ('dog', 'cat', ...) for animals. */
  noun: string;
  /** The person an animal belongs to, or null. */
  owner: number | null;
}

export interface WorldObject {
  id: number;
  noun: string;
  role: ObjectRole;
  colour: Colour;
  size: Size;
}

export interface Place {
  id: number;
  name: string;
  preposition: PlacePreposition;
  indoors: boolean;
}

/** Everything that exists in one story. Ids are indices into these arrays. */
export interface World {
  characters: Character[];
  objects: WorldObject[];
  places: Place[];
}

// ---- state ---------------------------------------------------------------------------------------

/** Where an object is: lying in a place, held by a character, in a container or on a surface. */
export type ObjectLocation =
  | { type: 'ground'; place: number }
  | { type: 'held'; character: number }
  | { type: 'in'; container: number }
  | { type: 'on'; surface: number };

/** The world at one moment: plain data, so it can be copied, compared and written as JSON. */
export interface WorldState {
  /** characterPlace[c] is the place character c is in. */
  characterPlace: number[];
  /** objectLocation[o] is where object o is. */
  objectLocation: ObjectLocation[];
}

export function cloneState(s: WorldState): WorldState {
  return { characterPlace: s.characterPlace.slice(), objectLocation: s.objectLocation.map((l) => ({ ...l })) };
}

// ---- events --------------------------------------------------------------------------------------

/** Something a character can look at: another character or an object. */
export type Sight = { kind: 'character'; id: number } | { kind: 'object'; id: number };

export type WorldEvent =
  /** The character (and its companions, who are with it) moves from one place to another. */
  | { type: 'go'; character: number; companions: number[]; from: number; to: number }
  /** The character takes an object from where it was (the ground, a container, a surface or someone). */
  | { type: 'take'; character: number; object: number; from: ObjectLocation }
  | { type: 'give'; character: number; recipient: number; object: number }
  /** The character puts a held object down where it stands. */
  | { type: 'drop'; character: number; object: number; place: number }
  | { type: 'put'; character: number; object: number; relation: 'in' | 'on'; target: number }
  /** The character notices something in the same place; nothing changes. */
  | { type: 'see'; character: number; target: Sight };

/** How many objects a character can hold at once: two hands, or one mouth. */
export function capacity(c: Character): number {
  return c.kind === 'person' ? 2 : 1;
}

function sizeRank(s: Size): number {
  return SIZES.indexOf(s);
}

/** Whether character c is able to carry object o at all (ignoring what it already holds). */
export function canCarry(c: Character, o: WorldObject): boolean {
  if (o.role === 'surface') return false;
  if (c.kind === 'animal') return o.role === 'item' && sizeRank(o.size) <= sizeRank('small');
  return sizeRank(o.size) <= sizeRank('big');
}

/** Whether item o fits in container k. */
export function fitsIn(o: WorldObject, k: WorldObject): boolean {
  return o.role === 'item' && k.role === 'container' && sizeRank(o.size) <= sizeRank(k.size);
}

/** Why `e` cannot happen in state `s`, or null when it can. */
export function checkEvent(w: World, s: WorldState, e: WorldEvent): string | null {
  const c = w.characters[e.character];
  if (!c) return `no character ${e.character}`;
  const here = s.characterPlace[e.character];
  const held = heldBy(s, e.character);
  const objectHere = (o: number) => placeOfObject(s, o) === here;
  switch (e.type) {
    case 'go': {
      if (e.from !== here) return `${c.name} is not in place ${e.from}`;
      if (!w.places[e.to] || e.to === here) return `${c.name} cannot go to place ${e.to}`;
      for (const d of e.companions) {
        if (d === e.character || s.characterPlace[d] !== here) return `companion ${d} is not with ${c.name}`;
      }
      return null;
    }
    case 'take': {
      const o = w.objects[e.object];
      if (!o) return `no object ${e.object}`;
      if (!sameLocation(s.objectLocation[e.object], e.from)) return `${o.noun} is not where the event says`;
      if (e.from.type === 'held' && e.from.character === e.character) return `${c.name} already holds the ${o.noun}`;
      if (e.from.type === 'in') {
        const k = s.objectLocation[e.from.container];
        if (k.type === 'held' && k.character !== e.character) return `the ${o.noun} is in a container someone else holds`;
      }
      if (!objectHere(e.object)) return `the ${o.noun} is not where ${c.name} is`;
      if (!canCarry(c, o) || held.length >= capacity(c)) return `${c.name} cannot carry the ${o.noun}`;
      return null;
    }
    case 'give': {
      const r = w.characters[e.recipient];
      const o = w.objects[e.object];
      if (!r || !o || e.recipient === e.character) return 'bad give';
      if (!held.includes(e.object)) return `${c.name} does not hold the ${o.noun}`;
      if (s.characterPlace[e.recipient] !== here) return `${r.name} is not with ${c.name}`;
      if (!canCarry(r, o) || heldBy(s, e.recipient).length >= capacity(r)) return `${r.name} cannot carry the ${o.noun}`;
      return null;
    }
    case 'drop':
      if (!held.includes(e.object)) return `${c.name} does not hold object ${e.object}`;
      if (e.place !== here) return `${c.name} is not in place ${e.place}`;
      return null;
    case 'put': {
      const o = w.objects[e.object];
      const t = w.objects[e.target];
      if (!o || !t || e.object === e.target) return 'bad put';
      if (c.kind !== 'person') return `${c.name} has no hands to put things with`;
      if (!held.includes(e.object)) return `${c.name} does not hold the ${o.noun}`;
      if (e.relation === 'in' && !fitsIn(o, t)) return `the ${o.noun} does not fit in the ${t.noun}`;
      if (e.relation === 'on' && (t.role !== 'surface' || o.role === 'surface')) return `cannot put the ${o.noun} on the ${t.noun}`;
      const tl = s.objectLocation[e.target];
      if (tl.type === 'held' && tl.character !== e.character) return `someone else holds the ${t.noun}`;
      if (!objectHere(e.target)) return `the ${t.noun} is not where ${c.name} is`;
      return null;
    }
    case 'see':
      if (e.target.kind === 'character') {
        if (e.target.id === e.character || s.characterPlace[e.target.id] !== here) return 'cannot see that character';
      } else if (!w.objects[e.target.id] || !objectHere(e.target.id)) return 'cannot see that object';
      return null;
  }
}

export function sameLocation(a: ObjectLocation, b: ObjectLocation): boolean {
  return a.type === b.type && locationTarget(a) === locationTarget(b);
}

function locationTarget(l: ObjectLocation): number {
  switch (l.type) {
    case 'ground': return l.place;
    case 'held': return l.character;
    case 'in': return l.container;
    case 'on': return l.surface;
  }
}

/** A string that is equal for two events exactly when they are the same event. */
export function eventKey(e: WorldEvent): string {
  switch (e.type) {
    case 'go': return `go ${e.character} ${e.from} ${e.to} ${e.companions.join(',')}`;
    case 'take': return `take ${e.character} ${e.object} ${e.from.type} ${locationTarget(e.from)}`;
    case 'give': return `give ${e.character} ${e.object} ${e.recipient}`;
    case 'drop': return `drop ${e.character} ${e.object} ${e.place}`;
    case 'put': return `put ${e.character} ${e.object} ${e.relation} ${e.target}`;
    case 'see': return `see ${e.character} ${e.target.kind} ${e.target.id}`;
  }
}

/** The state after event e; throws when e cannot happen in s. */
export function applyEvent(w: World, s: WorldState, e: WorldEvent): WorldState {
  const why = checkEvent(w, s, e);
  if (why !== null) throw new ArgumentError(`impossible ${e.type} event: ${why}`);
  const next = cloneState(s);
  switch (e.type) {
    case 'go':
      // What the characters hold moves with them: held locations are relative to the holder.
      next.characterPlace[e.character] = e.to;
      for (const d of e.companions) next.characterPlace[d] = e.to;
      break;
    case 'take':
      next.objectLocation[e.object] = { type: 'held', character: e.character };
      break;
    case 'give':
      next.objectLocation[e.object] = { type: 'held', character: e.recipient };
      break;
    case 'drop':
      next.objectLocation[e.object] = { type: 'ground', place: e.place };
      break;
    case 'put':
      next.objectLocation[e.object] = e.relation === 'in' ? { type: 'in', container: e.target } : { type: 'on', surface: e.target };
      break;
    case 'see':
      break;
  }
  return next;
}

// ---- queries -------------------------------------------------------------------------------------

/** The place an object is in, following containers, surfaces and holders. */
export function placeOfObject(s: WorldState, o: number): number {
  for (;;) {
    const l = s.objectLocation[o];
    if (l.type === 'ground') return l.place;
    if (l.type === 'held') return s.characterPlace[l.character];
    o = l.type === 'in' ? l.container : l.surface;
  }
}

export function placeOfCharacter(s: WorldState, c: number): number {
  return s.characterPlace[c];
}

/** The character holding object o in their hands, or null. */
export function holderOf(s: WorldState, o: number): number | null {
  const l = s.objectLocation[o];
  return l.type === 'held' ? l.character : null;
}

/** The character who has o with them: its holder, or the holder of the container it is in. */
export function carrierOf(s: WorldState, o: number): number | null {
  for (;;) {
    const l = s.objectLocation[o];
    if (l.type === 'held') return l.character;
    if (l.type !== 'in') return null;
    o = l.container;
  }
}

/** The objects character c holds in their hands. */
export function heldBy(s: WorldState, c: number): number[] {
  const out: number[] = [];
  s.objectLocation.forEach((l, o) => { if (l.type === 'held' && l.character === c) out.push(o); });
  return out;
}

/** The objects in container k (or on surface k). */
export function contentsOf(s: WorldState, k: number): number[] {
  const out: number[] = [];
  s.objectLocation.forEach((l, o) => {
    if ((l.type === 'in' && l.container === k) || (l.type === 'on' && l.surface === k)) out.push(o);
  });
  return out;
}

export function charactersAt(s: WorldState, place: number): number[] {
  const out: number[] = [];
  s.characterPlace.forEach((p, c) => { if (p === place) out.push(c); });
  return out;
}

/** Every object whose place is `place`, however it is held or contained. */
export function objectsAt(s: WorldState, place: number): number[] {
  const out: number[] = [];
  for (let o = 0; o < s.objectLocation.length; o++) if (placeOfObject(s, o) === place) out.push(o);
  return out;
}

/** The objects matching a description ("the red ball": { noun: 'ball', colour: 'red' }). */
export function findObjects(w: World, d: { noun?: string; colour?: Colour; size?: Size; role?: ObjectRole }): number[] {
  return w.objects.filter((o) => (d.noun === undefined || o.noun === d.noun) && (d.colour === undefined || o.colour === d.colour)
    && (d.size === undefined || o.size === d.size) && (d.role === undefined || o.role === d.role)).map((o) => o.id);
}

export function findCharacter(w: World, name: string): number | null {
  const c = w.characters.find((x) => x.name === name);
  return c ? c.id : null;
}

// ---- facts ---------------------------------------------------------------------------------------

export type EntityRef = { kind: 'character' | 'object'; id: number };

/** One statement about the world, true in a given state. */
export type Fact =
  | { relation: 'at'; subject: EntityRef; place: number }
  | { relation: 'holds'; character: number; object: number }
  | { relation: 'in'; object: number; container: number }
  | { relation: 'on'; object: number; surface: number }
  | { relation: 'colour'; object: number; colour: Colour }
  | { relation: 'size'; object: number; size: Size }
  | { relation: 'owns'; character: number; animal: number };

/** Every fact that holds in state s: attributes first, then locations (resolved to places) and holders. */
export function factsOf(w: World, s: WorldState): Fact[] {
  const facts: Fact[] = [];
  for (const c of w.characters) if (c.owner !== null) facts.push({ relation: 'owns', character: c.owner, animal: c.id });
  for (const o of w.objects) {
    facts.push({ relation: 'colour', object: o.id, colour: o.colour });
    facts.push({ relation: 'size', object: o.id, size: o.size });
  }
  for (const c of w.characters) facts.push({ relation: 'at', subject: { kind: 'character', id: c.id }, place: s.characterPlace[c.id] });
  for (const o of w.objects) {
    facts.push({ relation: 'at', subject: { kind: 'object', id: o.id }, place: placeOfObject(s, o.id) });
    const l = s.objectLocation[o.id];
    if (l.type === 'held') facts.push({ relation: 'holds', character: l.character, object: o.id });
    else if (l.type === 'in') facts.push({ relation: 'in', object: o.id, container: l.container });
    else if (l.type === 'on') facts.push({ relation: 'on', object: o.id, surface: l.surface });
  }
  return facts;
}
