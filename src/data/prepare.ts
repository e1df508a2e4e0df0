// Text → tokenizer → token shards, streaming: documents pass through in bounded pieces, tokens
// through a fixed write buffer, so a corpus larger than memory prepares in constant memory.
//
// Up to three passes over the source: a scan (documents and lengths, to choose the validation split;
// skipped when the source knows its document count), the tokenizer (trained on the first trainBytes
// of text, unless one is given), then encoding.
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { writeFileAtomic } from '../io/index.js';
import { loadTokenizer, trainTokenizer, Tokenizer } from '../tokenizers/index.js';
import { DataError } from './errors.js';
import {
  MANIFEST_FILE, MANIFEST_FORMAT, ShardWriter, dtypeForVocab, readManifest, removeUnreferenced,
  type Manifest, type SplitName,
} from './shards.js';
import { fileSource, type DocumentPiece, type DocumentSource, type ReadLimits } from './sources.js';

export interface PrepareProgress {
  phase: 'scan' | 'tokenizer' | 'encode';
  /** Input bytes consumed so far in this phase. */
  bytes: number;
  /** Known from the start for files, after the scan for any source; else null. */
  totalBytes: number | null;
  /** Documents finished so far in this phase (the tokenizer phase counts none). */
  documents: number;
  /** Known from the start for generated stories, after the scan for any source; else null. */
  totalDocuments: number | null;
}

export interface PrepareOptions extends ReadLimits {
  /** Output folder (created if needed). */
  out: string;
  /** Text files or folders; or */
  input?: readonly string[];
  /** any document source (e.g. storySource()). */
  source?: DocumentSource;
  /** A tokenizer, or what loadTokenizer takes (a folder, a tokenizer.json, a built-in name). Default: train one. */
  tokenizer?: Tokenizer | string;
  /** Vocabulary size of a trained tokenizer (default 4096). */
  vocabSize?: number;
  /** Kind of trained tokenizer: byte-level BPE (default) or SentencePiece-style BPE. */
  tokenizerModel?: 'bpe' | 'sentencepiece';
  /** Bytes of text to train the tokenizer on (default 64 MiB): the first of the corpus. */
  trainBytes?: number;
  /** Fraction of the text held out for validation (default 0.05). */
  valFraction?: number;
  /** Tokens per shard file (default 100 M). */
  shardTokens?: number;
  /** Tokens buffered before a write (default 1 Mi). */
  bufferTokens?: number;
  onProgress?: (p: PrepareProgress) => void;
}

export interface PrepareStats {
  documents: number;
  bytes: number;
  seconds: number;
  /** Largest text buffer the reader held, in characters. */
  maxBufferedChars: number;
  /** Largest token buffer held per split. */
  maxBufferedTokens: number;
  /** Largest piece of text encoded at once, in characters. */
  maxPieceChars: number;
  tokenizerTrained: boolean;
}

export interface PrepareResult {
  dir: string;
  manifest: Manifest;
  tokenizer: Tokenizer;
  stats: PrepareStats;
}

/** With fewer documents than this many val documents' worth, each document's tail is held out instead. */
const MIN_VAL_DOCUMENTS = 4;

export async function prepareShards(options: PrepareOptions): Promise<PrepareResult> {
  const t0 = performance.now();
  const valFraction = options.valFraction ?? 0.05;
  if (!(valFraction >= 0 && valFraction < 1)) throw new DataError(`valFraction must be in [0, 1), got ${valFraction}`);
  if (!options.out) throw new DataError('prepare needs an output folder');
  if ((options.input === undefined) === (options.source === undefined)) throw new DataError('prepare needs exactly one of input and source');
  const source = options.source ?? fileSource(options.input!, options);
  // Totals: bytes are known up front for files, documents for generated stories, both after a scan.
  let totalBytes = source.totalBytes;
  let totalDocuments = source.documents;
  const meter = (phase: PrepareProgress['phase']) => {
    const p: PrepareProgress = { phase, bytes: 0, totalBytes, documents: 0, totalDocuments };
    return {
      bytes: (n: number) => { p.bytes += n; options.onProgress?.(p); },
      document: () => { p.documents++; options.onProgress?.(p); },
    };
  };

  // 1. Scan: count documents (and, for few documents, their lengths) to choose the split. A source
  // that knows it has enough documents for a per-document split needs no scan.
  const lengths: number[] = [];
  let documents = 0;
  let bytes = 0;
  const scan = source.documents === null || (valFraction > 0 && source.documents * valFraction < MIN_VAL_DOCUMENTS);
  if (scan) {
    const m = meter('scan');
    let length = 0;
    for await (const p of source.pieces((n) => { bytes += n; m.bytes(n); })) {
      length += p.text.length;
      if (!p.last) continue;
      if (length > 0) {
        documents++;
        m.document();
        if (lengths.length <= MIN_VAL_DOCUMENTS / Math.max(valFraction, 1e-9)) lengths.push(length);
      }
      length = 0;
    }
    if (documents === 0) throw new DataError(`no text in ${source.description}`);
    totalBytes = bytes;
    totalDocuments = documents;
  } else {
    documents = source.documents!;
  }
  const mode: 'documents' | 'tail' = valFraction > 0 && documents * valFraction < MIN_VAL_DOCUMENTS ? 'tail' : 'documents';

  // 2. The tokenizer.
  const tokenizer = await getTokenizer(options, source, meter('tokenizer').bytes);
  const eosId = tokenizer.specialId('eosToken') ?? null;
  const bosId = tokenizer.specialId('bosToken') ?? null;
  // Before every document: the beginning-of-text token where there is one (Llama's <s>), else the
  // end-of-text token, which GPT-2 uses both ways (<|endoftext|> doc <|endoftext|> doc ...).
  const separatorId = bosId ?? eosId;
  if (separatorId === null) {
    throw new DataError('the tokenizer has neither an end-of-text nor a beginning-of-text token to separate documents with');
  }
  const vocabSize = tokenizer.vocabSize;
  const dtype = dtypeForVocab(vocabSize);

  // 3. Encode into new files; the old dataset (if any) stays valid until the new manifest replaces it.
  const out = options.out;
  mkdirSync(out, { recursive: true });
  let old: Manifest | null = null;
  try {
    old = readManifest(out);
  } catch {
    old = null;
  }
  removeUnreferenced(out, old);
  const generation = (old?.generation ?? 0) + 1;
  const shardTokens = options.shardTokens ?? 100_000_000;
  const bufferTokens = options.bufferTokens ?? 1 << 20;
  const writers: Record<SplitName, ShardWriter> = {
    train: new ShardWriter(out, `train.g${generation}`, dtype, vocabSize, shardTokens, bufferTokens),
    val: new ShardWriter(out, `val.g${generation}`, dtype, vocabSize, shardTokens, bufferTokens),
  };
  const tokenizerDir = `tokenizer.g${generation}`;
  const counts: Record<SplitName, number> = { train: 0, val: 0 };
  let maxPieceChars = 0;
  try {
    const encode = { addSpecialTokens: false, allowedSpecial: 'none' } as const;
    const write = (split: SplitName, text: string, startsDocument: boolean) => {
      if (text === '') return;
      maxPieceChars = Math.max(maxPieceChars, text.length);
      if (startsDocument) {
        writers[split].write([separatorId]);
        counts[split]++;
      }
      writers[split].write(tokenizer.encodeToInt32(text, encode));
    };
    let doc = 0;
    let pos = 0; // characters of the current document seen so far
    const opened: Record<SplitName, boolean> = { train: false, val: false };
    const m = meter('encode');
    let encodedBytes = 0;
    for await (const p of source.pieces((n) => { encodedBytes += n; m.bytes(n); })) {
      if (p.first) {
        pos = 0;
        opened.train = opened.val = false;
      }
      if (mode === 'documents') {
        const split: SplitName = Math.floor((doc + 1) * valFraction) > Math.floor(doc * valFraction) ? 'val' : 'train';
        write(split, p.text, !opened[split]);
        if (p.text !== '') opened[split] = true;
      } else {
        // The last valFraction of the document goes to val, cut after a newline where there is one.
        const cutAt = Math.floor((lengths[doc] ?? 0) * (1 - valFraction));
        const [head, tail] = splitPiece(p, pos, cutAt);
        write('train', head, !opened.train);
        if (head !== '') opened.train = true;
        write('val', tail, !opened.val);
        if (tail !== '') opened.val = true;
      }
      pos += p.text.length;
      if (p.last && pos > 0) {
        doc++;
        m.document();
      }
    }
    if (doc === 0) throw new DataError(`no text in ${source.description}`);
    documents = doc;
    bytes = encodedBytes;
    const trainShards = writers.train.finish();
    const valShards = writers.val.finish();
    tokenizer.save(path.join(out, tokenizerDir));
    const manifest: Manifest = {
      format: MANIFEST_FORMAT,
      version: 1,
      generation,
      tokenizer: tokenizerDir,
      vocabSize,
      dtype,
      separatorId,
      bosId,
      eosId,
      split: { mode, valFraction },
      splits: {
        train: { tokens: writers.train.tokens, documents: counts.train, shards: trainShards },
        val: { tokens: writers.val.tokens, documents: counts.val, shards: valShards },
      },
      source: { description: source.description, documents, bytes },
    };
    writeFileAtomic(path.join(out, MANIFEST_FILE), JSON.stringify(manifest, null, 2) + '\n');
    removeUnreferenced(out, manifest);
    return {
      dir: out,
      manifest,
      tokenizer,
      stats: {
        documents, bytes, seconds: (performance.now() - t0) / 1000,
        maxBufferedChars: source.stats.maxBufferedChars,
        maxBufferedTokens: Math.max(writers.train.bufferTokens, writers.val.bufferTokens),
        maxPieceChars,
        tokenizerTrained: options.tokenizer === undefined,
      },
    };
  } catch (e) {
    writers.train.abort();
    writers.val.abort();
    rmSync(path.join(out, tokenizerDir), { recursive: true, force: true });
    throw e;
  }
}

/**
 * Splits a piece of a document at document offset cutAt into [head, tail], moving the cut back to
 * just after a nearby newline (so that val starts on a fresh line), else to a space (so that no word
 * is cut in two).
 */
function splitPiece(p: DocumentPiece, pos: number, cutAt: number): [string, string] {
  const end = pos + p.text.length;
  if (cutAt >= end) return [p.text, ''];
  if (cutAt <= pos) return ['', p.text];
  let k = cutAt - pos;
  const nl = p.text.lastIndexOf('\n', k - 1);
  const sp = p.text.lastIndexOf(' ', k);
  if (nl >= 0 && nl >= k - 1024) k = nl + 1;
  else if (sp > 0 && sp >= k - 64) k = sp;
  return [p.text.slice(0, k), p.text.slice(k)];
}

async function getTokenizer(options: PrepareOptions, source: DocumentSource, onBytes: (n: number) => void): Promise<Tokenizer> {
  if (options.tokenizer instanceof Tokenizer) return options.tokenizer;
  if (typeof options.tokenizer === 'string') return loadTokenizer(options.tokenizer);
  const vocabSize = options.vocabSize ?? 4096;
  const trainBytes = options.trainBytes ?? 64 << 20;
  if (!Number.isInteger(trainBytes) || trainBytes < 1) throw new DataError(`trainBytes must be a positive integer, got ${trainBytes}`);
  // The trainer reads a stream of text; documents end with a newline so words never run together.
  async function* text(): AsyncGenerator<string> {
    let used = 0;
    for await (const p of source.pieces(onBytes)) {
      yield p.last ? p.text + '\n' : p.text;
      used += Buffer.byteLength(p.text);
      if (used >= trainBytes && p.last) return;
    }
  }
  return trainTokenizer({ text: text(), vocabSize, model: options.tokenizerModel ?? 'bpe' });
}
