// Every error Plinth raises on purpose is a PlinthError, with a message a user can act on.

export class PlinthError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** Operands whose shapes do not fit the op (the message names the op and the shapes). */
export class ShapeError extends PlinthError {}
/** A dtype an op does not take (the message names the op and the dtype). */
export class DTypeError extends PlinthError {}
/** An index, id or position outside its bound (the message names the value and the bound). */
export class IndexOutOfRangeError extends PlinthError {}
/** A misuse of autograd: backward() on a non-scalar or on a tensor that does not require grad. */
export class GradError extends PlinthError {}
/** A backend that cannot be selected or a kernel that rejected its arguments. */
export class BackendError extends PlinthError {}
/** An invalid argument value (a probability outside [0, 1], a negative size, ...). */
export class ArgumentError extends PlinthError {}
