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
/** The gateway refused the request's Accept header. */
export class NotAcceptableError extends BosunError {
  override readonly name = "NotAcceptableError";
}
/** The HTTP request (headers and body) did not arrive within the gateway's request timeout. */
export class RequestTimeoutError extends BosunError {
  override readonly name = "RequestTimeoutError";
}
export class NotFinishedError extends BosunError {
  override readonly name = "NotFinishedError";
}
export class ConflictError extends BosunError {
  override readonly name = "ConflictError";
}
/** The idempotency key was used for a job of another type or payload; `jobId` is that job (this one was not accepted). */
export class IdempotencyConflictError extends BosunError {
  override readonly name = "IdempotencyConflictError";
  get jobId(): string | undefined {
    const id = (this.details as { job_id?: unknown } | undefined)?.job_id;
    return typeof id === "string" ? id : undefined;
  }
}
export class PayloadTooLargeError extends BosunError {
  override readonly name = "PayloadTooLargeError";
}
export class UriTooLongError extends BosunError {
  override readonly name = "UriTooLongError";
}
export class UnknownTypeError extends BosunError {
  override readonly name = "UnknownTypeError";
}
export class HeadersTooLargeError extends BosunError {
  override readonly name = "HeadersTooLargeError";
}
export class InternalError extends BosunError {
  override readonly name = "InternalError";
}
/** NATS or the gateway unreachable, no supervisor answering, or submissions paused: retry later. */
export class UnavailableError extends BosunError {
  override readonly name = "UnavailableError";
}

/** A compute lease that is no longer the job's: nothing was changed. */
export class LeaseStaleError extends BosunError {
  override readonly name = "LeaseStaleError";
}
/** The leased job was cancelled: stop running it. */
export class CancelledError extends BosunError {
  override readonly name = "CancelledError";
}

type ErrorClass = new (code: ErrorCode, message: string, details?: unknown, options?: { cause?: unknown }) => BosunError;

export const errorClasses = {
  validation_error: ValidationError,
  invalid_json: InvalidJsonError,
  unauthorized: UnauthorizedError,
  forbidden: ForbiddenError,
  not_found: NotFoundError,
  not_acceptable: NotAcceptableError,
  request_timeout: RequestTimeoutError,
  not_finished: NotFinishedError,
  conflict: ConflictError,
  idempotency_conflict: IdempotencyConflictError,
  payload_too_large: PayloadTooLargeError,
  uri_too_long: UriTooLongError,
  unknown_type: UnknownTypeError,
  headers_too_large: HeadersTooLargeError,
  internal_error: InternalError,
  unavailable: UnavailableError,
  lease_stale: LeaseStaleError,
  cancelled: CancelledError,
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
