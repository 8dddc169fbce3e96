/**
 * The one table of error codes on the wire. A code decides its HTTP status
 * here, never in a route handler; NATS replies carry the same code.
 */
export const errorCodes = {
  validation_error: 400,
  invalid_json: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  not_finished: 409,
  conflict: 409,
  payload_too_large: 413,
  unknown_type: 422,
  internal_error: 500,
  unavailable: 503,
} as const;

export type ErrorCode = keyof typeof errorCodes;

export interface ErrorBody {
  code: ErrorCode;
  message: string;
  details?: unknown;
}

/** Seconds a client should wait before retrying a 503. */
export const RETRY_AFTER_SECONDS = 1;

export class BosunError extends Error {
  override readonly name: string = "BosunError";
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details?: unknown,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  get status(): number {
    return errorCodes[this.code];
  }

  toBody(): { error: ErrorBody } {
    const error: ErrorBody = { code: this.code, message: this.message };
    if (this.details !== undefined) error.details = this.details;
    return { error };
  }
}

export const isErrorCode = (value: unknown): value is ErrorCode =>
  typeof value === "string" && Object.hasOwn(errorCodes, value);

/** Anything thrown becomes a BosunError; unknown failures hide their stack. */
export function toBosunError(err: unknown): BosunError {
  if (err instanceof BosunError) return err;
  return new BosunError("internal_error", "internal error", undefined, { cause: err });
}
