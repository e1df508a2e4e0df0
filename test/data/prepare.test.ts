// Text → token shards: round trips, the dtype choice, the validation split, the manifest, bounded
// streaming, atomic replacement and the errors a user sees.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DataError } from '../../src/data/errors.js';
import { prepareShards } from '../../src/data/prepare.js';
import { MANIFEST_FILE, TokenSplit, readManifest, type Manifest, type SplitName } from '../../src/data/shards.js';
import { DOCUMENT_SEPARATOR, documentSource, storySource } from '../../src/data/sources.js';
import { openDataset } from '../../src/data/dataset.js';
import { corpusStories } from '../../src/data/stories.js';
import { Tokenizer, loadTokenizer, trainTokenizer } from '../../src/tokenizers/index.js';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'plinth-data-'));
process.on('exit', () => rmSync(tmp, { recursive: true, force: true }));
let dirs = 0;
const fresh = (name: string) => path.join(tmp, `${name}-${dirs++}`);

const stories = (seed: number, n: number) => [...corpusStories({ seed, stories: n })].map((s) => s.text);
const TOKENIZER: Tokenizer = await trainTokenizer({ text: stories(77, 200).join('\n'), vocabSize: 400 });

function tokensOf(dir: string, split: SplitName, m?: Manifest): Uint16Array | Uint32Array {
  const s = TokenSplit.open(dir, split, { manifest: m });
  const out = s.dtype === 'uint16' ? new Uint16Array(s.length) : new Uint32Array(s.length);
  s.read(0, out);
  return out;
}

/** The documents of a split: its tokens cut at the separator, each decoded. */
function documentsOf(dir: string, split: SplitName, tok: Tokenizer): string[] {
  const m = readManifest(dir);
  const ids = tokensOf(dir, split, m);
  const docs: string[] = [];
  let start = -1;
  for (let i = 0; i <= ids.length; i++) {
    if (i === ids.length || ids[i] === m.separatorId) {
      if (start >= 0) docs.push(tok.decode(ids.subarray(start, i)));
      start = i + 1;
    }
  }
  if (ids.length > 0) assert.equal(ids[0], m.separatorId, 'every document starts with the separator');
  return docs;
}

const isVal = (i: number, f: number) => Math.floor((i + 1) * f) > Math.floor(i * f);

test('folders of .txt, .md and .jsonl round-trip: decoded shards are the documents, with separators', async () => {
  const input = fresh('in');
  mkdirSync(path.join(input, 'sub', 'deeper'), { recursive: true });
  const docs = stories(1, 240);
  // a.txt: 100 documents separated TinyStories-style; sub/b.md: one document; sub/deeper/c.jsonl: the rest.
  writeFileSync(path.join(input, 'a.txt'), docs.slice(0, 100).join(`\n${DOCUMENT_SEPARATOR}\n`) + '\n');
  writeFileSync(path.join(input, 'sub', 'b.md'), `\n${docs[100]}\n\n`);
  writeFileSync(path.join(input, 'sub', 'deeper', 'c.jsonl'), docs.slice(101).map((text) => JSON.stringify({ text, id: 1 })).join('\n') + '\n\n');
  writeFileSync(path.join(input, 'sub', 'ignored.png'), 'not text');
  writeFileSync(path.join(input, '.hidden.txt'), 'hidden files are skipped');

  const out = fresh('out');
  const r = await prepareShards({ input: [input], out, tokenizer: TOKENIZER, valFraction: 0.1 });
  const m = r.manifest;
  assert.equal(m.split.mode, 'documents');
  assert.equal(m.source.documents, 240);
  const want = { train: docs.filter((_, i) => !isVal(i, 0.1)), val: docs.filter((_, i) => isVal(i, 0.1)) };
  assert.equal(want.val.length, 24);
  assert.deepEqual(documentsOf(out, 'train', TOKENIZER), want.train);
  assert.deepEqual(documentsOf(out, 'val', TOKENIZER), want.val);
  // The whole shard, not just its documents: separator + document, over and over.
  const sep = TOKENIZER.decode([m.separatorId]);
  assert.equal(TOKENIZER.decode(tokensOf(out, 'train')), want.train.map((d) => sep + d).join(''));
  assert.equal(m.splits.train.documents, 216);
  assert.equal(m.splits.val.documents, 24);
  assert.equal(m.splits.train.tokens + m.splits.val.tokens, [...docs].reduce((n, d) => n + 1 + TOKENIZER.encode(d, { addSpecialTokens: false }).length, 0));
});

test('the manifest describes the dataset, and the saved tokenizer is the one used', async () => {
  const out = fresh('out');
  const r = await prepareShards({ source: storySource({ seed: 5, stories: 300 }), out, vocabSize: 350, valFraction: 0.05 });
  const m = JSON.parse(readFileSync(path.join(out, MANIFEST_FILE), 'utf8')) as Manifest;
  assert.deepEqual(m, r.manifest);
  assert.equal(m.format, 'plinth-token-shards');
  assert.equal(m.dtype, 'uint16');
  assert.equal(m.vocabSize, r.tokenizer.vocabSize);
  assert.ok(m.vocabSize <= 350);
  assert.equal(m.eosId, r.tokenizer.specialId('eosToken'));
  assert.equal(m.separatorId, m.eosId, 'a GPT-2 style tokenizer separates documents with <|endoftext|>');
  assert.equal(m.splits.train.documents + m.splits.val.documents, 300);
  assert.equal(m.splits.val.documents, 15);
  assert.equal(m.source.documents, 300);
  assert.ok(r.stats.tokenizerTrained);
  const ds = openDataset(out);
  assert.equal(ds.tokenizer.vocabSize, m.vocabSize);
  const text = stories(5, 1)[0];
  assert.deepEqual(ds.tokenizer.encode(text), r.tokenizer.encode(text));
  assert.equal(ds.train.length, m.splits.train.tokens);
  for (const s of [...m.splits.train.shards, ...m.splits.val.shards]) {
    assert.equal(readFileSync(path.join(out, s.file)).length, s.tokens * 2, `${s.file} holds uint16 tokens`);
  }
});

test('uint32 shards when the vocabulary does not fit in uint16; ids above 65535 survive', async () => {
  // The trained tokenizer plus an end-of-text token with id 70000.
  const big = new Tokenizer({
    model: TOKENIZER.model,
    addedTokens: [{ id: 70_000, content: '<|doc|>', special: true }],
    config: { eosToken: '<|doc|>' },
  });
  const out = fresh('out');
  const docs = stories(2, 30);
  const r = await prepareShards({ source: documentSource('docs', () => docs), out, tokenizer: big, valFraction: 0 });
  assert.equal(r.manifest.dtype, 'uint32');
  assert.equal(r.manifest.separatorId, 70_000);
  const ids = tokensOf(out, 'train');
  assert.ok(ids instanceof Uint32Array);
  assert.equal(ids.filter((x) => x === 70_000).length, 30);
  assert.equal(readFileSync(path.join(out, r.manifest.splits.train.shards[0].file)).length, ids.length * 4);
  assert.equal(big.decode(ids), docs.map((d) => '<|doc|>' + d).join(''));
  assert.equal(r.manifest.splits.val.tokens, 0);
});

test('one long document: the last valFraction of it (from a line start) is the validation split', async () => {
  const input = fresh('in');
  mkdirSync(input);
  const lines = stories(3, 60).flatMap((s) => s.split('. ').map((x) => x + '.'));
  const text = lines.join('\n');
  writeFileSync(path.join(input, 'book.txt'), text);
  const out = fresh('out');
  const r = await prepareShards({ input: [path.join(input, 'book.txt')], out, tokenizer: TOKENIZER, valFraction: 0.1 });
  assert.equal(r.manifest.split.mode, 'tail');
  const [train] = documentsOf(out, 'train', TOKENIZER);
  const [val] = documentsOf(out, 'val', TOKENIZER);
  assert.equal(train + val, text);
  assert.ok(train.endsWith('\n'), 'validation text starts on a new line');
  const share = val.length / text.length;
  assert.ok(share > 0.09 && share < 0.12, `val holds ${share} of the text`);
});

test('streaming: several MB pass through bounded buffers into many shards, and round-trip', async () => {
  const input = fresh('in');
  mkdirSync(input);
  // 2 MB of separated documents plus a 1.5 MB document with no separator at all.
  const docs: string[] = [];
  let bytes = 0;
  for (const s of corpusStories({ seed: 11, bytes: 2_000_000 })) {
    docs.push(s.text);
    bytes += s.text.length;
  }
  let long = '';
  for (const s of corpusStories({ seed: 12, bytes: 1_500_000 })) long += s.text + '\n';
  long = long.trimEnd();
  writeFileSync(path.join(input, 'many.txt'), docs.join(`\n${DOCUMENT_SEPARATOR}\n`));
  writeFileSync(path.join(input, 'long.txt'), long);
  const out = fresh('out');
  const limits = { chunkBytes: 1 << 16, maxPieceChars: 1 << 15, bufferTokens: 4096, shardTokens: 100_000 };
  const r = await prepareShards({ input: [input], out, tokenizer: TOKENIZER, valFraction: 0.05, ...limits });
  assert.ok(bytes + long.length > 3_000_000);
  assert.ok(r.stats.maxBufferedChars <= limits.chunkBytes + limits.maxPieceChars + 2 * DOCUMENT_SEPARATOR.length,
    `reader held ${r.stats.maxBufferedChars} characters`);
  assert.ok(r.stats.maxPieceChars <= limits.maxPieceChars, `encoded ${r.stats.maxPieceChars} characters at once`);
  assert.equal(r.stats.maxBufferedTokens, 4096);
  assert.ok(r.manifest.splits.train.shards.length >= 5, `${r.manifest.splits.train.shards.length} shards`);
  assert.ok(r.manifest.splits.train.shards.slice(0, -1).every((s) => s.tokens === 100_000));
  const all = [long, ...docs]; // folders are read in sorted order: long.txt, many.txt
  const got = documentsOf(out, 'train', TOKENIZER);
  assert.deepEqual(got, all.filter((_, i) => !isVal(i, 0.05)));
  // Reading windows from disk gives the same tokens as loading the split.
  const disk = TokenSplit.open(out, 'train', { inMemory: false });
  const mem = tokensOf(out, 'train');
  const w = new Uint16Array(5000);
  for (const start of [0, 99_998, 250_001, mem.length - 5000]) {
    disk.read(start, w);
    assert.deepEqual(w, mem.subarray(start, start + 5000));
  }
  disk.close();
});

test('a second prepare replaces the dataset atomically; an interrupted one leaves the old one intact', async () => {
  const out = fresh('out');
  const opts = { out, tokenizer: TOKENIZER, shardTokens: 2000, valFraction: 0.1 };
  const first = await prepareShards({ source: documentSource('a', () => stories(4, 50)), ...opts });
  const firstFiles = readdirSync(out).sort();
  const second = await prepareShards({ source: documentSource('b', () => stories(6, 50)), ...opts });
  assert.equal(second.manifest.generation, first.manifest.generation + 1);
  const files = readdirSync(out).sort();
  assert.ok(files.every((f) => !firstFiles.includes(f) || f === MANIFEST_FILE), `old files removed: ${files}`);
  assert.deepEqual(readManifest(out), second.manifest);

  // A source that fails halfway through encoding (its third pass: scan, tokenizer... here encode).
  let passes = 0;
  const failing = documentSource('c', function* () {
    passes++;
    let i = 0;
    for (const d of stories(8, 50)) {
      if (passes === 2 && i++ === 30) throw new Error('disk unplugged');
      yield d;
    }
  });
  await assert.rejects(prepareShards({ source: failing, ...opts }), /disk unplugged/);
  assert.deepEqual(readManifest(out), second.manifest, 'the manifest still describes the second dataset');
  assert.deepEqual(readdirSync(out).sort(), files, 'no partial or temporary files are left');
  assert.deepEqual(documentsOf(out, 'train', TOKENIZER), stories(6, 50).filter((_, i) => !isVal(i, 0.1)));

  // What a killed prepare leaves behind goes at the next one; files that are not the dataset's stay.
  writeFileSync(path.join(out, 'train.g3-00004.bin.tmp'), 'partial');
  mkdirSync(path.join(out, 'tokenizer.g3'));
  writeFileSync(path.join(out, 'notes.txt'), 'mine');
  const third = await prepareShards({ source: documentSource('d', () => stories(7, 50)), ...opts });
  const expected = [MANIFEST_FILE, 'notes.txt', third.manifest.tokenizer, ...third.manifest.splits.train.shards.map((x) => x.file),
    ...third.manifest.splits.val.shards.map((x) => x.file)];
  assert.deepEqual(readdirSync(out).sort(), expected.sort());
});

test('clear errors: no text, missing paths, bad JSONL, damaged shards', async () => {
  const empty = fresh('empty');
  mkdirSync(path.join(empty, 'sub'), { recursive: true });
  writeFileSync(path.join(empty, 'picture.png'), 'x');
  await assert.rejects(prepareShards({ input: [empty], out: fresh('out'), tokenizer: TOKENIZER }),
    (e: Error) => e instanceof DataError && e.message.includes(empty) && /no text files/.test(e.message));
  writeFileSync(path.join(empty, 'sub', 'blank.txt'), '  \n\n ');
  writeFileSync(path.join(empty, 'none.jsonl'), '\n{"text": ""}\n');
  await assert.rejects(prepareShards({ input: [empty], out: fresh('out'), tokenizer: TOKENIZER }),
    (e: Error) => e instanceof DataError && e.message.includes(empty) && /no text/.test(e.message));
  const missing = path.join(tmp, 'does-not-exist');
  await assert.rejects(prepareShards({ input: [missing], out: fresh('out') }), (e: Error) => e instanceof DataError && e.message.includes(missing));

  const bad = fresh('bad');
  mkdirSync(bad);
  writeFileSync(path.join(bad, 'x.jsonl'), '{"text": "fine"}\n{"text": 3}\n');
  await assert.rejects(prepareShards({ input: [bad], out: fresh('out'), tokenizer: TOKENIZER }),
    (e: Error) => e instanceof DataError && e.message.includes('x.jsonl:2') && /"text"/.test(e.message));
  writeFileSync(path.join(bad, 'x.jsonl'), '{"text": "fine"}\n{"text": "fine", \n');
  await assert.rejects(prepareShards({ input: [bad], out: fresh('out'), tokenizer: TOKENIZER }),
    (e: Error) => e instanceof DataError && e.message.includes('x.jsonl:2') && /not valid JSON/.test(e.message));
  await assert.rejects(prepareShards({ input: [bad], out: fresh('out'), valFraction: 1 }), DataError);

  const out = fresh('out');
  const r = await prepareShards({ source: documentSource('d', () => stories(9, 40)), out, tokenizer: TOKENIZER });
  assert.throws(() => readManifest(fresh('nothing')), (e: Error) => e instanceof DataError && /manifest\.json/.test(e.message));
  const shard = path.join(out, r.manifest.splits.train.shards[0].file);
  truncateSync(shard, 10);
  assert.throws(() => readManifest(out), (e: Error) => e instanceof DataError && e.message.includes(shard));
  rmSync(shard);
  assert.throws(() => openDataset(out), (e: Error) => e instanceof DataError && e.message.includes(shard) && /missing/.test(e.message));
  assert.ok(existsSync(path.join(out, r.manifest.tokenizer, 'tokenizer.json')));
  assert.ok(loadTokenizer(path.join(out, r.manifest.tokenizer)).vocabSize === TOKENIZER.vocabSize);
});
