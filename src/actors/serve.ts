/**
 * What an execution actor does, whatever it runs in (a child process or a
 * worker thread): load the handlers, say ready, then run each job it is
 * sent, one at a time, and report its outcome. The two entry points
 * (process.ts, thread.ts) only supply the channel to the supervisor.
 */
import type { Logger } from "pino";
import { jobErrorOf } from "../contract/errors.js";
import { loadHandlers, type HandlerContext } from "./handlers.js";
import { jobFiles, type JobFiles } from "./files.js";
import type { ChildMessage, ParentCommand, RunCommand } from "./protocol.js";
import { continueTrace, traceIds, type Hop } from "../platform/tracing.js";

/** The actor's side of its channel to the supervisor. */
export interface ActorChannel {
  write(messages: ChildMessage[]): void;
  onWrite(listener: (cmds: ParentCommand[]) => void): void;
  /** Records, before the run starts, that runs up to this sequence number have started (see protocol.ts). */
  markStarted(seq: number): void;
  /** What the pool's memory ceiling is compared with: the process's RSS, or a thread's heap. */
  memoryMb(): number;
}

/** Reading memory costs syscalls; once a second is plenty for recycling decisions. */
const MEMORY_SAMPLE_MS = 1000;
/**
 * Runs sent together that each take less than this start back to back, and
 * their answers leave together, while the oldest has waited less than this;
 * otherwise the answers leave first and the next run starts right after, so
 * a longer run never holds back the news of a finished one.
 */
const BATCH_WINDOW_MS = 1;

function sampled(read: () => number): () => number {
  let last = { mb: 0, at: 0 };
  return () => {
    const now = Date.now();
    if (now - last.at >= MEMORY_SAMPLE_MS) last = { mb: read(), at: now };
    return last.mb;
  };
}

function errorOf(err: unknown): { code: string; message: string } {
  if (err instanceof Error) return jobErrorOf(err.name === "AbortError" ? "aborted" : "handler_error", String(err.message));
  return jobErrorOf("handler_error", String(err));
}

export async function serveJobs(channel: ActorChannel, log: Logger): Promise<void> {
  const handlers = await loadHandlers(process.env.BOSUN_HANDLERS || undefined, process.env.BOSUN_BUILTINS !== "false");
  const memoryMb = sampled(() => channel.memoryMb());
  const queue: RunCommand[] = [];
  let running: RunCommand | undefined;
  /** The running job's, made on first use: most handlers never look at ctx.signal. */
  let abort: AbortController | undefined;
  const out: ChildMessage[] = [];
  let firstOutAt = 0;
  let runStartedAt = 0;
  let flushing = false;

  const post = (message: ChildMessage): void => {
    if (out.length === 0) firstOutAt = performance.now();
    out.push(message);
    if (flushing) return;
    flushing = true;
    setImmediate(flush);
  };
  const flush = (): void => {
    flushing = false;
    if (out.length > 0) channel.write(out.splice(0));
    startNext();
  };

  /** Built on first use: most handlers never touch ctx.signal, ctx.log or ctx.files, and each costs per job. */
  const contextFor = (cmd: RunCommand, trace: Hop): HandlerContext => {
    let jobLog: Logger | undefined;
    let files: JobFiles | undefined;
    return {
      job_id: cmd.job_id,
      attempt: cmd.attempt,
      fencing_token: cmd.fencing_token,
      correlation_id: cmd.correlation_id,
      get signal() {
        // Read after its run ended (a handler's leftover callback): an aborted signal, so it stops.
        if (running !== cmd) return AbortSignal.abort(new Error("the run has ended"));
        return (abort ??= new AbortController()).signal;
      },
      get log() {
        return (jobLog ??= log.child({ job_id: cmd.job_id, correlation_id: cmd.correlation_id, attempt: cmd.attempt }));
      },
      get trace() {
        return trace.traceparent ? { traceparent: trace.traceparent, ...traceIds(trace.traceparent) } : null;
      },
      progress: (fraction) => post({ t: "progress", execution_id: cmd.execution_id, progress: Math.min(1, Math.max(0, Number(fraction) || 0)) }),
      get files() {
        return (files ??= jobFiles(cmd, log));
      },
    };
  };

  const finish = (message: ChildMessage): void => {
    post(message);
    running = undefined;
    abort = undefined;
    // A quick run's answer may wait for the next quick one's; a longer run's leaves before the next starts.
    const now = performance.now();
    if (now - runStartedAt < BATCH_WINDOW_MS && now - firstOutAt < BATCH_WINDOW_MS) startNext();
    else flush();
  };

  const run = async (cmd: RunCommand): Promise<void> => {
    const handler = handlers.get(cmd.type);
    const trace = continueTrace(cmd.traceparent);
    let error: { code: string; message: string } | undefined;
    try {
      if (!handler) throw new Error(`no handler for type "${cmd.type}" in this execution actor`);
      const value = await trace.run(() => handler.run(cmd.payload, contextFor(cmd, trace)));
      finish({ t: "done", execution_id: cmd.execution_id, outcome: { ok: true, value: value ?? null }, rss_mb: memoryMb() });
    } catch (err) {
      error = errorOf(err);
      finish({ t: "done", execution_id: cmd.execution_id, outcome: { ok: false, error }, rss_mb: memoryMb() });
    } finally {
      trace.end(error);
    }
  };

  function startNext(): void {
    if (running || queue.length === 0) return;
    const cmd = queue.shift()!;
    running = cmd;
    runStartedAt = performance.now();
    channel.markStarted(cmd.seq);
    void run(cmd);
  }

  channel.onWrite((cmds) => {
    for (const cmd of cmds) {
      if (cmd.t === "run") queue.push(cmd);
      else if (cmd.t === "abort") {
        if (running?.execution_id === cmd.execution_id) (abort ??= new AbortController()).abort(new Error(cmd.reason));
      } else {
        const at = queue.findIndex((q) => q.execution_id === cmd.execution_id);
        if (at >= 0) {
          queue.splice(at, 1);
          post({ t: "withdrawn", execution_id: cmd.execution_id });
        }
      }
    }
    startNext();
  });
  channel.write([{ t: "ready", job_types: [...handlers.keys()], rss_mb: memoryMb() }]);
}
