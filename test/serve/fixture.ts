// A tiny random Llama with a trained byte-level BPE tokenizer (ChatML template), saved as a
// checkpoint folder: enough for the server and the generate/chat commands to run end to end fast.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as pl from '../../src/index.js';
import '../helpers.js'; // NaN-poisoned step buffers in this process and the servers it starts

const TEXT = [
  'The cat sat on the mat. The dog ran to the park and found a red ball.',
  'Alice gave Bob three apples; Bob ate two of them and kept one for later.',
  'Numbers: 1 2 3 4 5 6 7 8 9 10. Colours: red, green, blue, yellow, purple.',
  'Once upon a time a small robot learned to paint the sky in every colour it knew.',
].join('\n');

let cached: Promise<string> | null = null;

/** The folder of the tiny checkpoint (made once per test process). */
export function tinyModelDir(): Promise<string> {
  cached ??= (async () => {
    const tokenizer = await pl.trainTokenizer({ text: TEXT.repeat(20), vocabSize: 300 });
    tokenizer.config.chatTemplate = pl.CHATML_TEMPLATE;
    pl.manualSeed(7);
    const model = pl.createModel({
      model_type: 'llama', vocab_size: tokenizer.vocabSize, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2,
      num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 128, rms_norm_eps: 1e-5, rope_theta: 10000,
      tie_word_embeddings: false,
    });
    const dir = mkdtempSync(path.join(tmpdir(), 'plinth-serve-'));
    pl.saveModel(model, dir, { tokenizer, generationConfig: { eos_token_id: tokenizer.specialId('eosToken') } });
    return dir;
  })();
  return cached;
}
