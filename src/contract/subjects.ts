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
} as const;
export type ApiEndpoint = keyof typeof api;

export const streams = {
  /** Work-queue stream: one message per runnable job attempt; an ack removes it. */
  jobs: "BOSUN_JOBS",
  /** One result message per finished job, read back by subject. */
  results: "BOSUN_RESULTS",
  /** Latest WorkerInfo per supervisor. */
  heartbeats: "BOSUN_HEARTBEATS",
} as const;

export const buckets = {
  /** Job records (status, owner, attempts), keyed by job id. */
  jobs: "bosun_jobs",
  /** Ops / cutover flags. */
  ops: "bosun_ops",
} as const;

/** The subject a KV bucket stores a key under (how a KV write is a stream publish). */
export const kvKeySubject = (bucket: string, key: string): string => `$KV.${bucket}.${key}`;

export const jobSubject = (queue: string): string => `bosun.jobs.${queue}`;
export const JOBS_WILDCARD = "bosun.jobs.>";

export const resultSubject = (jobId: string): string => `bosun.results.${jobId}`;
export const RESULTS_WILDCARD = "bosun.results.>";

export const heartbeatSubject = (workerId: string): string => `bosun.heartbeats.${workerId}`;
export const HEARTBEATS_WILDCARD = "bosun.heartbeats.>";

/** One durable pull consumer per queue, shared by every supervisor serving it. */
export const queueConsumer = (queue: string): string => `bosun_q_${queue}`;

/** Names that are safe as a single NATS subject token and a consumer name. */
export const NAME_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

export const CORRELATION_HEADER = "x-correlation-id";
