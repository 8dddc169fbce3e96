/**
 * Entry point of an execution process: loads the handlers, then runs one
 * job at a time as the supervisor commands over IPC. A handler that crashes
 * the process is the supervisor's business, not this file's.
 */
import { createLogger, type Logger } from "../platform/logger.js";
import { loadHandlers, type HandlerContext, type HandlerDefinition } from "./handlers.js";
import type { ChildMessage, ParentCommand, RunCommand } from "./protocol.js";
import { flushTraces, hop, SpanKind, traceIds, type Hop } from "../platform/tracing.js";

const log = createLogger("bosun.process");

/** Reading RSS costs three syscalls; once a second is plenty for recycling decisions. */
const RSS_SAMPLE_MS = 1000;
let rss = { mb: 0, at: 0 };
function rssMb(): number {
  const now = Date.now();
  if (now - rss.at >= RSS_SAMPLE_MS) rss = { mb: Math.round(process.memoryUsage.rss() / 1048576), at: now };
  return rss.mb;
}

/** The supervisor may be gone (it stopped while this process was loading): then there is no one to tell. */
function send(message: ChildMessage): void {
  if (process.connected) process.send?.(message, undefined, {}, () => undefined);
}

function errorOf(err: unknown): { code: string; message: string } {
  if (err instanceof Error) {
    return { code: err.name === "AbortError" ? "aborted" : "handler_error", message: err.message };
  }
  return { code: "handler_error", message: String(err) };
}

const aborts = new Map<string, AbortController>();

/** Built on first use: most handlers never touch ctx.signal or ctx.log, and both cost per job. */
function contextFor(cmd: RunCommand, trace: Hop): HandlerContext {
  let jobLog: Logger | undefined;
  return {
    job_id: cmd.job_id,
    attempt: cmd.attempt,
    correlation_id: cmd.correlation_id,
    get signal() {
      let abort = aborts.get(cmd.execution_id);
      if (!abort) aborts.set(cmd.execution_id, (abort = new AbortController()));
      return abort.signal;
    },
    get log() {
      return (jobLog ??= log.child({ job_id: cmd.job_id, correlation_id: cmd.correlation_id, attempt: cmd.attempt }));
    },
    get trace() {
      return trace.traceparent ? { traceparent: trace.traceparent, ...traceIds(trace.traceparent) } : null;
    },
    progress: (fraction) =>
      send({ t: "progress", execution_id: cmd.execution_id, progress: Math.min(1, Math.max(0, Number(fraction) || 0)) }),
  };
}

async function run(handlers: Map<string, HandlerDefinition>, cmd: RunCommand): Promise<void> {
  const handler = handlers.get(cmd.type);
  const trace = hop(`bosun.handler ${cmd.type}`, SpanKind.INTERNAL, cmd.traceparent, { attributes: () => ({ "bosun.job_id": cmd.job_id, "bosun.attempt": cmd.attempt }) });
  let error: { code: string; message: string } | undefined;
  try {
    if (!handler) throw new Error(`no handler for type "${cmd.type}" in this process`);
    const value = await trace.run(() => handler.run(cmd.payload, contextFor(cmd, trace)));
    send({ t: "done", execution_id: cmd.execution_id, outcome: { ok: true, value: value ?? null }, rss_mb: rssMb() });
  } catch (err) {
    error = errorOf(err);
    send({ t: "done", execution_id: cmd.execution_id, outcome: { ok: false, error }, rss_mb: rssMb() });
  } finally {
    aborts.delete(cmd.execution_id);
    trace.end(error);
  }
}

async function main(): Promise<void> {
  if (!process.send) throw new Error("an execution process is started by a supervisor, never by hand");
  const handlers = await loadHandlers(process.env.BOSUN_HANDLERS || undefined, process.env.BOSUN_BUILTINS !== "false");
  process.on("message", (cmd: ParentCommand) => {
    if (cmd.t === "run") void run(handlers, cmd);
    else if (cmd.t === "abort") {
      const abort = aborts.get(cmd.execution_id) ?? new AbortController();
      aborts.set(cmd.execution_id, abort);
      abort.abort(new Error(cmd.reason));
    }
  });
  // The supervisor going away closes the channel: nothing is left to serve (spans an SDK still buffers go first).
  process.on("disconnect", () => void flushTraces().finally(() => process.exit(0)));
  send({ t: "ready", job_types: [...handlers.keys()], rss_mb: rssMb() });
}

main().catch((err: unknown) => {
  log.fatal({ err }, "execution process failed to start");
  process.exit(70);
});
