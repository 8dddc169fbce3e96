/**
 * What an execution actor does, whatever it runs in (a child process or a
 * worker thread): load the handlers, say ready, then run each job it is
 * sent, one at a time, and report its outcome. The two entry points
 * (process.ts, thread.ts) only supply the channel to the supervisor.
 */
import type { Logger } from "pino";
import { loadHandlers, type HandlerContext, type HandlerDefinition } from "./handlers.js";
import type { ChildMessage, ParentCommand, RunCommand } from "./protocol.js";

/** The actor's side of its channel to the supervisor. */
export interface ActorChannel {
  send(message: ChildMessage): void;
  onCommand(listener: (cmd: ParentCommand) => void): void;
  /** What the pool's memory ceiling is compared with: the process's RSS, or a thread's heap. */
  memoryMb(): number;
}

/** Reading memory costs syscalls; once a second is plenty for recycling decisions. */
const MEMORY_SAMPLE_MS = 1000;

function sampled(read: () => number): () => number {
  let last = { mb: 0, at: 0 };
  return () => {
    const now = Date.now();
    if (now - last.at >= MEMORY_SAMPLE_MS) last = { mb: read(), at: now };
    return last.mb;
  };
}

function errorOf(err: unknown): { code: string; message: string } {
  if (err instanceof Error) {
    return { code: err.name === "AbortError" ? "aborted" : "handler_error", message: err.message };
  }
  return { code: "handler_error", message: String(err) };
}

export async function serveJobs(channel: ActorChannel, log: Logger): Promise<void> {
  const handlers = await loadHandlers(process.env.BOSUN_HANDLERS || undefined, process.env.BOSUN_BUILTINS !== "false");
  const memoryMb = sampled(() => channel.memoryMb());
  const aborts = new Map<string, AbortController>();

  /** Built on first use: most handlers never touch ctx.signal or ctx.log, and both cost per job. */
  const contextFor = (cmd: RunCommand): HandlerContext => {
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
      progress: (fraction) =>
        channel.send({ t: "progress", execution_id: cmd.execution_id, progress: Math.min(1, Math.max(0, Number(fraction) || 0)) }),
    };
  };

  const run = async (cmd: RunCommand): Promise<void> => {
    const handler = handlers.get(cmd.type);
    try {
      if (!handler) throw new Error(`no handler for type "${cmd.type}" in this execution actor`);
      const value = await handler.run(cmd.payload, contextFor(cmd));
      channel.send({ t: "done", execution_id: cmd.execution_id, outcome: { ok: true, value: value ?? null }, rss_mb: memoryMb() });
    } catch (err) {
      channel.send({ t: "done", execution_id: cmd.execution_id, outcome: { ok: false, error: errorOf(err) }, rss_mb: memoryMb() });
    } finally {
      aborts.delete(cmd.execution_id);
    }
  };

  channel.onCommand((cmd) => {
    if (cmd.t === "run") void run(cmd);
    else if (cmd.t === "abort") {
      const abort = aborts.get(cmd.execution_id) ?? new AbortController();
      aborts.set(cmd.execution_id, abort);
      abort.abort(new Error(cmd.reason));
    }
  });
  channel.send({ t: "ready", job_types: [...handlers.keys()], rss_mb: memoryMb() });
}

export type { HandlerDefinition };
