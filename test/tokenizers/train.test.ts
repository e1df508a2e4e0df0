// BPE training: the incremental pair-count loop gives exactly the merges of the textbook algorithm
// (recount every pair after every merge), deterministically; files, streams and strings agree;
// vocabulary sizes and minimum frequency hold; too-small vocabularies are refused.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { ArgumentError } from '../../src/errors.js';
import { trainTokenizer } from '../../src/tokenizers/index.js';
import { learnMerges } from '../../src/tokenizers/train.js';
import { rng } from './stress.js';

const here = path.dirname(new URL(import.meta.url).pathname);
const shakespeare = readFileSync(path.resolve(here, '../../../test/fixtures/data/tinyshakespeare.txt'), 'utf8');

/** The textbook loop: count every pair of every word, merge the best, repeat. */
function naiveMerges(words: number[][], counts: number[], next: number, n: number, minFrequency: number): [number, number][] {
  const merges: [number, number][] = [];
  for (let m = 0; m < n; m++) {
    const pc = new Map<string, number>();
    words.forEach((w, i) => {
      for (let j = 0; j + 1 < w.length; j++) {
        const k = `${w[j]},${w[j + 1]}`;
        pc.set(k, (pc.get(k) ?? 0) + counts[i]!);
      }
    });
    let best: [number, number] | null = null;
    let bestCount = 0;
    for (const [k, c] of pc) {
      const [a, b] = k.split(',').map(Number) as [number, number];
      if (c > bestCount || (c === bestCount && best && (a < best[0] || (a === best[0] && b < best[1])))) {
        best = [a, b];
        bestCount = c;
      }
    }
    if (!best || bestCount < minFrequency) break;
    merges.push(best);
    const id = next++;
    for (let i = 0; i < words.length; i++) {
      const w = words[i]!;
      const nw: number[] = [];
      for (let j = 0; j < w.length; j++) {
        if (j + 1 < w.length && w[j] === best[0] && w[j + 1] === best[1]) {
          nw.push(id);
          j++;
        } else nw.push(w[j]!);
      }
      words[i] = nw;
    }
  }
  return merges;
}

describe('BPE training', () => {
  test('incremental pair counts give exactly the merges of a full recount per merge', () => {
    const r = rng(5);
    for (let trial = 0; trial < 4; trial++) {
      const words: number[][] = [];
      const counts: number[] = [];
      for (let i = 0; i < 300; i++) {
        const len = 1 + Math.floor(r() * 9);
        // A small alphabet makes repeated symbols (aaa) and ties common.
        words.push(Array.from({ length: len }, () => Math.floor(r() * 5)));
        counts.push(1 + Math.floor(r() * 4));
      }
      const want = naiveMerges(words.map((w) => [...w]), counts, 5, 120, 2);
      let next = 5;
      const got = learnMerges(words.map((w) => Int32Array.from(w)), counts, 2, 120, () => next++).merges;
      assert.deepEqual(got, want);
    }
  });

  test('tinyshakespeare to exactly 4,096 tokens, deterministically', async () => {
    const a = await trainTokenizer({ text: shakespeare, vocabSize: 4096 });
    const b = await trainTokenizer({ text: shakespeare, vocabSize: 4096 });
    assert.equal(a.vocabSize, 4096);
    assert.deepEqual(a.toJSON(), b.toJSON());
    const ids = a.encode(shakespeare);
    assert.equal(a.decode(ids), shakespeare);
    assert.ok(ids.length < Buffer.byteLength(shakespeare) / 3, `compresses the training text (${ids.length} tokens)`);
  });

  test('files, a stream of odd-sized chunks and one string train the same vocabulary', async () => {
    const text = shakespeare.slice(0, 200_000);
    const file = path.join(mkdtempSync(path.join(os.tmpdir(), 'plinth-train-')), 'a.txt');
    writeFileSync(file, text);
    async function* chunks() {
      for (let i = 0; i < text.length; i += 7919) yield text.slice(i, i + 7919);
    }
    const fromString = await trainTokenizer({ text, vocabSize: 600 });
    const fromFile = await trainTokenizer({ files: [file], vocabSize: 600 });
    const fromStream = await trainTokenizer({ text: chunks(), vocabSize: 600 });
    assert.deepEqual(fromFile.toJSON(), fromString.toJSON());
    assert.deepEqual(fromStream.toJSON(), fromString.toJSON());
  });

  test('minimum frequency stops merging early; progress is reported', async () => {
    const seen: string[] = [];
    const tok = await trainTokenizer({
      text: 'abab abab cdcd xyz',
      vocabSize: 1000,
      minFrequency: 2,
      specialTokens: [],
      onProgress: (p) => seen.push(p.phase),
    });
    assert.ok(tok.vocabSize < 270, `stopped at ${tok.vocabSize}`);
    assert.ok(seen.includes('count') && seen.includes('merge'));
  });

  test('special tokens are added whole and never split', async () => {
    const tok = await trainTokenizer({ text: shakespeare.slice(0, 50_000), vocabSize: 400, specialTokens: ['<|endoftext|>', '<pad>'] });
    const eot = tok.tokenToId('<|endoftext|>')!;
    assert.deepEqual(tok.encode('a<|endoftext|>'), [tok.encode('a')[0], eot]);
    assert.equal(tok.vocabSize, 400);
  });

  test('a vocabulary smaller than the base alphabet is refused with the numbers', async () => {
    await assert.rejects(trainTokenizer({ text: 'abc', vocabSize: 200 }), (e: Error) => e instanceof ArgumentError && /200/.test(e.message) && /256 bytes \+ 3 special tokens = 259/.test(e.message));
    await assert.rejects(trainTokenizer({ model: 'sentencepiece', text: 'abc', vocabSize: 100 }), /smaller than the base alphabet/);
    await assert.rejects(trainTokenizer({ model: 'wordpiece', text: 'abc def', vocabSize: 6 }), /smaller than the base alphabet/);
    await assert.rejects(trainTokenizer({ text: 'abc', vocabSize: 0 }), ArgumentError);
    await assert.rejects(trainTokenizer({ vocabSize: 300 }), /needs files or text/);
  });
});
