/**
 * The client's exceptions: one class per error code of the contract, all of
 * them BosunErrors (so `code`, `status` and `details` read the same as on
 * the server). A new code in the contract's table is a type error here until
 * it has its class. Browser-safe: imports nothing but the error table.
 */
import { BosunError, isErrorCode, type ErrorCode } from "../contract/errors.js";

export class ValidationError extends BosunError {
  override readonly name = "ValidationError";
}
export class InvalidJsonError extends BosunError {
  override readonly name = "InvalidJsonError";
}
export class UnauthorizedError extends BosunError {
  override readonly name = "UnauthorizedError";
}
export class ForbiddenError extends BosunError {
  override readonly name = "ForbiddenError";
}
export class NotFoundError extends BosunError {
  override readonly name = "NotFoundError";
}
export class NotFinishedError extends BosunError {
  override readonly name = "NotFinishedError";
}
export class ConflictError extends BosunError {
  override readonly name = "ConflictError";
}
export class PayloadTooLargeError extends BosunError {
  override readonly name = "PayloadTooLargeError";
}
export class UnknownTypeError extends BosunError {
  override readonly name = "UnknownTypeError";
}
export class InternalError extends BosunError {
  override readonly name = "InternalError";
}
/** NATS or the gateway unreachable, no supervisor answering, or submissions paused: retry later. */
export class UnavailableError extends BosunError {
  override readonly name = "UnavailableError";
}

type ErrorClass = new (code: ErrorCode, message: string, details?: unknown, options?: { cause?: unknown }) => BosunError;

export const errorClasses = {
  validation_error: ValidationError,
  invalid_json: InvalidJsonError,
  unauthorized: UnauthorizedError,
  forbidden: ForbiddenError,
  not_found: NotFoundError,
  not_finished: NotFinishedError,
  conflict: ConflictError,
  payload_too_large: PayloadTooLargeError,
  unknown_type: UnknownTypeError,
  internal_error: InternalError,
  unavailable: UnavailableError,
} as const satisfies Record<ErrorCode, ErrorClass>;

/** `wait()` ran out of time before the job finished (the job goes on). */
export class WaitTimeoutError extends Error {
  override readonly name = "WaitTimeoutError";
  constructor(
    readonly jobId: string,
    readonly timeoutMs: number,
  ) {
    super(`job ${jobId} did not finish within ${timeoutMs} ms`);
  }
}

/** The typed exception for an error reply's `{code, message, details}` (an unknown code reads as internal_error). */
export function errorFor(code: unknown, message: string, details?: unknown, cause?: unknown): BosunError {
  const known: ErrorCode = isErrorCode(code) ? code : "internal_error";
  return new errorClasses[known](known, message, details, cause === undefined ? undefined : { cause });
}

/** The same error as its typed subclass. */
export const typed = (err: BosunError): BosunError => (err.constructor === BosunError ? errorFor(err.code, err.message, err.details, err.cause) : err);
