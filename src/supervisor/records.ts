import type { JetStreamManager } from "@nats-io/jetstream";
import { FINAL_STATES, JobResult, parseWith, RESULTS_WILDCARD, streams, type JobEnvelope, type JobState, type JobStatus } from "../contract/index.js";
import { scanLastPerSubject } from "../platform/stream-reads.js";

export interface StoredResult {
  result: JobResult;
  time: Date;
}

/** A job record as its envelope and attempt count imply; callers override the rest. */
export function recordOf(job: JobEnvelope, state: JobState, attempts: number, extra: Partial<JobStatus> = {}): JobStatus {
  return {
    job_id: job.job_id,
    type: job.type,
    queue: job.queue,
    tenant: job.tenant,
    state,
    attempts,
    max_attempts: job.max_attempts,
    created_at: job.created_at,
    started_at: null,
    finished_at: null,
    owner: null,
    progress: null,
    error: job.errors.at(-1) ?? null,
    correlation_id: job.correlation_id,
    ...extra,
  };
}

/**
 * A record as its result says it ended. A job that finishes fast never has a
 * "running" or final record written (the result alone is durable), so every
 * reader puts the two together through this.
 */
export function withResult(record: JobStatus, stored: StoredResult | undefined): JobStatus {
  if (!stored || FINAL_STATES.has(record.state)) return record;
  const { result, time } = stored;
  const finishedAt = time.getTime();
  return {
    ...record,
    state: result.state,
    attempts: result.attempts,
    error: result.error,
    owner: null,
    started_at: record.started_at ?? new Date(finishedAt - (result.duration_ms ?? 0)).toISOString(),
    finished_at: time.toISOString(),
    progress: result.state === "succeeded" ? 1 : record.progress,
  };
}

/** Every stored result by job id (the results stream keeps one per job). */
export async function storedResults(jsm: JetStreamManager): Promise<Map<string, StoredResult>> {
  const results = new Map<string, StoredResult>();
  const info = await jsm.streams.info(streams.results);
  await scanLastPerSubject(jsm, streams.results, RESULTS_WILDCARD, info.state.messages, (msg) => {
    const result = parseWith(JobResult, msg.json());
    results.set(result.job_id, { result, time: msg.time });
  });
  return results;
}
