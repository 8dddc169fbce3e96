/**
 * One execution actor in a pool, with the pool's bookkeeping: its state,
 * the run it is on and the runs sent after it, its counts, its readiness
 * and its end. Commands to it leave once per event-loop turn, together.
 */
import { randomUUID } from "node:crypto";
import type { ActorExit, ActorSpawner, ExecutionActor } from "../actor.js";
import type { ChildMessage, ParentCommand } from "../protocol.js";
import type { Execution, RunSpec } from "./execution.js";

/** Runs an actor holds at most unless its caller says (`runsPerActor`): the one it is on and those queued to start right after it. */
export const RUNS_PER_ACTOR = 4;
/** The most a caller may have one actor hold. */
export const MAX_RUNS_PER_ACTOR = 8;

export type MemberState = "starting" | "idle" | "busy" | "killed";

export interface MemberEvents {
  message(member: PoolMember, msg: Exclude<ChildMessage, { t: "ready" }>): void;
  exit(member: PoolMember, how: ActorExit): void;
}



export class PoolMember {
  readonly id = randomUUID();
  readonly startedAt = Date.now();
  state: MemberState = "starting";
  executions = 0;
  memoryMb = 0;
  idleSince = Date.now();
  /** Set once it must take no more runs: it retires when the ones it has are over. */
  retiring: string | undefined;
  /** The run it is on, as far as the pool knows. */
  current: Execution | undefined;
  /** Runs sent after the current one, in the order the actor will start them. */
  readonly queued: Execution[] = [];
  #runs = 0;
  #out: ParentCommand[] = [];
  #flushing = false;
  /** How it ended, once it has. */
  ended: ActorExit | undefined;
  readonly actor: ExecutionActor;
  /** Resolves on its ready message; rejects if it ends first or takes longer than the start timeout. */
  readonly ready: Promise<void>;
  readonly #gone: Promise<void>;

  constructor(spawn: ActorSpawner, events: MemberEvents, startTimeoutMs: number) {
    let readyResolve!: () => void;
    let readyReject!: (err: Error) => void;
    let goneResolve!: () => void;
    this.ready = new Promise<void>((resolve, reject) => ((readyResolve = resolve), (readyReject = reject)));
    // A start that fails is reported by whoever awaits it; none may go unhandled.
    this.ready.catch(() => undefined);
    this.#gone = new Promise<void>((resolve) => (goneResolve = resolve));
    const timer = setTimeout(() => {
      readyReject(new Error(`execution ${this.noun} did not become ready in time`));
      this.actor.kill();
    }, startTimeoutMs);
    this.actor = spawn({
      messages: (msgs) => {
        for (const msg of msgs) {
          if (msg.t !== "ready") {
            events.message(this, msg);
            continue;
          }
          clearTimeout(timer);
          this.memoryMb = msg.rss_mb;
          readyResolve();
        }
      },
      exit: (how) => {
        clearTimeout(timer);
        this.ended = how;
        readyReject(new Error(`execution ${this.noun} exited before it was ready (${this.describe()})`));
        goneResolve();
        events.exit(this, how);
      },
    });
  }

  get pid(): number {
    return this.actor.pid;
  }

  /** Runs it holds: the current one and those queued behind it. */
  get pending(): number {
    return (this.current ? 1 : 0) + this.queued.length;
  }

  /** Sends a run: the current one if nothing runs here, else queued behind the others. */
  enqueue(execution: Execution, run: RunSpec): "current" | "queued" {
    execution.seq = ++this.#runs;
    this.#send({ t: "run", execution_id: execution.id, seq: execution.seq, ...run });
    if (this.current) {
      this.queued.push(execution);
      return "queued";
    }
    this.current = execution;
    return "current";
  }

  /** The current run is over: the actor has started the next queued one, if any. */
  advance(): Execution | undefined {
    this.current = this.queued.shift();
    return this.current;
  }

  /** Asks for a queued run back; the actor answers withdrawn, unless it started the run first. */
  withdraw(execution: Execution): void {
    if (execution.withdrawing || !this.queued.includes(execution)) return;
    execution.withdrawing = true;
    this.#send({ t: "withdraw", execution_id: execution.id });
  }

  /** Why it must take no more runs after this one, if it must not: a kill, or a limit reached. */
  spent(execution: Execution, limits: { maxExecutions: number; maxMemoryMb: number }): string | undefined {
    if (execution.killReason) return `killed (${execution.killReason})`;
    if (this.executions >= limits.maxExecutions) return "max executions reached";
    if (this.memoryMb > limits.maxMemoryMb) return "memory ceiling exceeded";
    return undefined;
  }

  /** The actor gave a queued run back. */
  withdrawn(executionId: string): Execution | undefined {
    const at = this.queued.findIndex((e) => e.id === executionId);
    return at < 0 ? undefined : this.queued.splice(at, 1)[0];
  }

  abort(execution: Execution, reason: string): void {
    this.#send({ t: "abort", execution_id: execution.id, reason });
  }

  /** Commands of one turn leave in one write: an actor fed several runs wakes once for them. */
  #send(cmd: ParentCommand): void {
    this.#out.push(cmd);
    if (this.#flushing) return;
    this.#flushing = true;
    setImmediate(() => {
      this.#flushing = false;
      this.actor.send(this.#out.splice(0));
    });
  }

  get threadId(): number | undefined {
    return this.actor.threadId;
  }

  /** "process" or "thread", for log lines. */
  get noun(): string {
    return this.actor.kind;
  }

  /** Resolves once the actor has ended. */
  gone(): Promise<void> {
    return this.#gone;
  }

  /** What names this actor in log lines: the child's pid, or the thread's id. */
  logFields(): Record<string, unknown> {
    return this.threadId === undefined ? { child_pid: this.pid, process_id: this.id } : { thread_id: this.threadId, process_id: this.id };
  }

  describe(): string {
    return this.threadId === undefined ? `pid ${this.pid}` : `thread ${this.threadId}`;
  }
}

/**
 * The member a recycle request names: the one with this pid (and thread id,
 * with thread isolation), else any idle one; never one starting or already
 * on its way out.
 */
export function recycleTarget(members: Iterable<PoolMember>, pid?: number, threadId?: number): PoolMember | undefined {
  const candidates = [...members].filter((m) => m.state !== "starting" && m.state !== "killed" && !m.retiring);
  if (pid === undefined && threadId === undefined) return candidates.find((m) => m.state === "idle");
  // Threads share the supervisor's pid: without a thread id, an idle one of them first.
  return candidates
    .filter((m) => (pid === undefined || m.pid === pid) && (threadId === undefined || m.threadId === threadId))
    .sort((a, b) => Number(b.state === "idle") - Number(a.state === "idle"))[0];
}

/** Whether a short job can queue on it: busy, room left, not retiring, not near its execution limit. */
export function hasRoom(m: PoolMember, maxExecutions: number, runsPerActor: number): boolean {
  return m.state === "busy" && m.current !== undefined && !m.retiring && m.pending < runsPerActor && m.executions + m.pending < maxExecutions;
}

/** The member with room that holds the fewest runs (on its current run since `begunSince`, epoch ms, if given). */
export function roomiest(members: Iterable<PoolMember>, maxExecutions: number, runsPerActor: number, begunSince?: number): PoolMember | undefined {
  let best: PoolMember | undefined;
  for (const m of members) {
    if (!hasRoom(m, maxExecutions, runsPerActor) || (begunSince !== undefined && m.current!.startedAt!.getTime() < begunSince)) continue;
    if (!best || m.pending < best.pending) best = m;
  }
  return best;
}
