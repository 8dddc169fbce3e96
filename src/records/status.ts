/**
 * A job's status put together from where its state lives (pure functions,
 * shared by the supervisor's reads, the listing and the gateway's event
 * stream):
 *
 * - its final record on the results stream, once it has ended;
 * - else the newest of: its message in BOSUN_JOBS (queued, or running
 *   while unacked), its message in BOSUN_SCHEDULED (delayed, or failed and
 *   waiting out its backoff), and the interim record of a running attempt.
 *
 * "Newest" is by the job's own progress (generation, attempts used, phase),
 * not by clocks, so a read never goes back to an earlier state.
 */
import {
  type FinalRecord,
  type JobError,
  type InterimRecord,
  type JobEnvelope,
  type JobResult,
  type JobStatus,
  type JobState,
} from "../contract/index.js";

/** A job message as read back: the envelope and the attempts used before it. */
export interface ParkedJob {
  job: JobEnvelope;
  offset: number;
}

export interface JobSources {
  final?: FinalRecord | null;
  queued?: ParkedJob | null;
  scheduled?: ParkedJob | null;
  interim?: InterimRecord | null;
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
    started_at: job.started_at,
    finished_at: null,
    owner: job.owner,
    progress: null,
    error: job.errors.at(-1) ?? null,
    correlation_id: job.correlation_id,
    ...(job.schedule_id !== undefined && { schedule_id: job.schedule_id, tick_at: job.tick_at }),
    ...extra,
  };
}

export const cancelledError = { code: "cancelled", message: "job was cancelled" } as const;
export const lostRun = (attempt: number): JobError => ({ code: "lost", message: `attempt ${attempt} never reported back (its supervisor or compute server stopped)` });

/** A delivery's attempt number and the errors before it: earlier deliveries of the same message that never reported back are lost runs. */
export function deliveryHistory(job: JobEnvelope, attemptOffset: number, deliveryCount: number): { attempt: number; history: JobError[] } {
  const attempt = attemptOffset + deliveryCount;
  const lost = Array.from({ length: deliveryCount - 1 }, (_, i) => lostRun(attempt - deliveryCount + 1 + i));
  return { attempt, history: [...job.errors, ...lost] };
}

export const queuedStatus = ({ job, offset }: ParkedJob): JobStatus => recordOf(job, "queued", offset);
/** Parked before its first attempt: scheduled; after a failed one: failed (waiting out its backoff). */
export const scheduledStatus = ({ job, offset }: ParkedJob): JobStatus => recordOf(job, offset > 0 ? "failed" : "scheduled", offset);

type Rank = [generation: number, attemptsUsed: number, phase: number];
const later = (a: Rank, b: Rank): boolean => a[0] !== b[0] ? a[0] > b[0] : a[1] !== b[1] ? a[1] > b[1] : a[2] > b[2];

/** The job's status, or null when nothing of it is stored (unknown, or past its retention). */
export function statusOf(s: JobSources): JobStatus | null {
  const candidates: [Rank, () => JobStatus][] = [];
  // Parked after `offset` attempts, then moved to the queue, then running the next one.
  if (s.scheduled) candidates.push([[s.scheduled.job.generation, s.scheduled.offset, 1], () => scheduledStatus(s.scheduled!)]);
  if (s.queued) {
    candidates.push([[s.queued.job.generation, s.queued.offset, 2], () => queuedStatus(s.queued!)]);
    // A running job's message stays in BOSUN_JOBS until it is settled: an interim record
    // without one is what a supervisor that died left behind, and means nothing.
    const interim = s.interim;
    if (interim && interim.state === "running" && interim.generation === s.queued.job.generation) {
      candidates.push([[interim.generation, interim.attempts - 1, 3], () => stripInterim(interim)]);
    }
  }
  const final = s.final;
  // A retried dead job starts a new generation; until the old result is dropped it is the newer state.
  if (final && candidates.every(([rank]) => rank[0] <= final.generation)) return finalStatus(final);
  let best: [Rank, () => JobStatus] | undefined;
  for (const c of candidates) if (!best || later(c[0], best[0])) best = c;
  return best ? best[1]() : null;
}

function stripInterim(record: InterimRecord): JobStatus {
  const { generation: _generation, ...status } = record;
  return status;
}

export function finalStatus(record: FinalRecord): JobStatus {
  const { result: _result, duration_ms: _duration, generation: _generation, ...status } = record;
  return status;
}

export function resultOf(record: FinalRecord): JobResult {
  return {
    job_id: record.job_id,
    state: record.state,
    result: record.result,
    error: record.error,
    attempts: record.attempts,
    duration_ms: record.duration_ms,
    correlation_id: record.correlation_id,
  };
}
