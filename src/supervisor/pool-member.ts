/**
 * One execution actor in a pool, with the pool's bookkeeping: its state,
 * the execution it runs, its counts, its readiness and its end.
 */
import { randomUUID } from "node:crypto";
import type { ActorExit, ActorSpawner, ExecutionActor } from "../actors/actor.js";
import type { ChildMessage } from "../actors/protocol.js";
import type { JobError } from "../contract/index.js";

export type ExecutionOutcome =
  | { ok: true; value: unknown; duration_ms: number }
  | { ok: false; error: JobError; duration_ms: number };

export type KillReason = "timeout" | "cancelled" | "shutdown";

export interface Execution {
  id: string;
  jobId: string;
  correlationId: string;
  startedAt: Date;
  killReason?: KillReason;
  timer?: NodeJS.Timeout;
  finish(outcome: ExecutionOutcome): void;
  onProgress?: (fraction: number) => void;
}

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
  retireAfterJob = false;
  current: Execution | undefined;
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
      message: (msg) => {
        if (msg.t !== "ready") return events.message(this, msg);
        clearTimeout(timer);
        this.memoryMb = msg.rss_mb;
        readyResolve();
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
