/**
 * The decode boundary: bytes or text from outside (an HTTP body, a NATS
 * request, a message read from a stream, bucket or subscription) become a
 * typed value here or nowhere. Nesting depth and size are checked before
 * JSON.parse, the contract's schema after it.
 */
import type { z } from "zod";
import { BosunError } from "./errors.js";
import { MAX_JSON_DEPTH } from "./limits.js";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export const encodeJson = (value: unknown): Uint8Array => encoder.encode(JSON.stringify(value));

export interface DecodeLimits {
  /** Refuse more bytes than this (413). */
  maxBytes?: number;
}

/**
 * JSON text to a value, refusing documents nested deeper than MAX_JSON_DEPTH
 * (JSON.stringify of a 5,000-deep payload overflows the stack later, far
 * from here). Empty text is `{}`, as for a request without a body.
 */
export function parseJson(text: string): unknown {
  if (text.length === 0) return {};
  if (nestingExceeds(text, MAX_JSON_DEPTH)) {
    throw new BosunError("validation_error", `JSON is nested deeper than ${MAX_JSON_DEPTH} levels`);
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new BosunError("invalid_json", "body is not valid JSON");
  }
}

/** Parses bytes as JSON and checks them against a schema; bad input is a BosunError. */
export function decodeWith<S extends z.ZodType>(schema: S, data: Uint8Array | string, limits: DecodeLimits = {}): z.output<S> {
  const size = typeof data === "string" ? data.length : data.byteLength;
  if (limits.maxBytes !== undefined && size > limits.maxBytes) {
    throw new BosunError("payload_too_large", `${size} bytes is over the limit of ${limits.maxBytes}`);
  }
  return parseWith(schema, parseJson(typeof data === "string" ? data : decoder.decode(data)));
}

export type Decoded<T> = { ok: true; value: T } | { ok: false; error: BosunError };

/** decodeWith for messages read back from NATS: never throws, says why it refused. */
export function tryDecode<S extends z.ZodType>(schema: S, data: Uint8Array | string, limits: DecodeLimits = {}): Decoded<z.output<S>> {
  try {
    return { ok: true, value: decodeWith(schema, data, limits) };
  } catch (err) {
    return { ok: false, error: err instanceof BosunError ? err : new BosunError("invalid_json", "unreadable message") };
  }
}

export function parseWith<S extends z.ZodType>(schema: S, raw: unknown): z.output<S> {
  const parsed = tryParseWith(schema, raw);
  if (parsed instanceof BosunError) throw parsed;
  return parsed;
}

/** parseWith that returns its refusal instead of throwing it (a batch answers each entry where it stands). */
export function tryParseWith<S extends z.ZodType>(schema: S, raw: unknown): z.output<S> | BosunError {
  const parsed = schema.safeParse(raw);
  return parsed.success ? parsed.data : new BosunError("validation_error", summarizeIssues(parsed.error.issues), parsed.error.issues);
}

const ISSUE_TEXT = 160;

/**
 * The first few issues of a failed parse, one short line each, joined: an
 * error message. Takes any zod version's issues (a handler module may bring
 * its own zod), so it reads them structurally.
 */
export function summarizeIssues(issues: unknown): string {
  if (!Array.isArray(issues)) return "invalid input";
  return issues
    .slice(0, 3)
    .map((i: { path?: unknown; message?: unknown }) => {
      const where = Array.isArray(i.path) && i.path.length > 0 ? `${i.path.join(".")}: ` : "";
      const text = `${where}${typeof i.message === "string" ? i.message : "invalid"}`;
      return text.length > ISSUE_TEXT ? `${text.slice(0, ISSUE_TEXT - 1)}…` : text;
    })
    .join("; ");
}

const OPEN_BRACE = 0x7b;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACE = 0x7d;
const CLOSE_BRACKET = 0x5d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/** One pass over the text, skipping strings: true once arrays/objects nest deeper than `max`. */
function nestingExceeds(text: string, max: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === BACKSLASH) i++;
      else if (c === QUOTE) inString = false;
    } else if (c === QUOTE) inString = true;
    else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      if (++depth > max) return true;
    } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) depth--;
  }
  return false;
}
