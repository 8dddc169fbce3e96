/**
 * Every NATS subject, stream, consumer and bucket name Bosun uses is built
 * here, so the gateway, the supervisor and the docs can never disagree.
 */

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
export const controlSubject = (workerId: string, command: "recycle" | "submit"): string => `bosun.control.${workerId}.${command}`;
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
export const kvKeySubject = (bucket: string, key: string): string => `$KV.${bucket}.${key}`;

export const jobSubject = (queue: string): string => `bosun.jobs.${queue}`;
export const JOBS_WILDCARD = "bosun.jobs.>";

export const scheduledSubject = (queue: string): string => `bosun.scheduled.${queue}`;
export const SCHEDULED_WILDCARD = "bosun.scheduled.>";
/** All supervisors share one scheduler consumer: any of them moves due jobs. */
export const SCHEDULER_CONSUMER = "bosun_scheduler";

export const deadSubject = (queue: string, jobId: string): string => `bosun.dead.${queue}.${jobId}`;
export const DEAD_WILDCARD = "bosun.dead.>";

export const resultSubject = (jobId: string): string => `bosun.results.${jobId}`;
export const RESULTS_WILDCARD = "bosun.results.>";

export const heartbeatSubject = (workerId: string): string => `bosun.heartbeats.${workerId}`;
export const HEARTBEATS_WILDCARD = "bosun.heartbeats.>";
/**
 * Header of a supervisor's last heartbeat, sent as it begins to stop: every
 * reader drops that supervisor at once instead of waiting for it to miss
 * three periods, so it leaves the workers list and submits for a queue
 * nobody else serves get 422 at once.
 */
export const HEARTBEAT_STATE_HEADER = "Bosun-Heartbeat";
export const HEARTBEAT_LEAVING = "leaving";

/** Keys of the ops bucket. */
export const opsKeys = {
  submissionsPaused: "submissions_paused",
  queueSubmissionsPaused: (queue: string) => `queues.${queue}.submissions_paused`,
} as const;

/** One durable pull consumer per queue, shared by every supervisor serving it. */
export const queueConsumer = (queue: string): string => `bosun_q_${queue}`;

/** Names that are safe as a single NATS subject token and a consumer name. */
export const NAME_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

export const CORRELATION_HEADER = "x-correlation-id";

/** Headers on job messages (internal). */
export const headerNames = {
  /** Attempts used before this message: attempt = offset + delivery count. */
  attemptOffset: "Bosun-Attempt-Offset",
  /** Epoch ms at which a scheduled message is due. */
  dueAt: "Bosun-Due-At",
} as const;
