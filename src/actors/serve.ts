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

/** What a job's context reads from the execution actor it runs in. */
interface RunState {
  signalFor(cmd: RunCommand): AbortSignal;
  post(message: ChildMessage): void;
  log: Logger;
}

/**
 * A handler's ctx. A class, not an object literal with getters: V8 builds
 * such a literal on its slow path, microseconds per job. signal, log and
 * files are made on first use: most handlers never touch them, and each
 * costs per job.
 */
class JobContext implements HandlerContext {
  readonly job_id: string;
  readonly attempt: number;
  readonly fencing_token: number;
  readonly correlation_id: string;
  readonly #cmd: RunCommand;
  readonly #hop: Hop;
  readonly #run: RunState;
  #log: Logger | undefined;
  #files: JobFiles | undefined;

  constructor(cmd: RunCommand, hop: Hop, run: RunState) {
    this.job_id = cmd.job_id;
    this.attempt = cmd.attempt;
    this.fencing_token = cmd.fencing_token;
    this.correlation_id = cmd.correlation_id;
    this.#cmd = cmd;
    this.#hop = hop;
    this.#run = run;
  }

  get signal(): AbortSignal {
    return this.#run.signalFor(this.#cmd);
  }

  get log(): Logger {
    return (this.#log ??= this.#run.log.child({ job_id: this.job_id, correlation_id: this.correlation_id, attempt: this.attempt }));
  }

  get trace(): HandlerContext["trace"] {
    const { traceparent } = this.#hop;
    return traceparent ? { traceparent, ...traceIds(traceparent) } : null;
  }

  /** A property, not a method: handlers pass it on unbound (`const { progress } = ctx`). */
  readonly progress = (fraction: number): void => {
    this.#run.post({ t: "progress", execution_id: this.#cmd.execution_id, progress: Math.min(1, Math.max(0, Number(fraction) || 0)) });
  };

  get files(): JobFiles {
    return (this.#files ??= jobFiles(this.#cmd, this.#run.log));
  }
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

  const actorState: RunState = {
    signalFor: (cmd) => {
      // Read after its run ended (a handler's leftover callback): an aborted signal, so it stops.
      if (running !== cmd) return AbortSignal.abort(new Error("the run has ended"));
      return (abort ??= new AbortController()).signal;
    },
    post,
    log,
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
      const value = await trace.run(() => handler.run(cmd.payload, new JobContext(cmd, trace, actorState)));
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
