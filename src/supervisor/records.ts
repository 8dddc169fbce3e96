import type { JobEnvelope, JobState, JobStatus } from "../contract/index.js";

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
