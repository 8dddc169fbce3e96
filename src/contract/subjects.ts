/**
 * Every NATS subject, stream, consumer and bucket name Bosun uses is built
 * here, so the gateway, the supervisor and the docs can never disagree.
 */

import { createHash } from "node:crypto";

export const SERVICE_NAME = "bosun";
export const API_PREFIX = "bosun.api";

/** Request/reply endpoints of the `bosun` NATS service, by endpoint name. */
export const api = {
  jobsSubmit: `${API_PREFIX}.jobs.submit`,
  jobsSubmitBatch: `${API_PREFIX}.jobs.submit_batch`,
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
  /** Interim records of running jobs (owner, progress), keyed by job id; removed when the attempt ends. */
  jobs: "bosun_jobs",
  /** lane code -> {queue, target, band, tenant}: written once per lane, cached forever. */
  lanes: "bosun_lanes",
  /** Ops / cutover flags. */
  ops: "bosun_ops",
  /** idempotency key -> job id, expiring after the idempotency window. */
  idempotency: "bosun_idempotency",
  /** job id -> cancel request, kept until its job ends; every supervisor watches it. */
  cancels: "bosun_cancels",
} as const;

/** The subject a KV bucket stores a key under (how a KV write is a stream publish). */
export const kvKeySubject = (bucket: string, key: string): string => `$KV.${bucket}.${key}`;

/**
 * A lane is (queue, target, band, tenant): every job belongs to one for life,
 * and its id starts with the lane's code, so every subject of a job is built
 * from its id alone.
 */
export const LANE_CODE_LENGTH = 8;
export const JOB_ID_LENGTH = LANE_CODE_LENGTH + 22;
export type Band = "h" | "n" | "l";
export const DEFAULT_TARGET = "default";
export const bandOf = (priority: number): Band => (priority > 0 ? "h" : priority < 0 ? "l" : "n");
const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
export function laneCode(queue: string, target: string, band: Band, tenant: string | null): string {
  const digest = createHash("sha256").update(`${queue}\n${target}\n${band}\n${tenant ?? "_"}`).digest();
  let code = "";
  for (let i = 0; i < LANE_CODE_LENGTH; i++) code += BASE62[digest[i]! % 62];
  return code;
}
export const laneOf = (jobId: string): string => jobId.slice(0, LANE_CODE_LENGTH);
/** Only a 30-character id can name a job: anything else is unknown without a read. */
export const isJobId = (jobId: string): boolean => jobId.length === JOB_ID_LENGTH && /^[A-Za-z0-9]+$/.test(jobId);

export const jobSubject = (jobId: string): string => `bosun.jobs.${laneOf(jobId)}.${jobId}`;
export const laneJobsFilter = (lane: string): string => `bosun.jobs.${lane}.*`;
export const JOBS_WILDCARD = "bosun.jobs.>";

export const scheduledSubject = (jobId: string): string => `bosun.scheduled.${laneOf(jobId)}.${jobId}`;
export const laneScheduledFilter = (lane: string): string => `bosun.scheduled.${lane}.*`;
export const SCHEDULED_WILDCARD = "bosun.scheduled.>";
/** All supervisors share one scheduler consumer: any of them moves due jobs. */
export const SCHEDULER_CONSUMER = "bosun_scheduler";

export const deadSubject = (jobId: string): string => `bosun.dead.${laneOf(jobId)}.${jobId}`;
export const laneDeadFilter = (lane: string): string => `bosun.dead.${lane}.*`;
export const DEAD_WILDCARD = "bosun.dead.>";

export const resultSubject = (jobId: string): string => `bosun.results.${laneOf(jobId)}.${jobId}`;
export const RESULTS_WILDCARD = "bosun.results.>";
/** The job id is the last token of every per-job subject. */
export const jobIdOfSubject = (subject: string): string => subject.slice(subject.lastIndexOf(".") + 1);
/** The lane is the third token of every per-job subject (bosun.<kind>.<lane>.<job_id>). */
export const laneOfSubject = (subject: string): string => subject.split(".")[2] ?? "";

export const heartbeatSubject = (workerId: string): string => `bosun.heartbeats.${workerId}`;
export const HEARTBEATS_WILDCARD = "bosun.heartbeats.>";

/** Keys of the ops bucket. */
export const opsKeys = {
  submissionsPaused: "submissions_paused",
  queueSubmissionsPaused: (queue: string) => `queues.${queue}.submissions_paused`,
} as const;

/** One durable pull consumer per lane, shared by every supervisor serving the lane's queue. */
export const LANE_CONSUMER_PREFIX = "bosun_l_";
export const laneConsumer = (lane: string): string => `${LANE_CONSUMER_PREFIX}${lane}`;

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
