/**
 * What a caller does to a job already accepted: read its status and result,
 * list jobs, cancel one, retry a dead one (the submit side is intake.ts).
 */
import type { Logger } from "pino";
import {
  BosunError,
  FINAL_STATES,
  streams,
  type CancelReply,
  type JobEnvelope,
  type JobResult,
  type JobStatus,
  type ListJobsReply,
  type ListJobsRequest,
  type SubmitReply,
} from "../contract/index.js";
import type { SupervisorMetrics } from "../platform/metrics.js";
import { cancelledError, listJobs, requireStatus, resultOf, type CancelRegistry, type JobStore, type LaneRegistry } from "../records/index.js";

export interface JobActionsDeps {
  store: JobStore;
  cancels: CancelRegistry;
  lanes: LaneRegistry;
  metrics: SupervisorMetrics;
  log: Logger;
}

export class JobActions {
  constructor(private readonly deps: JobActionsDeps) {}

  async status(jobId: string): Promise<JobStatus> {
    return this.deps.store.status(jobId);
  }

  async result(jobId: string): Promise<JobResult> {
    const { store } = this.deps;
    const sources = await store.sources(jobId);
    const status = requireStatus(jobId, sources);
    if (sources.final && FINAL_STATES.has(status.state)) return resultOf(sources.final);
    throw new BosunError("not_finished", `job ${jobId} is ${status.state}`, { state: status.state });
  }

  /**
   * A queued or scheduled job never runs (its message is removed); a running
   * one has its process killed by whichever supervisor runs it. Cancelling
   * twice is harmless; cancelling a finished job is a conflict that changes
   * nothing.
   */
  async cancel(jobId: string): Promise<CancelReply> {
    const { store, cancels, log } = this.deps;
    const sources = await store.sources(jobId);
    const record = requireStatus(jobId, sources);
    if (record.state === "cancelled") return { job_id: jobId, state: "cancelled" };
    if (FINAL_STATES.has(record.state)) throw new BosunError("conflict", `job ${jobId} is ${record.state} already`, { state: record.state });
    await cancels.request(jobId);
    log.info({ job_id: jobId, correlation_id: record.correlation_id, state: record.state }, "job cancel requested");
    if (record.state === "running") return { job_id: jobId, state: "running", cancel_requested: true };
    const waiting = (sources.queued ?? sources.scheduled)?.job;
    const generation = waiting?.generation ?? 0;
    const claimed = await store.claimResult({
      ...record,
      state: "cancelled",
      owner: record.owner,
      error: cancelledError,
      finished_at: new Date().toISOString(),
      progress: record.progress,
      result: null,
      duration_ms: null,
      generation,
    });
    if (!claimed) {
      // It ran and finished meanwhile (fast jobs never show as running).
      const now = await store.status(jobId);
      if (now.state === "cancelled") return { job_id: jobId, state: "cancelled" };
      throw new BosunError("conflict", `job ${jobId} is ${now.state} already`, { state: now.state });
    }
    // Its messages go, so it counts nowhere as waiting; a copy already in a supervisor's
    // hands finds the request (kept a while after this) and is dropped unrun.
    if (sources.seqs.queued !== undefined) await store.drop(streams.jobs, sources.seqs.queued);
    if (sources.seqs.scheduled !== undefined) await store.drop(streams.scheduled, sources.seqs.scheduled);
    cancels.releaseLater(jobId);
    this.deps.metrics.cancelled.inc({ queue: record.queue, type: record.type });
    return { job_id: jobId, state: "cancelled" };
  }

  /** Requeues a dead job with fresh attempts (its dead letter keeps the old errors). */
  async retry(jobId: string): Promise<SubmitReply> {
    const { store, log } = this.deps;
    const sources = await store.sources(jobId);
    const record = requireStatus(jobId, sources);
    if (record.state !== "dead") {
      throw new BosunError("conflict", `only dead jobs can be retried; job ${jobId} is ${record.state}`, { state: record.state });
    }
    const dead = await store.deadLetter(jobId);
    if (!dead) throw new BosunError("conflict", `job ${jobId} has no dead letter to retry from`);
    const job: JobEnvelope = { ...dead.letter.job, generation: dead.letter.job.generation + 1, errors: [], owner: null, started_at: null };
    // Queued first, so no crash after this point can lose the job: the message id (job,
    // generation, attempt) makes a concurrent retry of the same dead job the same message,
    // and its newer generation outranks the old final record for every reader. The old
    // final record and dead letter go last, by sequence, so a new death meanwhile stays.
    await store.enqueue(job, 0);
    if (sources.seqs.final !== undefined) await store.drop(streams.results, sources.seqs.final);
    await store.drop(streams.dead, dead.seq);
    log.info({ job_id: jobId, correlation_id: job.correlation_id, generation: job.generation }, "dead job requeued");
    return { job_id: jobId, state: "queued" };
  }

  list(filter: ListJobsRequest): Promise<ListJobsReply> {
    return listJobs(this.deps.store.jsm, this.deps.store.log, this.deps.lanes, filter);
  }
}
