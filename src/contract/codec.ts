import type { z } from "zod";
import { BosunError } from "./errors.js";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export const encodeJson = (value: unknown): Uint8Array => encoder.encode(JSON.stringify(value));

/** Parses bytes as JSON and checks them against a schema; bad input is a BosunError. */
export function decodeWith<S extends z.ZodType>(schema: S, data: Uint8Array | string): z.output<S> {
  let raw: unknown;
  try {
    const text = typeof data === "string" ? data : decoder.decode(data);
    raw = text.length === 0 ? {} : JSON.parse(text);
  } catch {
    throw new BosunError("invalid_json", "body is not valid JSON");
  }
  return parseWith(schema, raw);
}

export function parseWith<S extends z.ZodType>(schema: S, raw: unknown): z.output<S> {
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    throw new BosunError("validation_error", summarizeIssues(parsed.error.issues), parsed.error.issues);
  }
  return parsed.data;
}

function summarizeIssues(issues: readonly z.core.$ZodIssue[]): string {
  return issues
    .slice(0, 3)
    .map((i) => (i.path.length > 0 ? `${i.path.join(".")}: ${i.message}` : i.message))
    .join("; ");
}
