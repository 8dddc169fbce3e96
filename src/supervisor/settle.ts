/**
 * Storing the outcome of an attempt, before its message is acked: a job
 * that ends costs one acknowledged write, its final record (owner, times,
 * attempts, errors and result together) on the results stream; a failed
 * attempt with attempts left parks the job (or requeues it) carrying its
 * errors and owner; a dead job also gets its dead letter.
 */
import type { Logger } from "pino";
import { encodeJson, fencingToken, jobErrorOf, type FinalRecord, type JobEnvelope, type JobError, type JobStatus } from "../contract/index.js";
import { isMaxPayloadError } from "../platform/nats.js";
import type { SupervisorMetrics } from "../platform/metrics.js";
import type { CancelRegistry, JobStore, ParkedJob } from "../records/index.js";
import { backoffDelay } from "./backoff.js";
import type { ExecutionOutcome } from "../actors/pool/pool.js";
import type { JobMessage } from "../platform/puller.js";
import { cancelledError, deliveryHistory, lostRun, recordOf } from "../records/index.js";
import { readJobMessage, type InboundJob } from "./inbound.js";

/** A delivered job ready to run (see Settler.pickUp). */
export interface PickedUp {
  inbound: InboundJob;
  job: JobEnvelope;
  attempt: number;
  history: JobError[];
  /** Carries the run's fencing token on into its final record. */
  record: FencedStatus;
  fencingToken: number;
}
export type FencedStatus = JobStatus & { fencing_token?: number };


/**
 * Names one run of a job: this supervisor and its receipt of the message.
 * A retried write of the run's result is recognised as the same run; a
 * second delivery JetStream numbered the same (a consumer leader that lost
 * its state in a crash or a partition) as another run.
 */
export const runIdOf = (workerId: string, msg: JobMessage): string => `${workerId}.${msg.receipt}`;

export interface OutcomeOptions {
  /** The next attempt without the backoff (the failure was not the job's: its server was revoked). */
  retryAtOnce?: boolean;
  /** Dead now, whatever attempts are left (a remote server's non-retryable failure). */
  noRetry?: boolean;
}

/** What an attempt's outcome left the job as: ended (its final record's state, which a cancel's may have decided), or parked for its next attempt. */
export type Stored = FinalRecord["state"] | "failed";

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
    private readonly workerId: string,
  ) {}

  /**
   * A delivered job before it runs: its attempt number and error history
   * (earlier deliveries that never reported back count as lost runs), or
   * undefined when there is nothing to run: a bad message (terminated), a
   * cancelled job or one whose attempts are used up (settled and acked here).
   */
  async pickUp(msg: JobMessage, runId: string, parked?: ParkedJob): Promise<PickedUp | undefined> {
    const inbound = readJobMessage(msg, this.log, "jobs stream", parked);
    if (!inbound) return undefined;
    const { job } = inbound;
    const { attempt, history } = deliveryHistory(job, inbound.attemptOffset, msg.deliveryCount);
    const token = fencingToken(msg.streamSeq, msg.deliveryCount);
    const record: FencedStatus = { ...recordOf(job, "running", attempt, { started_at: new Date().toISOString(), error: history.at(-1) ?? null, owner: null }), fencing_token: token };
    if (this.cancels.has(job.job_id)) {
      await this.finish(job, { ...record, state: "cancelled", finished_at: new Date().toISOString() }, { state: "cancelled", error: cancelledError, durationMs: null }, runId);
      msg.ack();
      return undefined;
    }
    if (attempt > job.max_attempts) {
      // The last attempt's error ends the history already (a lost run when this is a redelivery): not listed twice.
      await this.bury(job, record, history.slice(0, -1), history.at(-1) ?? lostRun(attempt - 1), null, runId);
      msg.ack();
      return undefined;
    }
    return { inbound, job, attempt, history, record, fencingToken: token };
  }

  /** Stores the attempt's outcome, then acks: a crash before the ack reruns the job, never loses it. */
  async settle(msg: JobMessage, job: JobEnvelope, record: JobStatus, history: JobError[], ran: ExecutionOutcome): Promise<void> {
    if ((await this.record(job, record, history, ran, runIdOf(this.workerId, msg))) === "hand_back") msg.nak();
    else msg.ack();
  }

  /**
   * Stores an attempt's outcome; the caller acks the job's message after it
   * (a remote lease's from wherever its next call arrives), or hands it back
   * (nak) when asked to: a run killed by a drain past its grace.
   */
  async record(job: JobEnvelope, record: FencedStatus, history: JobError[], ran: ExecutionOutcome, runId: string, opts: OutcomeOptions = {}): Promise<Stored | "hand_back"> {
    const { log, metrics } = this;
    const logCtx = { job_id: job.job_id, correlation_id: job.correlation_id, attempt: record.attempts };
    const labels = { queue: job.queue, type: job.type };
    metrics.duration.observe(labels, ran.duration_ms / 1000);
    const ended = { ...record, finished_at: new Date().toISOString() };
    const outcome = ran.ok ? await this.#succeed(job, { ...ended, progress: 1 }, ran, runId) : ran;
    if ("stored" in outcome) {
      metrics.succeeded.inc(labels);
      log.debug({ ...logCtx, duration_ms: ran.duration_ms }, "job succeeded");
      return outcome.stored;
    }
    if (outcome.error.code === "shutdown") {
      // Killed by a drain past its grace: hand it back to run elsewhere (the attempt counts).
      log.warn(logCtx, "job handed back after the drain grace period");
      return "hand_back";
    } else if (outcome.error.code === "cancelled" || this.cancels.has(job.job_id)) {
      // Asked to stop while it ran: the cancel stands, however the attempt ended (a failure that
      // threw before the kill landed, a timeout's kill under way). Parked for a retry it would be
      // dropped unrun as cancelled later, with no record written for it.
      metrics.cancelled.inc(labels);
      const stored = await this.finish(job, ended, { state: "cancelled", error: cancelledError, durationMs: outcome.duration_ms }, runId);
      log.info(logCtx, "job cancelled while running");
      return stored;
    }
    metrics.failed.inc(labels);
    if (record.attempts < job.max_attempts && !opts.noRetry) {
      await this.#retryLater(job, record, [...history, outcome.error], opts.retryAtOnce === true);
      metrics.retried.inc(labels);
      log.warn({ ...logCtx, error: outcome.error }, "job attempt failed");
      return "failed";
    }
    const stored = await this.bury(job, ended, history, outcome.error, outcome.duration_ms, runId);
    metrics.dead.inc(labels);
    log.warn({ ...logCtx, error: outcome.error }, "job dead: attempts used up");
    return stored;
  }

  /**
   * Stores a succeeded run's final record. A result the NATS server cannot
   * take (over its max_payload) fails the attempt instead: retrying the
   * write could never succeed, and the job would run again after every lease.
   */
  async #succeed(job: JobEnvelope, record: JobStatus, ran: ExecutionOutcome & { ok: true }, runId: string): Promise<{ stored: FinalRecord["state"] } | (ExecutionOutcome & { ok: false })> {
    try {
      return { stored: await this.finish(job, record, { state: "succeeded", value: ran.value, error: null, durationMs: ran.duration_ms }, runId) };
    } catch (err) {
      if (!isMaxPayloadError(err)) throw err;
      const size = encodeJson(ran.value ?? null).byteLength;
      return { ok: false, duration_ms: ran.duration_ms, error: jobErrorOf("result_too_large", `the result is ${size} bytes: over what the NATS server takes in one message (max_payload)`) };
    }
  }

  /** The next attempt after the backoff: parked in the scheduler, or queued at once when there is none. */
  async #retryLater(job: JobEnvelope, record: JobStatus, errors: JobError[], atOnce: boolean): Promise<void> {
    const next: JobEnvelope = { ...job, errors, owner: record.owner, started_at: record.started_at };
    const delay = atOnce ? 0 : backoffDelay(job.backoff, record.attempts);
    if (delay > 0) await this.store.schedule(next, record.attempts, Date.now() + delay);
    else await this.store.enqueue(next, record.attempts);
  }

  /** Dead: kept in the dead-letter stream with every attempt's error, then finished. */
  async bury(job: JobEnvelope, record: JobStatus, history: JobError[], lastError: JobError, durationMs: number | null, runId: string): Promise<FinalRecord["state"]> {
    const errors = [...history, lastError];
    const dead = { ...record, state: "dead" as const, error: lastError, finished_at: record.finished_at ?? new Date().toISOString() };
    await this.store.bury({ job: { ...job, errors }, record: dead });
    return this.finish(job, dead, { state: "dead", error: lastError, durationMs }, runId);
  }

  /**
   * The final record is the durable outcome (a cancel may have claimed it
   * first: then the cancel stands, and keeps its own times). `runId` names
   * the run (see runIdOf): another run's record makes this one count after it.
   * No traceparent goes on its message: no span takes its parent from
   * there, and the run span (which ends once this is stored, and names the
   * job) already ties the result to its trace. The header cost about half
   * of what carrying a context with the job costs the supervisor and
   * nats-server.
   */
  async finish(job: JobEnvelope, record: JobStatus, end: Ending, runId: string): Promise<FinalRecord["state"]> {
    const stored = await this.store.settleResult(
      {
        ...record,
        state: end.state,
        error: end.error,
        finished_at: record.finished_at ?? new Date().toISOString(),
        result: end.value ?? null,
        duration_ms: end.durationMs,
        generation: job.generation,
      },
      runId,
    );
    if (this.cancels.has(job.job_id)) this.cancels.releaseLater(job.job_id);
    return stored.state;
  }
}
