/**
 * A pool of execution processes: child OS processes that run one job at a
 * time. The pool grows on demand up to `max`, shrinks idle processes back to
 * `min`, hard-kills a process whose job times out or is cancelled, replaces
 * crashed ones, and recycles a process after N executions or past a memory
 * ceiling. It knows nothing about NATS.
 */
import { fork, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import type { JobError, ProcessInfo, Supervision } from "../contract/index.js";
import type { ChildMessage, DoneMessage, RunCommand } from "../actors/protocol.js";
import type { SupervisorMetrics } from "../platform/metrics.js";

const PROCESS_ENTRY = fileURLToPath(new URL("../actors/process.js", import.meta.url));
const SPAWN_TIMEOUT_MS = 15_000;
const MIN_SPAWN_BACKOFF_MS = 1000;
const MAX_SPAWN_BACKOFF_MS = 30_000;

export interface PoolOptions {
  min: number;
  max: number;
  maxExecutions: number;
  maxMemoryMb: number;
  idleTimeoutMs: number;
  /** Time a handler gets to honour ctx.signal before its process is killed. */
  killGraceMs: number;
  handlersPath?: string;
  builtins: boolean;
  /** Extra environment for execution processes (NATS URL and maintenance defaults). */
  env: Record<string, string>;
  /** More crashes than this within restartWindowMs make spawning back off. */
  maxRestarts: number;
  restartWindowMs: number;
  log: Logger;
  /** Called on every change a heartbeat should report. */
  onChange(): void;
  metrics?: Pick<SupervisorMetrics, "restarts" | "recycles">;
}

export type ExecutionOutcome =
  | { ok: true; value: unknown; duration_ms: number }
  | { ok: false; error: JobError; duration_ms: number };

export type KillReason = "timeout" | "cancelled" | "shutdown";

interface Execution {
  id: string;
  jobId: string;
  correlationId: string;
  startedAt: Date;
  killReason?: KillReason;
  timer?: NodeJS.Timeout;
  finish(outcome: ExecutionOutcome): void;
  onProgress?: (fraction: number) => void;
}

type ProcessState = "starting" | "idle" | "busy" | "killed";

class ExecutionProcess {
  readonly processId = randomUUID();
  readonly startedAt = Date.now();
  state: ProcessState = "starting";
  executions = 0;
  memoryMb = 0;
  idleSince = Date.now();
  retireAfterJob = false;
  /** Set once retiring began: the process's exit. */
  retiring: Promise<void> | undefined;
  current: Execution | undefined;
  constructor(readonly child: ChildProcess) {}
  get pid(): number {
    return this.child.pid ?? -1;
  }
}

const killMessages: Record<KillReason, string> = {
  timeout: "job exceeded its timeout_ms and its process was killed",
  cancelled: "job was cancelled and its process was killed",
  shutdown: "supervisor shut down past its grace period and killed the process",
};
const killError = (reason: KillReason): JobError => ({ code: reason, message: killMessages[reason] });

/**
 * The job was never started: the pool is draining, or no process came free
 * within the caller's wait limit. It should run elsewhere, its attempt unused.
 */
export class NotStartedError extends Error {
  override readonly name = "NotStartedError";
}
const drainingError = () => new NotStartedError("the pool is draining");

export interface ExecutionHandle {
  pid: number;
  /** Epoch ms. */
  startedAt: number;
  executionId: string;
  outcome: Promise<ExecutionOutcome>;
  kill(reason: KillReason): void;
}

interface Waiter {
  resolve(proc: ExecutionProcess): void;
  reject(err: unknown): void;
}

export class Pool {
  readonly #processes = new Set<ExecutionProcess>();
  readonly #waiting: Waiter[] = [];
  #crashes: number[] = [];
  #backoffMs = 0;
  #spawnNotBefore = 0;
  #decision: Supervision["decision"] = "restart";
  #replenishTimer: NodeJS.Timeout | undefined;
  #draining = false;
  #reaper: NodeJS.Timeout | undefined;

  constructor(private readonly opts: PoolOptions) {}

  start(): void {
    this.#topUp();
    this.#reaper = setInterval(() => this.#retireIdle(), Math.min(1000, this.opts.idleTimeoutMs)).unref();
  }

  /** How many jobs may run at once: max, or none once draining. */
  get capacity(): number {
    return this.#draining ? 0 : this.opts.max;
  }

  /**
   * Runs a job on an idle process, spawning one if none is idle and fewer
   * than max live, else on the next process to come free (in order).
   */
  async execute(
    cmd: Omit<RunCommand, "t" | "execution_id">,
    timeoutMs: number,
    opts: { onProgress?: (fraction: number) => void; maxWaitMs?: number } = {},
  ): Promise<ExecutionHandle> {
    const { onProgress, maxWaitMs } = opts;
    let proc: ExecutionProcess;
    try {
      proc = await this.#acquire(maxWaitMs);
    } catch (err) {
      // A drain retired the process this job was waiting for: not started, not failed.
      throw this.#draining ? drainingError() : err;
    }
    // Acquired while a drain began (a process that was still starting): the drain retires it.
    if (this.#draining) throw drainingError();
    const execution_id = randomUUID();
    let finish!: (outcome: ExecutionOutcome) => void;
    const outcome = new Promise<ExecutionOutcome>((resolve) => (finish = resolve));
    const execution: Execution = { id: execution_id, jobId: cmd.job_id, correlationId: cmd.correlation_id, startedAt: new Date(), finish, onProgress };
    proc.current = execution;
    execution.timer = setTimeout(() => this.#kill(proc, execution, "timeout"), timeoutMs);
    proc.child.send({ t: "run", execution_id, ...cmd } satisfies RunCommand);
    this.opts.onChange();
    return { pid: proc.pid, startedAt: execution.startedAt.getTime(), executionId: execution_id, outcome, kill: (reason) => this.#kill(proc, execution, reason) };
  }

  /** Marks a process to be replaced after its current job, or an idle one now. */
  recycle(pid?: number): number | undefined {
    const target = [...this.#processes].find((p) =>
      pid === undefined ? p.state === "idle" : p.pid === pid && p.state !== "killed",
    );
    if (!target) return undefined;
    if (target.state === "busy") {
      target.retireAfterJob = true;
    } else {
      void this.#retire(target, "recycle requested");
    }
    return target.pid;
  }

  snapshot(): ProcessInfo[] {
    const now = Date.now();
    return [...this.#processes]
      .filter((p) => p.state !== "starting")
      .map((p) => ({
        pid: p.pid,
        process_id: p.processId,
        state: p.state === "busy" ? "busy" : p.state === "killed" ? "killed" : "idle",
        memory_mb: p.memoryMb,
        uptime_seconds: Math.round((now - p.startedAt) / 1000),
        executions_completed: p.executions,
        execution: p.current
          ? {
              execution_id: p.current.id,
              job_id: p.current.jobId,
              started_at: p.current.startedAt.toISOString(),
              elapsed_seconds: Math.round((now - p.current.startedAt.getTime()) / 100) / 10,
            }
          : null,
      }));
  }

  /** Stops handing out processes; resolves once every running job has ended. */
  async drain(graceMs: number): Promise<void> {
    this.#draining = true;
    clearInterval(this.#reaper);
    clearTimeout(this.#replenishTimer);
    for (const waiter of this.#waiting.splice(0)) waiter.reject(drainingError());
    const running = [...this.#processes].filter((p) => p.current).map((p) => p.current!);
    const deadline = setTimeout(() => {
      for (const p of this.#processes) if (p.current) this.#kill(p, p.current, "shutdown");
    }, graceMs);
    await Promise.all(running.map((e) => new Promise<void>((resolve) => {
      const finish = e.finish;
      e.finish = (o) => { finish(o); resolve(); };
    })));
    clearTimeout(deadline);
    await Promise.all([...this.#processes].map((p) => this.#retire(p, "shutdown")));
  }

  /** An idle process, a new one while fewer than max live, or the next to come free. */
  #acquire(maxWaitMs?: number): Promise<ExecutionProcess> {
    if (this.#draining) return Promise.reject(drainingError());
    for (const p of this.#processes) {
      if (p.state === "idle") {
        p.state = "busy";
        return Promise.resolve(p);
      }
    }
    if (this.#live() < this.opts.max && !this.#backingOff()) return this.#spawnBusy();
    const waiting = this.#wait(maxWaitMs);
    this.#replenish();
    return waiting;
  }

  /** A place in line for the next free process; given up after maxWaitMs if still in line then. */
  #wait(maxWaitMs: number | undefined): Promise<ExecutionProcess> {
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const waiter: Waiter = {
        resolve: (proc) => {
          clearTimeout(timer);
          resolve(proc);
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      };
      if (maxWaitMs !== undefined) {
        timer = setTimeout(() => {
          const place = this.#waiting.indexOf(waiter);
          if (place < 0) return;
          this.#waiting.splice(place, 1);
          reject(new NotStartedError(`no execution process came free within ${maxWaitMs} ms`));
        }, maxWaitMs);
      }
      this.#waiting.push(waiter);
    });
  }

  #backingOff(): boolean {
    return this.#spawnNotBefore > Date.now();
  }

  async #spawnBusy(): Promise<ExecutionProcess> {
    const proc = this.#spawn();
    proc.state = "busy";
    await this.#ready(proc);
    return proc;
  }

  /** Processes that are starting, idle or busy (not the ones on their way out). */
  #live(): number {
    let n = 0;
    for (const p of this.#processes) if (p.state !== "killed") n++;
    return n;
  }

  /** A process is free: the next waiting job takes it, else it idles. */
  #release(proc: ExecutionProcess): void {
    const waiter = this.#waiting.shift();
    if (waiter) {
      proc.state = "busy";
      waiter.resolve(proc);
    } else {
      proc.state = "idle";
      proc.idleSince = Date.now();
    }
  }

  /**
   * Spawns for jobs that wait, then back up to min; while spawning backs
   * off, once the pause is over (max is never exceeded, the pause never skipped).
   */
  #replenish(): void {
    if (this.#draining) return;
    if (this.#backingOff()) {
      this.#replenishTimer ??= setTimeout(() => {
        this.#replenishTimer = undefined;
        this.#replenish();
      }, this.#spawnNotBefore - Date.now());
      return;
    }
    while (this.#waiting.length > 0 && this.#live() < this.opts.max) {
      const waiter = this.#waiting.shift()!;
      this.#spawnBusy().then(waiter.resolve, waiter.reject);
    }
    this.#topUp();
  }

  #topUp(): void {
    while (this.#live() < this.opts.min) {
      const proc = this.#spawn();
      this.#ready(proc).then(
        () => {
          this.#release(proc);
          this.opts.onChange();
        },
        (err: unknown) => {
          // A drain retires processes still starting: expected, not a failure.
          if (!this.#draining) this.opts.log.error({ err }, "execution process failed to start");
        },
      );
    }
  }

  #spawn(): ExecutionProcess {
    const child = fork(PROCESS_ENTRY, [], {
      env: { ...process.env, ...this.opts.env, BOSUN_HANDLERS: this.opts.handlersPath ?? "", BOSUN_BUILTINS: String(this.opts.builtins) },
      stdio: ["ignore", "inherit", "inherit", "ipc"],
      serialization: "json",
    });
    const proc = new ExecutionProcess(child);
    this.#processes.add(proc);
    child.on("message", (msg: ChildMessage) => this.#onMessage(proc, msg));
    child.once("exit", (code, signal) => this.#onExit(proc, code, signal));
    child.on("error", (err) => this.opts.log.warn({ err, child_pid: proc.pid }, "execution process channel error"));
    return proc;
  }

  #ready(proc: ExecutionProcess): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        proc.child.kill("SIGKILL");
        reject(new Error("execution process did not become ready in time"));
      }, SPAWN_TIMEOUT_MS);
      const onMessage = (msg: ChildMessage) => {
        if (msg.t !== "ready") return;
        cleanup();
        proc.memoryMb = msg.rss_mb;
        this.opts.log.info({ child_pid: proc.pid, process_id: proc.processId }, "execution process started");
        resolve();
      };
      const onExit = () => {
        cleanup();
        reject(new Error(`execution process exited before it was ready (pid ${proc.pid})`));
      };
      const cleanup = () => {
        clearTimeout(timer);
        proc.child.off("message", onMessage);
        proc.child.off("exit", onExit);
      };
      proc.child.on("message", onMessage);
      proc.child.once("exit", onExit);
    });
  }

  #onMessage(proc: ExecutionProcess, msg: ChildMessage): void {
    const current = proc.current;
    if (msg.t === "progress" && current?.id === msg.execution_id) current.onProgress?.(msg.progress);
    else if (msg.t === "done" && current?.id === msg.execution_id) this.#onDone(proc, current, msg);
  }

  #onDone(proc: ExecutionProcess, execution: Execution, msg: DoneMessage): void {
    clearTimeout(execution.timer);
    proc.current = undefined;
    proc.executions++;
    proc.memoryMb = msg.rss_mb;
    const duration_ms = Date.now() - execution.startedAt.getTime();
    // A job that ends on its own after a kill began (it honoured ctx.signal) still ends for the kill's reason.
    if (execution.killReason) execution.finish({ ok: false, error: killError(execution.killReason), duration_ms });
    else execution.finish(msg.outcome.ok ? { ok: true, value: msg.outcome.value, duration_ms } : { ok: false, error: msg.outcome.error, duration_ms });
    const retireWhy = this.#retireReason(proc, execution);
    if (retireWhy) void this.#retire(proc, retireWhy);
    else this.#release(proc);
    this.opts.onChange();
  }

  /** Why a process that just finished a job must not take another, if it must not. */
  #retireReason(proc: ExecutionProcess, execution: Execution): string | undefined {
    if (execution.killReason) return `killed (${execution.killReason})`;
    if (proc.retireAfterJob) return "recycle requested";
    if (proc.executions >= this.opts.maxExecutions) return "max executions reached";
    if (proc.memoryMb > this.opts.maxMemoryMb) return "memory ceiling exceeded";
    if (this.#draining) return "shutdown";
    return undefined;
  }

  #kill(proc: ExecutionProcess, execution: Execution, reason: KillReason): void {
    if (proc.current !== execution || execution.killReason) return;
    execution.killReason = reason;
    proc.child.send({ t: "abort", execution_id: execution.id, reason }, () => undefined);
    // Unless the handler gives up by itself within the grace; either way the process is replaced.
    setTimeout(() => {
      if (proc.current === execution) proc.child.kill("SIGKILL");
    }, this.opts.killGraceMs).unref();
    this.opts.log.warn({ child_pid: proc.pid, job_id: execution.jobId, correlation_id: execution.correlationId, reason }, "killing execution process");
  }

  #onExit(proc: ExecutionProcess, code: number | null, signal: NodeJS.Signals | null): void {
    const wasRetiring = proc.state === "killed";
    proc.state = "killed";
    this.#processes.delete(proc);
    const execution = proc.current;
    if (execution) {
      clearTimeout(execution.timer);
      proc.current = undefined;
      const error: JobError = execution.killReason
        ? killError(execution.killReason)
        : { code: "crashed", message: `execution process exited mid-job (code ${code}, signal ${signal})` };
      execution.finish({ ok: false, error, duration_ms: Date.now() - execution.startedAt.getTime() });
    }
    if (!wasRetiring || execution) {
      this.opts.log.warn(
        { child_pid: proc.pid, code, signal, job_id: execution?.jobId, correlation_id: execution?.correlationId },
        "execution process exited",
      );
    }
    if (!wasRetiring && !execution?.killReason) this.#onCrash();
    this.#replenish();
    this.opts.onChange();
  }

  /**
   * Restart intensity, as in OTP: up to max_restarts crashes per window are
   * restarted one for one; past that, spawning backs off (1 s, doubling to
   * 30 s) instead of spinning on a handler that kills every process.
   */
  #onCrash(): void {
    const now = Date.now();
    this.#crashes = this.#crashes.filter((t) => now - t < this.opts.restartWindowMs);
    this.#crashes.push(now);
    this.opts.metrics?.restarts.inc();
    if (this.#crashes.length <= this.opts.maxRestarts) {
      this.#backoffMs = 0;
      this.#decision = "restart";
      return;
    }
    this.#backoffMs = Math.min(MAX_SPAWN_BACKOFF_MS, Math.max(MIN_SPAWN_BACKOFF_MS, this.#backoffMs * 2));
    this.#spawnNotBefore = now + this.#backoffMs;
    this.#decision = "backoff";
    this.opts.log.error(
      { decision: "backoff", crashes_in_window: this.#crashes.length, window_ms: this.opts.restartWindowMs, backoff_ms: this.#backoffMs },
      "execution processes keep crashing; spawning backs off",
    );
  }

  supervision(): Supervision {
    const now = Date.now();
    const crashes = this.#crashes.filter((t) => now - t < this.opts.restartWindowMs).length;
    const pausedMs = Math.max(0, this.#spawnNotBefore - now);
    return { decision: pausedMs > 0 ? "backoff" : this.#decision, crashes_in_window: crashes, spawn_paused_ms: pausedMs };
  }

  #retire(proc: ExecutionProcess, why: string): Promise<void> {
    // Once per process: a drain retires every process, some already retiring after their last job.
    if (proc.retiring) return proc.retiring;
    if (proc.state === "killed" && (proc.child.exitCode !== null || proc.child.signalCode !== null)) return Promise.resolve();
    proc.state = "killed";
    // Every retirement on purpose counts as a recycle; shutting down and trimming idle ones do not.
    if (why !== "shutdown" && why !== "idle timeout") this.opts.metrics?.recycles.inc({ reason: why });
    this.opts.log.info({ child_pid: proc.pid, why, executions: proc.executions }, "retiring execution process");
    const exited = new Promise<void>((resolve) => {
      if (proc.child.exitCode !== null || proc.child.signalCode !== null) resolve();
      else proc.child.once("exit", () => resolve());
    });
    // Closing the IPC channel lets the child exit on its own; SIGKILL only if it hangs.
    if (proc.child.connected) proc.child.disconnect();
    const hardKill = setTimeout(() => proc.child.kill("SIGKILL"), this.opts.killGraceMs + 2000).unref();
    return (proc.retiring = exited.finally(() => clearTimeout(hardKill)));
  }

  #retireIdle(): void {
    const now = Date.now();
    let excess = this.#processes.size - this.opts.min;
    for (const p of this.#processes) {
      if (excess <= 0) break;
      if (p.state === "idle" && now - p.idleSince >= this.opts.idleTimeoutMs) {
        void this.#retire(p, "idle timeout");
        excess--;
      }
    }
  }
}
