// Public API of the tokenizers layer.
export { loadTokenizer } from './load.js';
export type { LoadTokenizerOptions } from './load.js';
export { trainTokenizer } from './train.js';
export type { TrainTokenizerOptions, TrainTokenizerProgress } from './train.js';
export { Tokenizer } from './tokenizer.js';
export type { AddedToken, BatchEncoding, EncodeBatchOptions, ChatEncoding, EncodeOptions, TokenEncoding, TokenizerConfig } from './tokenizer.js';
export { tokenizerFromJSON } from './tokenizer-json.js';
export type { ChatMessage, ChatTemplateOptions } from './chat.js';
export { CHATML_TEMPLATE } from './chat.js';
export { CL100K_PATTERN, O200K_PATTERN, R50K_PATTERN } from './pretokenize.js';
export { TokenizerFormatError, UnsupportedTokenizerError } from './errors.js';
