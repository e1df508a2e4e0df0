// A prepared dataset folder opened for training: its manifest, its tokenizer and both splits.
import path from 'node:path';
import { loadTokenizer, type Tokenizer } from '../tokenizers/index.js';
import { readManifest, TokenSplit, type Manifest } from './shards.js';

export interface Dataset {
  dir: string;
  manifest: Manifest;
  tokenizer: Tokenizer;
  train: TokenSplit;
  val: TokenSplit;
  /** Closes the shard files of splits read from disk. */
  close(): void;
}

/** Opens dir (written by prepareShards / `plinth prepare`); inMemory as in TokenSplit.open. */
export function openDataset(dir: string, options: { inMemory?: boolean | 'auto' } = {}): Dataset {
  const manifest = readManifest(dir);
  const train = TokenSplit.open(dir, 'train', { manifest, inMemory: options.inMemory });
  const val = TokenSplit.open(dir, 'val', { manifest, inMemory: options.inMemory });
  return {
    dir,
    manifest,
    tokenizer: loadTokenizer(path.join(dir, manifest.tokenizer)),
    train,
    val,
    close() {
      train.close();
      val.close();
    },
  };
}
