/**
 * Storing the outcome of an attempt, before its message is acked: a job
 * that ends costs one acknowledged write, its final record (owner, times,
 * attempts, errors and result together) on the results stream; a failed
 * attempt with attempts left parks the job (or requeues it) carrying its
 * errors and owner; a dead job also gets its dead letter.
 */
import type { Logger } from "pino";
import type { FinalRecord, JobEnvelope, JobError, JobStatus } from "../contract/index.js";
import type { SupervisorMetrics } from "../platform/metrics.js";
import type { CancelRegistry, JobStore } from "../records/index.js";
import { backoffDelay } from "./backoff.js";
import type { ExecutionOutcome } from "./pool.js";
import type { JobMessage } from "./puller.js";

export const cancelledError = { code: "cancelled", message: "job was cancelled" } as const;
export const lostRun = (attempt: number): JobError => ({ code: "lost", message: `attempt ${attempt} never reported back (its supervisor stopped)` });

export interface Ending {
  state: FinalRecord["state"];
  value?: unknown;
  error: JobError | null;
  durationMs: number | null;
}

export class Settler {
  constructor(
    private readonly store: JobStore,
    private readonly cancels: CancelRegistry,
    private readonly metrics: SupervisorMetrics,
    private readonly log: Logger,
  ) {}

  /** Stores the attempt's outcome, then acks: a crash before the ack reruns the job, never loses it. */
  async settle(msg: JobMessage, job: JobEnvelope, record: JobStatus, history: JobError[], outcome: ExecutionOutcome): Promise<void> {
    const { log, metrics } = this;
    const logCtx = { job_id: job.job_id, correlation_id: job.correlation_id, attempt: record.attempts };
    const labels = { queue: job.queue, type: job.type };
    metrics.duration.observe(labels, outcome.duration_ms / 1000);
    if (outcome.ok) metrics.succeeded.inc(labels);
    else if (outcome.error.code === "cancelled") metrics.cancelled.inc(labels);
    else if (outcome.error.code !== "shutdown") metrics.failed.inc(labels);
    const ended = { ...record, finished_at: new Date().toISOString() };
    if (outcome.ok) {
      await this.finish(job, { ...ended, progress: 1 }, { state: "succeeded", value: outcome.value, error: null, durationMs: outcome.duration_ms });
      log.debug({ ...logCtx, duration_ms: outcome.duration_ms }, "job succeeded");
    } else if (outcome.error.code === "shutdown") {
      // Killed by a drain past its grace: hand it back to run elsewhere (the attempt counts).
      msg.nak();
      log.warn(logCtx, "job handed back after the drain grace period");
      return;
    } else if (outcome.error.code === "cancelled") {
      await this.finish(job, ended, { state: "cancelled", error: cancelledError, durationMs: outcome.duration_ms });
      log.info(logCtx, "job cancelled while running");
    } else if (record.attempts < job.max_attempts) {
      await this.#retryLater(job, record, [...history, outcome.error]);
      metrics.retried.inc(labels);
      log.warn({ ...logCtx, error: outcome.error }, "job attempt failed");
    } else {
      await this.bury(job, ended, history, outcome.error, outcome.duration_ms);
      metrics.dead.inc(labels);
      log.warn({ ...logCtx, error: outcome.error }, "job dead: attempts used up");
    }
    msg.ack();
  }

  /** The next attempt after the backoff: parked in the scheduler, or queued at once when there is none. */
  async #retryLater(job: JobEnvelope, record: JobStatus, errors: JobError[]): Promise<void> {
    const next: JobEnvelope = { ...job, errors, owner: record.owner, started_at: record.started_at };
    const delay = backoffDelay(job.backoff, record.attempts);
    if (delay > 0) await this.store.schedule(next, record.attempts, Date.now() + delay);
    else await this.store.enqueue(next, record.attempts);
  }

  /** Dead: kept in the dead-letter stream with every attempt's error, then finished. */
  async bury(job: JobEnvelope, record: JobStatus, history: JobError[], lastError: JobError, durationMs: number | null): Promise<void> {
    const errors = [...history, lastError];
    const dead = { ...record, state: "dead" as const, error: lastError, finished_at: record.finished_at ?? new Date().toISOString() };
    await this.store.bury({ job: { ...job, errors }, record: dead });
    await this.finish(job, dead, { state: "dead", error: lastError, durationMs });
  }

  /**
   * The final record is the durable outcome (a cancel may have claimed it
   * first: then the cancel stands, and keeps its own times).
   */
  async finish(job: JobEnvelope, record: JobStatus, end: Ending): Promise<void> {
    await this.store.settleResult({
      ...record,
      state: end.state,
      error: end.error,
      finished_at: record.finished_at ?? new Date().toISOString(),
      result: end.value ?? null,
      duration_ms: end.durationMs,
      generation: job.generation,
    });
    if (this.cancels.has(job.job_id)) this.cancels.releaseLater(job.job_id);
  }
}
