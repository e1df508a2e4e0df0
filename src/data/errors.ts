// Errors of the data layer.
import { PlinthError } from '../errors.js';

/** Input that cannot become a dataset (no text, bad JSONL), or a dataset on disk that is missing or damaged. */
export class DataError extends PlinthError {}
