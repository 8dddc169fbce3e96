/** Argument parsers the command groups share: each failure is a usage error (exit 2) naming the argument. */
import { BosunError, parseJson } from "../contract/index.js";
import { CommandError, ExitCode } from "./errors.js";

/** A whole-number option of at least `min`. */
export const count =
  (name: string, min = 0) =>
  (text: string): number => {
    const n = Number(text);
    if (!Number.isInteger(n) || n < min) throw new CommandError(`${name} must be a whole number${min > 0 ? ` of at least ${min}` : ""}, not "${text}"`, ExitCode.usage);
    return n;
  };

/** The payload argument, held to the API's JSON limits (nesting depth) before anything is sent. */
export function parsePayload(text: string | undefined): unknown {
  if (text === undefined) return {};
  try {
    return parseJson(text);
  } catch (err) {
    const why = err instanceof BosunError && err.code === "validation_error" ? `refused (${err.message})` : "not valid JSON";
    throw new CommandError(`PAYLOAD is ${why}: ${text.length > 80 ? `${text.slice(0, 80)}…` : text}`, ExitCode.usage);
  }
}
