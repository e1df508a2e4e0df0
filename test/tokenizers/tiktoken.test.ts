// Byte-level BPE against js-tiktoken (the oracle) for r50k_base, cl100k_base and o200k_base, on
// tinyshakespeare and the stress corpus; the pre-tokenizer scanners against the regular
// expressions they replace; lossless decoding.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { Tiktoken } from 'js-tiktoken/lite';
import { IndexOutOfRangeError } from '../../src/errors.js';
import { loadTokenizer } from '../../src/tokenizers/index.js';
import { CL100K_PATTERN, R50K_PATTERN, preTokenizer, scanCl100k, scanR50k, splitPieces } from '../../src/tokenizers/pretokenize.js';
import { formatTiktokenRanks, parseTiktokenRanks } from '../../src/tokenizers/tiktoken.js';
import { loneSurrogates, stressCorpus } from './stress.js';

const here = path.dirname(new URL(import.meta.url).pathname);
const shakespeare = readFileSync(path.resolve(here, '../../../test/fixtures/data/tinyshakespeare.txt'), 'utf8');
const stress = stressCorpus();

async function oracle(name: string): Promise<Tiktoken> {
  const ranks = (await import(`js-tiktoken/ranks/${name}`)) as { default: ConstructorParameters<typeof Tiktoken>[0] };
  return new Tiktoken(ranks.default);
}

function firstDifference(a: ArrayLike<number>, b: ArrayLike<number>): string | null {
  const n = Math.max(a.length, b.length);
  for (let i = 0; i < n; i++) {
    if (a[i] !== b[i]) return `at ${i}: plinth ${JSON.stringify(Array.from(a).slice(i, i + 6))} oracle ${JSON.stringify(Array.from(b).slice(i, i + 6))}`;
  }
  return null;
}

function regexPieces(pattern: string, text: string): number[] {
  const out: number[] = [];
  for (const m of text.matchAll(new RegExp(pattern, 'gu'))) out.push(m.index!, m.index! + m[0].length);
  return out;
}

describe('pre-tokenizer scanners', () => {
  for (const [name, pattern, scan] of [
    ['r50k', R50K_PATTERN, scanR50k],
    ['cl100k', CL100K_PATTERN, scanCl100k],
  ] as const) {
    test(`${name} scanner splits exactly like its regular expression`, () => {
      const pre = preTokenizer(pattern);
      assert.equal(pre.scan, scan);
      for (const s of [...stress, ...loneSurrogates(), shakespeare.slice(0, 200_000)]) {
        const got = splitPieces(pre, s);
        const want = regexPieces(pattern, s);
        assert.deepEqual(got, want, `pieces differ for ${JSON.stringify(s.slice(0, 60))}`);
      }
    });
  }

  test('tokenizer.json inline case-insensitive groups are translated', () => {
    const pre = preTokenizer(String.raw`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`);
    assert.equal(pre.scan, scanCl100k);
    const other = preTokenizer(String.raw`(?i:'ll|'ve)|\p{L}+|\s+|.`);
    assert.deepEqual(splitPieces(other, "WE'LL go"), [0, 2, 2, 5, 5, 6, 6, 8]);
  });
});

describe('byte-level BPE matches js-tiktoken', () => {
  for (const name of ['r50k_base', 'cl100k_base']) {
    test(`${name}: tinyshakespeare and the stress corpus`, async () => {
      const tok = loadTokenizer(name);
      const ref = await oracle(name);
      assert.equal(firstDifference(tok.encode(shakespeare), ref.encode(shakespeare)), null);
      for (const s of [...stress, ...loneSurrogates()]) {
        const d = firstDifference(tok.encode(s), ref.encode(s, 'all'));
        assert.equal(d, null, `${JSON.stringify(s.slice(0, 60))}: ${d}`);
      }
      // Cold (cache cleared) and warm runs agree, and the whole corpus as one text too.
      const joined = stress.join('');
      const warm = tok.encode(joined);
      tok.clearCache();
      assert.deepEqual(tok.encode(joined), warm);
      assert.equal(firstDifference(warm, ref.encode(joined, 'all')), null);
    });
  }

  test('o200k_base from a rank file written from the oracle package (regular-expression path)', async () => {
    const ranks = (await import('js-tiktoken/ranks/o200k_base')) as { default: { bpe_ranks: string; special_tokens: Record<string, number> } };
    const tokens: (Uint8Array | null)[] = [];
    for (const line of ranks.default.bpe_ranks.split('\n')) {
      if (!line) continue;
      const [, first, ...b64] = line.split(' ');
      b64.forEach((t, i) => (tokens[Number(first) + i] = new Uint8Array(Buffer.from(t, 'base64'))));
    }
    const file = path.join(mkdtempSync(path.join(os.tmpdir(), 'plinth-tok-')), 'o200k_base.tiktoken');
    writeFileSync(file, formatTiktokenRanks(tokens));
    const tok = loadTokenizer(file, { pattern: 'o200k', specialTokens: ranks.default.special_tokens });
    const ref = await oracle('o200k_base');
    const sample = shakespeare.slice(0, 100_000);
    assert.equal(firstDifference(tok.encode(sample), ref.encode(sample)), null);
    for (const s of stress) assert.equal(firstDifference(tok.encode(s), ref.encode(s, 'all')), null, JSON.stringify(s.slice(0, 60)));
  });
});

describe('decoding', () => {
  test('decode(encode(x)) === x for every stress string', () => {
    for (const name of ['r50k_base', 'cl100k_base']) {
      const tok = loadTokenizer(name);
      for (const s of stress) assert.equal(tok.decode(tok.encode(s)), s, `${name}: ${JSON.stringify(s.slice(0, 60))}`);
      assert.equal(tok.decode(tok.encode(shakespeare)), shakespeare);
    }
  });

  test('decodeBytes is lossless when tokens cut a character; decode marks the cut with U+FFFD', () => {
    const tok = loadTokenizer('r50k_base');
    const ids = tok.encode('🙂');
    assert.ok(ids.length > 1, 'the emoji spans several byte tokens');
    const bytes = Buffer.concat(ids.map((id) => Buffer.from(tok.decodeBytes([id]))));
    assert.deepEqual(bytes, Buffer.from('🙂'));
    assert.equal(tok.decode(ids.slice(0, 1)), '\ufffd');
    assert.equal(Buffer.from(tok.decodeBytes(ids)).toString('utf8'), '🙂');
  });

  test('lone surrogates encode as U+FFFD, like TextEncoder', () => {
    const tok = loadTokenizer('cl100k_base');
    assert.equal(tok.decode(tok.encode('a\ud800b')), 'a\ufffdb');
  });

  test('special tokens are never split, and can be disabled', () => {
    const tok = loadTokenizer('cl100k_base');
    assert.deepEqual(tok.encode('<|endoftext|>'), [100257]);
    assert.deepEqual(tok.encode('a<|endoftext|>b'), [64, 100257, 65]);
    assert.ok(tok.encode('<|endoftext|>', { allowedSpecial: 'none' }).length > 1);
    assert.equal(tok.decode([64, 100257, 65]), 'a<|endoftext|>b');
    assert.equal(tok.decode([64, 100257, 65], { skipSpecialTokens: true }), 'ab');
  });

  test('an unknown token id is an IndexOutOfRangeError naming the id', () => {
    const tok = loadTokenizer('cl100k_base');
    assert.throws(() => tok.decode([15339, 100261]), (e: Error) => e instanceof IndexOutOfRangeError && /100261/.test(e.message));
    assert.throws(() => tok.decode([-1]), IndexOutOfRangeError);
    assert.throws(() => tok.decode([1.5]), IndexOutOfRangeError);
  });

  test('vocabSize and rank file round trip', () => {
    assert.equal(loadTokenizer('r50k_base').vocabSize, 50257);
    assert.equal(loadTokenizer('cl100k_base').vocabSize, 100277);
    const text = readFileSync(path.resolve(here, '../../../data/tokenizers/r50k_base.tiktoken'), 'utf8');
    assert.equal(formatTiktokenRanks(parseTiktokenRanks(text)), text);
  });
});
