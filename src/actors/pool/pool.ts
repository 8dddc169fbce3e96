/**
 * A pool of execution actors (child processes or worker threads, see
 * actors/actor.ts) that run one job at a time. The pool grows on demand up
 * to `max`, shrinks idle actors back to `min`, hard-kills an actor whose job
 * times out or is cancelled, replaces crashed ones, and recycles an actor
 * after N executions or past a memory ceiling. It knows nothing about NATS,
 * nor which kind of actor it holds.
 *
 * A short job that finds no idle actor, with the pool at max, may be sent to a busy one, to start
 * right after the runs it already has (at most RUNS_PER_ACTOR in all, or
 * the caller's `runsPerActor`, up to MAX_RUNS_PER_ACTOR): the
 * actor then gets and answers several runs per wake-up. A caller whose runs
 * take next to nothing may have them packed that way even with actors idle.
 * One not started within its wait limit is withdrawn, and one whose actor
 * dies before starting it (the start ledger tells) is not started at all.
 */
import type { JobError, ProcessInfo, Supervision } from "../../contract/index.js";
import { actorSpawner, type ActorExit, type ActorSpawner } from "../actor.js";
import type { ChildMessage, DoneMessage } from "../protocol.js";
import {
  drainingError,
  killError,
  newExecution,
  NotStartedError,
  snapshotOf,
  type Execution,
  type ExecutionHandle,
  type KillReason,
  type RunSpec,
} from "./execution.js";
import { hasRoom, MAX_RUNS_PER_ACTOR, PoolMember, recycleTarget, roomiest, RUNS_PER_ACTOR } from "./pool-member.js";
import { RestartIntensity } from "./restarts.js";
import { WaitLine } from "./wait-line.js";
import type { PoolOptions } from "./options.js";

export { NotStartedError, type ExecutionHandle, type ExecutionOutcome, type KillReason } from "./execution.js";
export { poolSettingsOf, type PoolOptions } from "./options.js";
export { MAX_RUNS_PER_ACTOR } from "./pool-member.js";

const START_TIMEOUT_MS = 15_000;
/** A packed run queues only behind a current run that began less than this ago. */
const PACK_BEHIND_MS = 2;

export class Pool {
  readonly #members = new Set<PoolMember>();
  readonly #line = new WaitLine();
  readonly #spawnActor: ActorSpawner;
  readonly #restarts: RestartIntensity;
  #replenishTimer: NodeJS.Timeout | undefined;
  #draining = false;
  #drained: (() => void) | undefined;
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

  /** How many more short jobs it can take, queued on busy actors holding `runsPerActor` runs each, beyond its capacity. */
  queueCapacity(runsPerActor: number): number {
    return this.capacity * (runsPerActor - 1);
  }

  /**
   * Runs a job, resolving once it has started: on an idle actor; else on a
   * new actor while fewer than max live; with maxWaitMs (a short job), else
   * queued on the busy actor with the fewest runs, withdrawn if it has not
   * started within maxWaitMs; else on the next to come free (in order;
   * given up after maxWaitMs). `pack` (with maxWaitMs): queued on a busy
   * actor with room before an idle one is taken, for runs so short that
   * several in a row on one actor cost less than waking another for each.
   * `runsPerActor`: how many runs an actor it queues on may hold, with it.
   */
  execute(
    run: RunSpec,
    timeoutMs: number,
    opts: { onProgress?: (fraction: number) => void; maxWaitMs?: number; pack?: boolean; runsPerActor?: number } = {},
  ): Promise<ExecutionHandle> {
    if (this.#draining) return Promise.reject(drainingError());
    return new Promise<ExecutionHandle>((resolve, reject) => {
      const execution = newExecution(run, timeoutMs, opts.onProgress, resolve, reject, (member, reason) => this.#kill(member, execution, reason));
      const runsPerActor = Math.max(1, Math.min(MAX_RUNS_PER_ACTOR, opts.runsPerActor ?? RUNS_PER_ACTOR));
      this.#place(execution, run, opts.maxWaitMs, opts.pack === true, runsPerActor);
    });
  }

  /**
   * Marks an actor to be replaced after its current job, or an idle one now:
   * the one with this pid (and thread id, with thread isolation), or any idle one.
   */
  recycle(pid?: number, threadId?: number): PoolMember | undefined {
    const target = recycleTarget(this.#members, pid, threadId);
    if (target) this.#retireWhenFree(target, "recycle requested");
    return target;
  }

  snapshot(): ProcessInfo[] {
    const now = Date.now();
    return [...this.#members].filter((m) => m.state !== "starting").map((m) => snapshotOf(m, now));
  }

  /** Stops taking jobs (queued ones are withdrawn); resolves once every started job has ended. */
  async drain(graceMs: number): Promise<void> {
    this.#draining = true;
    clearInterval(this.#reaper);
    clearTimeout(this.#replenishTimer);
    this.#line.abandon(drainingError());
    for (const m of this.#members) for (const e of m.queued) m.withdraw(e);
    const deadline = setTimeout(() => {
      for (const m of this.#members) if (m.current) this.#kill(m, m.current, "shutdown");
    }, graceMs);
    if (this.#busy() > 0) await new Promise<void>((resolve) => (this.#drained = resolve));
    clearTimeout(deadline);
    await Promise.all([...this.#members].map((m) => this.#retire(m, "shutdown")));
  }

  supervision(): Supervision {
    return this.#restarts.supervision();
  }

  #busy(): number {
    let n = 0;
    for (const m of this.#members) if (m.pending > 0) n++;
    return n;
  }

  #place(execution: Execution, run: RunSpec, maxWaitMs: number | undefined, pack: boolean, runsPerActor: number): void {
    // Not past anyone already in line: queued on a busy actor, it would start before them
    // (the line is served only by an actor with nothing queued).
    const queueable = maxWaitMs !== undefined && this.#line.length === 0;
    // Packed only behind a run begun just now (most likely one of the same batch): what waits behind
    // one that turns out long is withdrawn at its wait limit.
    const packOn = pack && queueable ? roomiest(this.#members, this.opts.maxExecutions, runsPerActor, Date.now() - PACK_BEHIND_MS) : undefined;
    if (packOn) return this.#queueOn(packOn, execution, run, maxWaitMs!);
    for (const m of this.#members) {
      if (m.state === "idle") return this.#assign(m, execution, run);
    }
    // Grow before queueing on a busy actor: its current run may be a long one, and --max is what may run at once.
    if (this.#live() < this.opts.max && !this.#restarts.backingOff()) return this.#spawnFor(execution, run);
    const roomy = queueable ? roomiest(this.#members, this.opts.maxExecutions, runsPerActor) : undefined;
    if (roomy) return this.#queueOn(roomy, execution, run, maxWaitMs!);
    // An actor still starting takes the line's first job once up: a short job waits for that, not
    // just its own limit (handed back meanwhile, it would go behind every job of its lane).
    this.#line.join(execution, run, maxWaitMs === undefined || !this.#anyStarting() ? maxWaitMs : Math.max(maxWaitMs, START_TIMEOUT_MS), runsPerActor);
    this.#replenish();
  }

  /**
   * An actor that moved on to a queued run has room again: the short jobs at
   * the head of the line queue on it, in line order (they would otherwise
   * wait for an actor with nothing queued, while later jobs queued past them).
   */
  #queueFromLine(member: PoolMember): void {
    // As in #place: a busy actor's queue only once no actor is starting or could still be spawned for them.
    if (this.#anyStarting() || this.#live() < this.opts.max) return;
    while (!this.#draining) {
      const head = this.#line.peek();
      if (head?.deadline === undefined || !hasRoom(member, this.opts.maxExecutions, head.runsPerActor)) return;
      this.#line.next();
      this.#queueOn(member, head.execution, head.run, Math.max(0, head.deadline - Date.now()));
    }
  }

  /** Behind a busy actor's current run, withdrawn if it has not started within waitMs. */
  #queueOn(member: PoolMember, execution: Execution, run: RunSpec, waitMs: number): void {
    execution.waitTimer = setTimeout(() => member.withdraw(execution), waitMs);
    this.#assign(member, execution, run);
  }

  #assign(member: PoolMember, execution: Execution, run: RunSpec): void {
    member.state = "busy";
    if (member.enqueue(execution, run) === "current") this.#begin(member, execution);
  }

  /** The actor is on this run now: its timeout starts, and its caller gets the handle. */
  #begin(member: PoolMember, execution: Execution): void {
    clearTimeout(execution.waitTimer);
    execution.startedAt = new Date();
    execution.timer = setTimeout(() => this.#kill(member, execution, "timeout"), execution.timeoutMs);
    execution.begin(member);
    this.opts.onChange();
  }

  #spawnFor(execution: Execution, run: RunSpec): void {
    // Spoken for: a starting actor takes nothing else (#place looks for idle or busy ones).
    const member = this.#spawn();
    member.ready.then(
      () => {
        if (this.#draining) {
          execution.notStarted(drainingError());
          this.#next(member);
        } else this.#assign(member, execution, run);
      },
      (err: unknown) => execution.notStarted(this.#draining ? drainingError() : err),
    );
  }

  /** Actors that are starting, idle or busy (not the ones on their way out). */
  #live(): number {
    let n = 0;
    for (const m of this.#members) if (m.state !== "killed") n++;
    return n;
  }

  #anyStarting(): boolean {
    for (const m of this.#members) if (m.state === "starting") return true;
    return false;
  }

  /** The actor's run is over: it is on its next queued one, retires, takes the next job in line, or idles. */
  #next(member: PoolMember): void {
    const next = member.advance();
    if (next) {
      this.#begin(member, next);
      // Retiring: what it has not started yet goes elsewhere.
      if (member.retiring) for (const e of member.queued) member.withdraw(e);
      else this.#queueFromLine(member);
      return;
    }
    if (member.retiring) void this.#retire(member, member.retiring);
    else if (!this.#draining && this.#line.length > 0) {
      const waiting = this.#line.next()!;
      this.#assign(member, waiting.execution, waiting.run);
      this.#queueFromLine(member);
    } else {
      member.state = "idle";
      member.idleSince = Date.now();
    }
    if (this.#draining && this.#busy() === 0) this.#drained?.();
  }

  /** Retires now if it holds no run, else once its current run is over (queued ones are withdrawn). */
  #retireWhenFree(member: PoolMember, why: string): void {
    member.retiring = why;
    for (const e of member.queued) member.withdraw(e);
    if (member.pending === 0 && member.state !== "starting") void this.#retire(member, why);
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
    while (this.#line.length > 0 && this.#live() < this.opts.max) {
      const waiting = this.#line.next()!;
      this.#spawnFor(waiting.execution, waiting.run);
    }
    this.#topUp();
  }

  #topUp(): void {
    while (this.#live() < this.opts.min) {
      const member = this.#spawn();
      member.ready.then(
        () => {
          this.#next(member);
          this.opts.onChange();
        },
        (err: unknown) => {
          // A drain retires actors still starting: expected, not a failure.
          if (!this.#draining) this.opts.log.error({ err }, `execution ${member.noun} failed to start`);
        },
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
    if (msg.t === "progress") {
      if (current?.id === msg.execution_id) current.onProgress?.(msg.progress);
    } else if (msg.t === "done") {
      if (current?.id === msg.execution_id) this.#onDone(member, current, msg);
    } else {
      const execution = member.withdrawn(msg.execution_id);
      if (!execution) return;
      clearTimeout(execution.waitTimer);
      execution.notStarted(this.#draining ? drainingError() : new NotStartedError("withdrawn: the execution actor it waited for was still busy"));
      if (member.pending === 0) this.#next(member);
    }
  }

  #onDone(member: PoolMember, execution: Execution, msg: DoneMessage): void {
    clearTimeout(execution.timer);
    member.executions++;
    member.memoryMb = msg.rss_mb;
    const duration_ms = Date.now() - execution.startedAt!.getTime();
    // A job that ends on its own after a kill began (it honoured ctx.signal) still ends for the kill's reason.
    if (execution.killReason) execution.finish({ ok: false, error: killError(execution.killReason, member), duration_ms });
    else execution.finish(msg.outcome.ok ? { ok: true, value: msg.outcome.value, duration_ms } : { ok: false, error: msg.outcome.error, duration_ms });
    const retireWhy = this.#retireReason(member, execution);
    if (retireWhy) member.retiring ??= retireWhy;
    this.#next(member);
    this.opts.onChange();
  }

  /** Why an actor that just finished a job must not take another, if it must not. */
  #retireReason(member: PoolMember, execution: Execution): string | undefined {
    return member.spent(execution, this.opts) ?? (this.#draining ? "shutdown" : undefined);
  }

  #kill(member: PoolMember, execution: Execution, reason: KillReason): void {
    if (member.current !== execution || execution.killReason) return;
    execution.killReason = reason;
    member.abort(execution, reason);
    // Unless the handler gives up by itself within the grace; either way the actor is replaced.
    setTimeout(() => {
      if (member.current === execution) member.actor.kill();
    }, this.opts.killGraceMs).unref();
    this.opts.log.warn({ ...member.logFields(), job_id: execution.jobId, correlation_id: execution.correlationId, reason }, `killing execution ${member.noun}`);
  }

  /**
   * The actor is gone. Its runs that started (the current one, and per the
   * start ledger any queued one it got to) end as killed or crashed; the
   * rest never started and go back to their callers unrun.
   */
  #onExit(member: PoolMember, how: ActorExit): void {
    const wasRetiring = member.state === "killed";
    member.state = "killed";
    this.#members.delete(member);
    const startedUpTo = member.actor.startedUpTo();
    const held = [...(member.current ? [member.current] : []), ...member.queued];
    member.current = undefined;
    member.queued.length = 0;
    let crashed: Execution | undefined;
    for (const execution of held) {
      clearTimeout(execution.timer);
      clearTimeout(execution.waitTimer);
      if (!execution.startedAt && execution.seq > startedUpTo) {
        execution.notStarted(new NotStartedError(`its execution ${member.noun} exited before starting it`));
        continue;
      }
      if (!execution.startedAt) this.#begin(member, execution);
      clearTimeout(execution.timer);
      crashed ??= execution;
      const error: JobError = execution.killReason
        ? killError(execution.killReason, member)
        : { code: "crashed", message: `execution ${member.noun} exited mid-job (code ${how.code}, ${how.error ?? `signal ${how.signal}`})` };
      execution.finish({ ok: false, error, duration_ms: Date.now() - execution.startedAt!.getTime() });
    }
    if (!wasRetiring || crashed) {
      this.opts.log.warn(
        { ...member.logFields(), code: how.code, signal: how.signal, error: how.error, job_id: crashed?.jobId, correlation_id: crashed?.correlationId },
        `execution ${member.noun} exited`,
      );
    } else {
      this.opts.log.info({ ...member.logFields(), code: how.code, signal: how.signal }, `retired execution ${member.noun} exited`);
    }
    if (!wasRetiring && !crashed?.killReason) {
      this.opts.metrics?.restarts.inc();
      this.#restarts.crashed();
    }
    if (this.#draining && this.#busy() === 0) this.#drained?.();
    this.#replenish();
    this.opts.onChange();
  }

  #retire(member: PoolMember, why: string): Promise<void> {
    if (member.ended) return Promise.resolve();
    if (member.state !== "killed") {
      member.state = "killed";
      // Every retirement on purpose counts as a recycle; shutting down and trimming idle ones do not.
      if (why !== "shutdown" && why !== "idle timeout") this.opts.metrics?.recycles.inc({ reason: why });
      this.opts.log.info({ ...member.logFields(), why, executions: member.executions }, `retiring execution ${member.noun}`);
      // Closing lets the actor exit on its own; a hard kill only if it hangs.
      member.actor.close();
    }
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
