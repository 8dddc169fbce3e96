import type { JetStreamManager } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import { FINAL_STATES, JobResult, JobStatus, parseWith, RESULTS_WILDCARD, streams, type JobEnvelope, type JobState } from "../contract/index.js";
import { scanLastPerSubject, scanLatest } from "../platform/stream-reads.js";

export interface StoredResult {
  result: JobResult;
  /** When JetStream stored it. */
  time: Date;
  seq: number;
  /** The Nats-Msg-Id it was written with: names the run that wrote it. */
  writeId?: string;
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

/**
 * Every job record as it stands now (see withResult), read once: the list
 * endpoint and the cleanup task. Linear in the records and results kept.
 */
export async function currentRecords(kv: KV, jsm: JetStreamManager): Promise<JobStatus[]> {
  const records: JobStatus[] = [];
  await scanLatest(kv, (entry) => {
    if (entry.operation !== "PUT") return;
    const record = JobStatus.safeParse(entry.json());
    if (record.success) records.push(record.data);
  });
  if (records.every((r) => FINAL_STATES.has(r.state))) return records;
  const results = await storedResults(jsm);
  return records.map((record) => withResult(record, results.get(record.job_id)));
}

/** Every stored result by job id (the results stream keeps one per job). */
async function storedResults(jsm: JetStreamManager): Promise<Map<string, StoredResult>> {
  const results = new Map<string, StoredResult>();
  const info = await jsm.streams.info(streams.results);
  await scanLastPerSubject(jsm, streams.results, RESULTS_WILDCARD, info.state.messages, (msg) => {
    const result = parseWith(JobResult, msg.json());
    results.set(result.job_id, { result, time: msg.time, seq: msg.seq });
  });
  return results;
}
