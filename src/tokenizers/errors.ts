// Errors specific to tokenizers. Unknown token ids are IndexOutOfRangeError and bad option values
// ArgumentError (both from src/errors.ts); what is left is a file or configuration Plinth cannot use.
import { PlinthError } from '../errors.js';

/** A tokenizer file that is malformed (invalid JSON, a missing field, a vocabulary that contradicts itself). */
export class TokenizerFormatError extends PlinthError {}

/** A tokenizer file that is well formed but uses a model or component Plinth does not implement. */
export class UnsupportedTokenizerError extends PlinthError {}
