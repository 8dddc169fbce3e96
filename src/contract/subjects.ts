/**
 * Every NATS subject, stream, consumer and bucket name Bosun uses is built
 * here, so the gateway, the supervisor and the docs can never disagree.
 * Each variable part goes through `token()`: a subject is built only from
 * checked tokens, so a bad id throws here, never in a NATS write.
 */
import { BosunError } from "./errors.js";
import { MAX_JOB_ID_LENGTH, MAX_NAME_LENGTH } from "./limits.js";

/** Names that are safe as a single NATS subject token and a consumer name. */
export const NAME_PATTERN = new RegExp(`^[A-Za-z0-9_-]{1,${MAX_NAME_LENGTH}}$`);
/** Job ids: the same alphabet (a KV key and a subject token). */
export const JOB_ID_PATTERN = new RegExp(`^[A-Za-z0-9_-]{1,${MAX_JOB_ID_LENGTH}}$`);

/** The one check before a value becomes part of a subject, a consumer name or a KV key. */
export function token(value: string, what = "subject token", pattern = NAME_PATTERN): string {
  if (!pattern.test(value)) throw new BosunError("validation_error", `${what} must be one subject token of A-Z a-z 0-9 _ -`);
  return value;
}
const jobToken = (jobId: string): string => token(jobId, "job id", JOB_ID_PATTERN);

export const SERVICE_NAME = "bosun";
export const API_PREFIX = "bosun.api";

/** Request/reply endpoints of the `bosun` NATS service, by endpoint name. */
export const api = {
  jobsSubmit: `${API_PREFIX}.jobs.submit`,
  jobsGet: `${API_PREFIX}.jobs.get`,
  jobsResult: `${API_PREFIX}.jobs.result`,
  jobsCancel: `${API_PREFIX}.jobs.cancel`,
  jobsRetry: `${API_PREFIX}.jobs.retry`,
  jobsList: `${API_PREFIX}.jobs.list`,
  workersList: `${API_PREFIX}.workers.list`,
  workersRecycle: `${API_PREFIX}.workers.recycle`,
  queueStatus: `${API_PREFIX}.queue.status`,
  opsGet: `${API_PREFIX}.ops.get`,
  opsSet: `${API_PREFIX}.ops.set`,
} as const;

/** A command addressed to one supervisor (not load-balanced like the API). */
export const controlSubject = (workerId: string, command: "recycle" | "submit"): string => `bosun.control.${token(workerId, "worker id")}.${command}`;
export const CONTROL_WILDCARD = "bosun.control.>";
export type ApiEndpoint = keyof typeof api;

export const streams = {
  /** Work-queue stream: one message per runnable job attempt; an ack removes it. */
  jobs: "BOSUN_JOBS",
  /** One result message per finished job, read back by subject. */
  results: "BOSUN_RESULTS",
  /** Latest WorkerInfo per supervisor. */
  heartbeats: "BOSUN_HEARTBEATS",
  /** Work-queue stream of jobs waiting for a due time (delayed jobs, retry backoff). */
  scheduled: "BOSUN_SCHEDULED",
  /** Dead jobs with every attempt's error, one message per job. */
  dead: "BOSUN_DEAD",
} as const;

export const buckets = {
  /** Job records (status, owner, attempts), keyed by job id. */
  jobs: "bosun_jobs",
  /** Ops / cutover flags. */
  ops: "bosun_ops",
  /** idempotency key -> job id, expiring after the idempotency window. */
  idempotency: "bosun_idempotency",
  /** job id -> cancel request; every supervisor watches it. */
  cancels: "bosun_cancels",
} as const;

/** The subject a KV bucket stores a key under (how a KV write is a stream publish). */
export const kvKeySubject = (bucket: string, key: string): string => `$KV.${bucket}.${jobToken(key)}`;

export const jobSubject = (queue: string): string => `bosun.jobs.${token(queue, "queue")}`;
export const JOBS_WILDCARD = "bosun.jobs.>";

export const scheduledSubject = (queue: string): string => `bosun.scheduled.${token(queue, "queue")}`;
export const SCHEDULED_WILDCARD = "bosun.scheduled.>";
/** All supervisors share one scheduler consumer: any of them moves due jobs. */
export const SCHEDULER_CONSUMER = "bosun_scheduler";

export const deadSubject = (queue: string, jobId: string): string => `bosun.dead.${token(queue, "queue")}.${jobToken(jobId)}`;
/** Every dead letter of one queue. */
export const deadQueueWildcard = (queue: string): string => `bosun.dead.${token(queue, "queue")}.*`;
export const DEAD_WILDCARD = "bosun.dead.>";

export const RESULTS_PREFIX = "bosun.results.";
export const resultSubject = (jobId: string): string => `${RESULTS_PREFIX}${jobToken(jobId)}`;
export const RESULTS_WILDCARD = "bosun.results.>";

export const HEARTBEATS_PREFIX = "bosun.heartbeats.";
export const heartbeatSubject = (workerId: string): string => `${HEARTBEATS_PREFIX}${token(workerId, "worker id")}`;
export const HEARTBEATS_WILDCARD = "bosun.heartbeats.>";

/** Keys of the ops bucket. */
export const opsKeys = {
  submissionsPaused: "submissions_paused",
  queueSubmissionsPaused: (queue: string) => `queues.${token(queue, "queue")}.submissions_paused`,
} as const;

/** One durable pull consumer per queue, shared by every supervisor serving it. */
export const queueConsumer = (queue: string): string => `bosun_q_${token(queue, "queue")}`;

export const CORRELATION_HEADER = "x-correlation-id";

/** Headers on job messages (internal). */
export const headerNames = {
  /** Attempts used before this message: attempt = offset + delivery count. */
  attemptOffset: "Bosun-Attempt-Offset",
  /** Epoch ms at which a scheduled message is due. */
  dueAt: "Bosun-Due-At",
} as const;
