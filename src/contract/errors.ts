import { MAX_ERROR_DETAILS_BYTES, MAX_ERROR_MESSAGE_LENGTH, MAX_JOB_ERROR_CODE_LENGTH, MAX_JOB_ERROR_MESSAGE_LENGTH } from "./limits.js";

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
  not_acceptable: 406,
  request_timeout: 408,
  not_finished: 409,
  conflict: 409,
  /** An idempotency key reused with another type or payload; details.job_id names the first job. */
  idempotency_conflict: 409,
  /** A compute lease that is no longer the job's (expired, revoked, ended, or another server's): nothing was changed. */
  lease_stale: 409,
  /** The leased job was cancelled: the server stops running it. */
  cancelled: 409,
  payload_too_large: 413,
  uri_too_long: 414,
  unknown_type: 422,
  headers_too_large: 431,
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
/** Carries RETRY_AFTER_SECONDS on a 503, over HTTP and on NATS error replies alike. */
export const RETRY_AFTER_HEADER = "Retry-After";

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
}

/** The code for an HTTP status some other layer chose (a plugin's 406, Node's 408): the generic one where two share it. */
export function codeForStatus(status: number): ErrorCode {
  if (status === 409) return "conflict";
  if (status >= 500) return status === 503 ? "unavailable" : "internal_error";
  const code = (Object.keys(errorCodes) as ErrorCode[]).find((c) => errorCodes[c] === status);
  return code ?? "validation_error";
}

export const isErrorCode = (value: unknown): value is ErrorCode =>
  typeof value === "string" && Object.hasOwn(errorCodes, value);

/** Anything thrown becomes a BosunError; unknown failures hide their stack. */
export function toBosunError(err: unknown): BosunError {
  if (err instanceof BosunError) return err;
  return new BosunError("internal_error", "internal error", undefined, { cause: err });
}

export interface ErrorReplyParts {
  status: number;
  body: { error: ErrorBody };
  /**
   * The message as one line of at most MAX_ERROR_MESSAGE_LENGTH characters
   * without control characters: safe as the Nats-Service-Error header and
   * as $SRV.STATS last_error.
   */
  summary: string;
}

/**
 * The one builder of error replies, HTTP and NATS: whatever was thrown
 * (a type name with a newline, 40,000 unknown keys listed in a zod issue)
 * the reply is small and header-safe by construction.
 */
export function errorReply(err: unknown): ErrorReplyParts {
  const e = toBosunError(err);
  const summary = oneLine(e.message, MAX_ERROR_MESSAGE_LENGTH) || e.code;
  const error: ErrorBody = { code: e.code, message: summary };
  const details = boundedDetails(e.details);
  if (details !== undefined) error.details = details;
  return { status: e.status, body: { error }, summary };
}

/** Control characters (CR and LF included) become spaces; cut at `max` characters without splitting a surrogate pair. */
export function oneLine(text: string, max: number): string {
  // eslint-disable-next-line no-control-regex -- the point is to remove control characters
  let line = text.replace(/[\u0000-\u001f\u007f\u2028\u2029]+/g, " ").trim();
  if (line.length > max) {
    line = line.slice(0, max - 1);
    if (/[\ud800-\udbff]$/.test(line)) line = line.slice(0, -1);
    line += "…";
  }
  return line;
}

/**
 * An attempt's error as stored with the job: a handler's message is cut to
 * MAX_JOB_ERROR_MESSAGE_LENGTH, so every attempt's error fits in the job's
 * dead letter (see MESSAGE_HEADROOM_BYTES).
 */
export function jobErrorOf(code: string, message: string): { code: string; message: string } {
  return { code: oneLine(code, MAX_JOB_ERROR_CODE_LENGTH) || "error", message: oneLine(message, MAX_JOB_ERROR_MESSAGE_LENGTH) };
}

const DETAIL_ITEMS = 20;
const DETAIL_DEPTH = 5;
const DETAIL_STRING = 200;

/** Details cut to a few items per level and short strings; dropped if still over MAX_ERROR_DETAILS_BYTES. */
function boundedDetails(details: unknown): unknown {
  if (details === undefined) return undefined;
  const pruned = prune(details, 0);
  return JSON.stringify(pruned).length <= MAX_ERROR_DETAILS_BYTES ? pruned : undefined;
}

function prune(value: unknown, depth: number): unknown {
  if (typeof value === "string") return oneLine(value, DETAIL_STRING);
  if (typeof value === "number" || typeof value === "boolean" || value === null) return value;
  if (typeof value !== "object" || depth >= DETAIL_DEPTH) return undefined;
  if (Array.isArray(value)) {
    const items = value.slice(0, DETAIL_ITEMS).map((v) => prune(v, depth + 1));
    if (value.length > DETAIL_ITEMS) items.push(`… ${value.length - DETAIL_ITEMS} more`);
    return items;
  }
  const out: Record<string, unknown> = {};
  let n = 0;
  for (const key in value) {
    if (!Object.hasOwn(value, key)) continue;
    if (n++ === DETAIL_ITEMS) {
      out["…"] = "more keys left out";
      break;
    }
    out[oneLine(key, DETAIL_STRING)] = prune((value as Record<string, unknown>)[key], depth + 1);
  }
  return out;
}
