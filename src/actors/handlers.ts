/**
 * What a handler module exports, and how one is loaded. Supervisors load a
 * module for its metadata (payload schemas, per-type defaults); execution
 * processes load it to run jobs.
 */
import { pathToFileURL } from "node:url";
import path from "node:path";
import type { Logger } from "pino";
import type { Backoff } from "../contract/index.js";
import { builtinHandlers } from "./builtins.js";
import { StartupError } from "../platform/lifecycle.js";
import type { JobFiles } from "./files.js";

/** Only safeParse is needed, so any zod version's schema (or a look-alike) fits. */
export interface PayloadSchema {
  safeParse(input: unknown): { success: true; data?: unknown } | { success: false; error: { issues: unknown } };
}

export interface HandlerContext {
  job_id: string;
  attempt: number;
  /**
   * Grows with every lease of the job (each attempt, each re-lease after a
   * crash or an expired lease): an outcome stored with an older token than
   * the job's current one is refused. Pass it on to your own stores to fence
   * a stalled run that wakes up late.
   */
  fencing_token: number;
  correlation_id: string;
  signal: AbortSignal;
  log: Logger;
  /**
   * This run's trace: pass `traceparent` on to what the handler calls. The
   * handler's span is also the active OpenTelemetry context while it runs
   * (with an SDK and its context manager registered), so `trace.getActiveSpan()` works.
   * Null for a job submitted without one while no SDK is registered (none
   * is made up then: nothing would record its spans).
   */
  trace: JobTrace | null;
  /** Reports progress in [0, 1]; shows in the job's status. */
  progress(fraction: number): void;
  /**
   * The job's files (NATS object store), listed and downloaded through
   * `GET /api/jobs/{job_id}/files[/{name}]` and removed with the job:
   * `write(name, data)` (a string, bytes or a readable stream; refused when
   * a newer run of the job exists) and `read(name)` (a Buffer, or null).
   */
  files: JobFiles;
}

export interface JobTrace {
  traceparent: string;
  trace_id: string;
  span_id: string;
}

export interface HandlerDefinition<P = unknown, R = unknown> {
  payload?: PayloadSchema;
  timeout_ms?: number;
  max_attempts?: number;
  backoff?: Backoff;
  run(payload: P, ctx: HandlerContext): R | Promise<R>;
}

export type HandlerMap = Record<string, HandlerDefinition<never, unknown>>;

/** Identity function that gives a handler module its types. */
export function defineHandlers<H extends HandlerMap>(handlers: H): H {
  return handlers;
}

function isHandlerDefinition(value: unknown): value is HandlerDefinition {
  return typeof value === "object" && value !== null && typeof (value as { run?: unknown }).run === "function";
}

/** The built-ins (unless turned off) plus a user module's handlers, which win on a name clash. */
export async function loadHandlers(modulePath: string | undefined, builtins = true): Promise<Map<string, HandlerDefinition>> {
  const handlers = new Map<string, HandlerDefinition>(builtins ? (Object.entries(builtinHandlers) as [string, HandlerDefinition][]) : []);
  if (!modulePath) return handlers;
  const mod = (await import(pathToFileURL(path.resolve(modulePath)).href).catch((err: NodeJS.ErrnoException) => {
    // Node resolves a module's imports from where the module is, not from where Bosun is.
    const missing = err.code === "ERR_MODULE_NOT_FOUND" ? /Cannot find package '([^']+)'/.exec(err.message)?.[1] : undefined;
    if (!missing) throw err;
    const install = missing === "bosun" || missing === "zod" ? "bosun zod" : missing;
    throw new StartupError(`handler module ${modulePath} imports "${missing}", which is not installed for it: run \`npm install ${install}\` in its project`);
  })) as { default?: unknown };
  const exported = mod.default ?? mod;
  if (typeof exported !== "object" || exported === null) {
    throw new Error(`handler module ${modulePath} must export an object of handlers (export default defineHandlers({...}))`);
  }
  for (const [type, def] of Object.entries(exported)) {
    if (!isHandlerDefinition(def)) throw new Error(`handler "${type}" in ${modulePath} has no run() function`);
    handlers.set(type, def);
  }
  return handlers;
}
