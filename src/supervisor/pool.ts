/**
 * A pool of execution actors (child processes or worker threads, see
 * actors/actor.ts) that run one job at a time. The pool grows on demand up
 * to `max`, shrinks idle actors back to `min`, hard-kills an actor whose job
 * times out or is cancelled, replaces crashed ones, and recycles an actor
 * after N executions or past a memory ceiling. It knows nothing about NATS,
 * nor which kind of actor it holds.
 */
import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import type { JobError, ProcessInfo, Supervision } from "../contract/index.js";
import { actorSpawner, type ActorExit, type ActorKind, type ActorSpawner } from "../actors/actor.js";
import type { ChildMessage, DoneMessage, RunCommand } from "../actors/protocol.js";
import type { SupervisorMetrics } from "../platform/metrics.js";
import { PoolMember, type Execution, type ExecutionOutcome, type KillReason } from "./pool-member.js";
import { RestartIntensity } from "./restarts.js";

export type { ExecutionOutcome, KillReason } from "./pool-member.js";

const START_TIMEOUT_MS = 15_000;

export interface PoolOptions {
  /** What runs the jobs: child processes (default) or worker threads. */
  isolation: ActorKind;
  min: number;
  max: number;
  maxExecutions: number;
  maxMemoryMb: number;
  idleTimeoutMs: number;
  /** Time a handler gets to honour ctx.signal before its actor is killed. */
  killGraceMs: number;
  handlersPath?: string;
  builtins: boolean;
  /** Extra environment for execution actors (NATS URL and maintenance defaults). */
  env: Record<string, string>;
  /** More crashes than this within restartWindowMs make spawning back off. */
  maxRestarts: number;
  restartWindowMs: number;
  log: Logger;
  /** Called on every change a heartbeat should report. */
  onChange(): void;
  metrics?: Pick<SupervisorMetrics, "restarts" | "recycles">;
}

const killMessages: Record<KillReason, (noun: string) => string> = {
  timeout: (noun) => `job exceeded its timeout_ms and its ${noun} was killed`,
  cancelled: (noun) => `job was cancelled and its ${noun} was killed`,
  shutdown: (noun) => `supervisor shut down past its grace period and killed the ${noun}`,
};
const killError = (reason: KillReason, member: PoolMember): JobError => ({ code: reason, message: killMessages[reason](member.noun) });

/**
 * The job was never started: the pool is draining, or no actor came free
 * within the caller's wait limit. It should run elsewhere, its attempt unused.
 */
export class NotStartedError extends Error {
  override readonly name = "NotStartedError";
}
const drainingError = () => new NotStartedError("the pool is draining");

export interface ExecutionHandle {
  /** The OS process running the job (for a thread, the supervisor's own). */
  pid: number;
  /** The thread running the job, with thread isolation. */
  threadId: number | undefined;
  /** Epoch ms. */
  startedAt: number;
  executionId: string;
  outcome: Promise<ExecutionOutcome>;
  kill(reason: KillReason): void;
}

interface Waiter {
  resolve(member: PoolMember): void;
  reject(err: unknown): void;
}

export class Pool {
  readonly #members = new Set<PoolMember>();
  readonly #waiting: Waiter[] = [];
  readonly #spawnActor: ActorSpawner;
  readonly #restarts: RestartIntensity;
  #replenishTimer: NodeJS.Timeout | undefined;
  #draining = false;
  #reaper: NodeJS.Timeout | undefined;

  constructor(private readonly opts: PoolOptions) {
    this.#spawnActor = actorSpawner(opts.isolation, { env: opts.env, handlersPath: opts.handlersPath, builtins: opts.builtins, maxMemoryMb: opts.maxMemoryMb, log: opts.log });
    this.#restarts = new RestartIntensity({ maxRestarts: opts.maxRestarts, windowMs: opts.restartWindowMs, log: opts.log, plural: opts.isolation === "thread" ? "threads" : "processes" });
  }

  start(): void {
    this.#topUp();
    this.#reaper = setInterval(() => this.#retireIdle(), Math.min(1000, this.opts.idleTimeoutMs)).unref();
  }

  /** How many jobs may run at once: max, or none once draining. */
  get capacity(): number {
    return this.#draining ? 0 : this.opts.max;
  }

  /**
   * Runs a job on an idle actor, spawning one if none is idle and fewer
   * than max live, else on the next actor to come free (in order).
   */
  async execute(
    cmd: Omit<RunCommand, "t" | "execution_id">,
    timeoutMs: number,
    opts: { onProgress?: (fraction: number) => void; maxWaitMs?: number } = {},
  ): Promise<ExecutionHandle> {
    const { onProgress, maxWaitMs } = opts;
    let member: PoolMember;
    try {
      member = await this.#acquire(maxWaitMs);
    } catch (err) {
      // A drain retired the actor this job was waiting for: not started, not failed.
      throw this.#draining ? drainingError() : err;
    }
    // Acquired while a drain began (an actor that was still starting): the drain retires it.
    if (this.#draining) throw drainingError();
    const execution_id = randomUUID();
    let finish!: (outcome: ExecutionOutcome) => void;
    const outcome = new Promise<ExecutionOutcome>((resolve) => (finish = resolve));
    const execution: Execution = { id: execution_id, jobId: cmd.job_id, correlationId: cmd.correlation_id, startedAt: new Date(), finish, onProgress };
    member.current = execution;
    execution.timer = setTimeout(() => this.#kill(member, execution, "timeout"), timeoutMs);
    member.actor.send({ t: "run", execution_id, ...cmd } satisfies RunCommand);
    this.opts.onChange();
    return {
      pid: member.pid,
      threadId: member.threadId,
      startedAt: execution.startedAt.getTime(),
      executionId: execution_id,
      outcome,
      kill: (reason) => this.#kill(member, execution, reason),
    };
  }

  /**
   * Marks an actor to be replaced after its current job, or an idle one now:
   * the one with this pid (and thread id, with thread isolation), or any idle one.
   */
  recycle(pid?: number, threadId?: number): PoolMember | undefined {
    const members = [...this.#members].filter((m) => m.state !== "starting" && m.state !== "killed");
    const target =
      pid === undefined && threadId === undefined
        ? members.find((m) => m.state === "idle")
        : // Threads share the supervisor's pid: without a thread id, an idle one of them first.
          members
            .filter((m) => (pid === undefined || m.pid === pid) && (threadId === undefined || m.threadId === threadId))
            .sort((a, b) => Number(b.state === "idle") - Number(a.state === "idle"))[0];
    if (!target) return undefined;
    if (target.state === "busy") target.retireAfterJob = true;
    else void this.#retire(target, "recycle requested");
    return target;
  }

  snapshot(): ProcessInfo[] {
    const now = Date.now();
    return [...this.#members]
      .filter((m) => m.state !== "starting")
      .map((m) => ({
        pid: m.pid,
        process_id: m.id,
        state: m.state === "busy" ? "busy" : m.state === "killed" ? "killed" : "idle",
        memory_mb: m.memoryMb,
        uptime_seconds: Math.round((now - m.startedAt) / 1000),
        executions_completed: m.executions,
        execution: m.current
          ? {
              execution_id: m.current.id,
              started_at: m.current.startedAt.toISOString(),
              elapsed_seconds: Math.round((now - m.current.startedAt.getTime()) / 100) / 10,
            }
          : null,
        kind: m.actor.kind,
        ...(m.threadId !== undefined && { thread_id: m.threadId }),
      }));
  }

  /** Stops handing out actors; resolves once every running job has ended. */
  async drain(graceMs: number): Promise<void> {
    this.#draining = true;
    clearInterval(this.#reaper);
    clearTimeout(this.#replenishTimer);
    for (const waiter of this.#waiting.splice(0)) waiter.reject(drainingError());
    const running = [...this.#members].filter((m) => m.current).map((m) => m.current!);
    const deadline = setTimeout(() => {
      for (const m of this.#members) if (m.current) this.#kill(m, m.current, "shutdown");
    }, graceMs);
    await Promise.all(running.map((e) => new Promise<void>((resolve) => {
      const finish = e.finish;
      e.finish = (o) => { finish(o); resolve(); };
    })));
    clearTimeout(deadline);
    await Promise.all([...this.#members].map((m) => this.#retire(m, "shutdown")));
  }

  supervision(): Supervision {
    return this.#restarts.supervision();
  }

  /** An idle actor, a new one while fewer than max live, or the next to come free. */
  #acquire(maxWaitMs?: number): Promise<PoolMember> {
    if (this.#draining) return Promise.reject(drainingError());
    for (const m of this.#members) {
      if (m.state === "idle") {
        m.state = "busy";
        return Promise.resolve(m);
      }
    }
    if (this.#live() < this.opts.max && !this.#restarts.backingOff()) return this.#spawnBusy();
    const waiting = this.#wait(maxWaitMs);
    this.#replenish();
    return waiting;
  }

  /** A place in line for the next free actor; given up after maxWaitMs if still in line then. */
  #wait(maxWaitMs: number | undefined): Promise<PoolMember> {
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const waiter: Waiter = {
        resolve: (member) => {
          clearTimeout(timer);
          resolve(member);
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
          reject(new NotStartedError(`no execution actor came free within ${maxWaitMs} ms`));
        }, maxWaitMs);
      }
      this.#waiting.push(waiter);
    });
  }

  async #spawnBusy(): Promise<PoolMember> {
    const member = this.#spawn();
    member.state = "busy";
    await member.ready;
    return member;
  }

  /** Actors that are starting, idle or busy (not the ones on their way out). */
  #live(): number {
    let n = 0;
    for (const m of this.#members) if (m.state !== "killed") n++;
    return n;
  }

  /** An actor is free: the next waiting job takes it, else it idles. */
  #release(member: PoolMember): void {
    const waiter = this.#waiting.shift();
    if (waiter) {
      member.state = "busy";
      waiter.resolve(member);
    } else {
      member.state = "idle";
      member.idleSince = Date.now();
    }
  }

  /**
   * Spawns for jobs that wait, then back up to min; while spawning backs
   * off, once the pause is over (max is never exceeded, the pause never skipped).
   */
  #replenish(): void {
    if (this.#draining) return;
    if (this.#restarts.backingOff()) {
      this.#replenishTimer ??= setTimeout(() => {
        this.#replenishTimer = undefined;
        this.#replenish();
      }, this.#restarts.spawnNotBefore - Date.now());
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
      const member = this.#spawn();
      member.ready.then(
        () => {
          this.#release(member);
          this.opts.onChange();
        },
        (err: unknown) => this.opts.log.error({ err }, `execution ${member.noun} failed to start`),
      );
    }
  }

  #spawn(): PoolMember {
    const member = new PoolMember(
      this.#spawnActor,
      { message: (m, msg) => this.#onMessage(m, msg), exit: (m, how) => this.#onExit(m, how) },
      START_TIMEOUT_MS,
    );
    this.#members.add(member);
    void member.ready.then(() => this.opts.log.info(member.logFields(), `execution ${member.noun} started`), () => undefined);
    return member;
  }

  #onMessage(member: PoolMember, msg: Exclude<ChildMessage, { t: "ready" }>): void {
    const current = member.current;
    if (msg.t === "progress" && current?.id === msg.execution_id) current.onProgress?.(msg.progress);
    else if (msg.t === "done" && current?.id === msg.execution_id) this.#onDone(member, current, msg);
  }

  #onDone(member: PoolMember, execution: Execution, msg: DoneMessage): void {
    clearTimeout(execution.timer);
    member.current = undefined;
    member.executions++;
    member.memoryMb = msg.rss_mb;
    const duration_ms = Date.now() - execution.startedAt.getTime();
    // A job that ends on its own after a kill began (it honoured ctx.signal) still ends for the kill's reason.
    if (execution.killReason) execution.finish({ ok: false, error: killError(execution.killReason, member), duration_ms });
    else execution.finish(msg.outcome.ok ? { ok: true, value: msg.outcome.value, duration_ms } : { ok: false, error: msg.outcome.error, duration_ms });
    const retireWhy = this.#retireReason(member, execution);
    if (retireWhy) void this.#retire(member, retireWhy);
    else this.#release(member);
    this.opts.onChange();
  }

  /** Why an actor that just finished a job must not take another, if it must not. */
  #retireReason(member: PoolMember, execution: Execution): string | undefined {
    if (execution.killReason) return `killed (${execution.killReason})`;
    if (member.retireAfterJob) return "recycle requested";
    if (member.executions >= this.opts.maxExecutions) return "max executions reached";
    if (member.memoryMb > this.opts.maxMemoryMb) return "memory ceiling exceeded";
    if (this.#draining) return "shutdown";
    return undefined;
  }

  #kill(member: PoolMember, execution: Execution, reason: KillReason): void {
    if (member.current !== execution || execution.killReason) return;
    execution.killReason = reason;
    member.actor.send({ t: "abort", execution_id: execution.id, reason });
    // Unless the handler gives up by itself within the grace; either way the actor is replaced.
    setTimeout(() => {
      if (member.current === execution) member.actor.kill();
    }, this.opts.killGraceMs).unref();
    this.opts.log.warn({ ...member.logFields(), job_id: execution.jobId, correlation_id: execution.correlationId, reason }, `killing execution ${member.noun}`);
  }

  #onExit(member: PoolMember, how: ActorExit): void {
    const wasRetiring = member.state === "killed";
    member.state = "killed";
    this.#members.delete(member);
    const execution = member.current;
    if (execution) {
      clearTimeout(execution.timer);
      member.current = undefined;
      const error: JobError = execution.killReason
        ? killError(execution.killReason, member)
        : { code: "crashed", message: `execution ${member.noun} exited mid-job (code ${how.code}, ${how.error ?? `signal ${how.signal}`})` };
      execution.finish({ ok: false, error, duration_ms: Date.now() - execution.startedAt.getTime() });
    }
    if (!wasRetiring || execution) {
      this.opts.log.warn(
        { ...member.logFields(), code: how.code, signal: how.signal, error: how.error, job_id: execution?.jobId, correlation_id: execution?.correlationId },
        `execution ${member.noun} exited`,
      );
    } else {
      this.opts.log.info({ ...member.logFields(), code: how.code, signal: how.signal }, `retired execution ${member.noun} exited`);
    }
    if (!wasRetiring && !execution?.killReason) {
      this.opts.metrics?.restarts.inc();
      this.#restarts.crashed();
    }
    this.#replenish();
    this.opts.onChange();
  }

  #retire(member: PoolMember, why: string): Promise<void> {
    if (member.ended) return Promise.resolve();
    member.state = "killed";
    // Every retirement on purpose counts as a recycle; shutting down and trimming idle ones do not.
    if (why !== "shutdown" && why !== "idle timeout") this.opts.metrics?.recycles.inc({ reason: why });
    this.opts.log.info({ ...member.logFields(), why, executions: member.executions }, `retiring execution ${member.noun}`);
    // Closing lets the actor exit on its own; a hard kill only if it hangs.
    member.actor.close();
    const hardKill = setTimeout(() => member.actor.kill(), this.opts.killGraceMs + 2000).unref();
    return member.gone().finally(() => clearTimeout(hardKill));
  }

  #retireIdle(): void {
    const now = Date.now();
    let excess = this.#members.size - this.opts.min;
    for (const m of this.#members) {
      if (excess <= 0) break;
      if (m.state === "idle" && now - m.idleSince >= this.opts.idleTimeoutMs) {
        void this.#retire(m, "idle timeout");
        excess--;
      }
    }
  }
}
