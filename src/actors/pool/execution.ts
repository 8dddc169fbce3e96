/**
 * One job's run on an execution actor, as the pool tracks it: how it
 * starts (at once, or behind the runs queued before it), its timers, how it
 * ends, and what its caller holds (the handle).
 */
import { randomUUID } from "node:crypto";
import type { RunCommand } from "../protocol.js";
import type { JobError, ProcessInfo } from "../../contract/index.js";
import type { PoolMember } from "./pool-member.js";

export type ExecutionOutcome =
  | { ok: true; value: unknown; duration_ms: number }
  | { ok: false; error: JobError; duration_ms: number };

/** `lease_lost`: a compute worker's lease ended under it (stale, or its server revoked); nobody takes its outcome. */
export type KillReason = "timeout" | "cancelled" | "shutdown" | "lease_lost";

export interface Execution {
  id: string;
  /** Its run number on its actor (the start ledger's unit). */
  seq: number;
  jobId: string;
  correlationId: string;
  timeoutMs: number;
  /** Set when it starts: at once on an idle actor, else when the actor reports the run before it done. */
  startedAt: Date | undefined;
  killReason?: KillReason;
  /** The timeout, from the start. */
  timer?: NodeJS.Timeout;
  /** Sent behind another run: how long it may wait to start before it is withdrawn. */
  waitTimer?: NodeJS.Timeout;
  withdrawing?: boolean;
  onProgress?: (fraction: number) => void;
  /** It started on this member. */
  begin(member: PoolMember): void;
  /** It will not start here (withdrawn, drained, its actor gone first, or none could be had). */
  notStarted(err: unknown): void;
  finish(outcome: ExecutionOutcome): void;
}

export type RunSpec = Omit<RunCommand, "t" | "execution_id" | "seq">;

const killMessages: Record<KillReason, (noun: string) => string> = {
  timeout: (noun) => `job exceeded its timeout_ms and its ${noun} was killed`,
  cancelled: (noun) => `job was cancelled and its ${noun} was killed`,
  shutdown: (noun) => `its supervisor or compute worker shut down past its grace period and killed the ${noun}`,
  lease_lost: (noun) => `the job's compute lease ended and its ${noun} was killed`,
};
export const killError = (reason: KillReason, member: PoolMember): JobError => ({ code: reason, message: killMessages[reason](member.noun) });

/**
 * The job was never started: the pool is draining, or no actor came free
 * within the caller's wait limit. It should run elsewhere, its attempt unused.
 */
export class NotStartedError extends Error {
  override readonly name = "NotStartedError";
}
export const drainingError = () => new NotStartedError("the pool is draining");
export const waitedTooLong = (ms: number) => new NotStartedError(`no execution actor came free within ${ms} ms`);

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

/** A new execution: `begin` resolves the caller's handle, `notStarted` rejects it. */
export function newExecution(
  run: RunSpec,
  timeoutMs: number,
  onProgress: ((fraction: number) => void) | undefined,
  resolve: (handle: ExecutionHandle) => void,
  reject: (err: unknown) => void,
  kill: (member: PoolMember, reason: KillReason) => void,
): Execution {
  let finish!: (outcome: ExecutionOutcome) => void;
  const outcome = new Promise<ExecutionOutcome>((done) => (finish = done));
  const execution: Execution = {
    id: randomUUID(),
    seq: 0,
    jobId: run.job_id,
    correlationId: run.correlation_id,
    timeoutMs,
    startedAt: undefined,
    onProgress,
    finish: (o) => finish(o),
    notStarted: reject,
    begin: (member) =>
      resolve({
        pid: member.pid,
        threadId: member.threadId,
        startedAt: execution.startedAt!.getTime(),
        executionId: execution.id,
        outcome,
        kill: (reason) => kill(member, reason),
      }),
  };
  return execution;
}

/** What a heartbeat says of one actor. */
export function snapshotOf(m: PoolMember, now: number): ProcessInfo {
  return {
    pid: m.pid,
    process_id: m.id,
    state: m.state === "busy" ? "busy" : m.state === "killed" ? "killed" : "idle",
    memory_mb: m.memoryMb,
    uptime_seconds: Math.round((now - m.startedAt) / 1000),
    executions_completed: m.executions,
    execution: m.current?.startedAt
      ? {
          execution_id: m.current.id,
          job_id: m.current.jobId,
          started_at: m.current.startedAt.toISOString(),
          elapsed_seconds: Math.round((now - m.current.startedAt.getTime()) / 100) / 10,
        }
      : null,
    kind: m.actor.kind,
    ...(m.threadId !== undefined && { thread_id: m.threadId }),
  };
}
