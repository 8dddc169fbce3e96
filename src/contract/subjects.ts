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
/**
 * "No tenant" where a tenant is part of a name (a lane's code, an
 * idempotency key's index entry): a tenant called so would share those
 * with the jobs of no tenant, so none may be (schemas.ts refuses it).
 */
export const NO_TENANT = "_";
/** What a request may name as a job id: the same alphabet (a KV key and a subject token). */
export const JOB_ID_PATTERN = new RegExp(`^[A-Za-z0-9_-]{1,${MAX_JOB_ID_LENGTH}}$`);
export const LANE_CODE_LENGTH = 8;
/** The ids Bosun gives out: the job's lane code, then a nuid (22 characters), base62 (see laneCode). */
export const JOB_ID_LENGTH = LANE_CODE_LENGTH + 22;
export const ISSUED_JOB_ID_PATTERN = new RegExp(`^[A-Za-z0-9]{${JOB_ID_LENGTH}}$`);
const LANE_CODE_PATTERN = new RegExp(`^[A-Za-z0-9]{${LANE_CODE_LENGTH}}$`);

/** The one check before a value becomes part of a subject, a consumer name or a KV key. */
export function token(value: string, what = "subject token", pattern = NAME_PATTERN): string {
  if (!pattern.test(value)) throw new BosunError("validation_error", `${what} must be one subject token of A-Z a-z 0-9 _ -`);
  return value;
}
/** Every per-job subject and key is built from an issued id (its lane is its first 8 characters). */
const jobToken = (jobId: string): string => token(jobId, "job id", ISSUED_JOB_ID_PATTERN);

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
  keysCreate: `${API_PREFIX}.keys.create`,
  keysList: `${API_PREFIX}.keys.list`,
  keysRevoke: `${API_PREFIX}.keys.revoke`,
  schedulesCreate: `${API_PREFIX}.schedules.create`,
  schedulesList: `${API_PREFIX}.schedules.list`,
  schedulesGet: `${API_PREFIX}.schedules.get`,
  schedulesDelete: `${API_PREFIX}.schedules.delete`,
  schedulesPause: `${API_PREFIX}.schedules.pause`,
  schedulesResume: `${API_PREFIX}.schedules.resume`,
  schedulesTrigger: `${API_PREFIX}.schedules.trigger`,
  jobsFilesList: `${API_PREFIX}.jobs.files.list`,
  jobsFilesGet: `${API_PREFIX}.jobs.files.get`,
  computeEnrollTokensCreate: `${API_PREFIX}.compute.enroll_tokens.create`,
  computeServersEnroll: `${API_PREFIX}.compute.servers.enroll`,
  computeServersList: `${API_PREFIX}.compute.servers.list`,
  computeServersRevoke: `${API_PREFIX}.compute.servers.revoke`,
  computeLease: `${API_PREFIX}.compute.jobs.lease`,
  computeHeartbeat: `${API_PREFIX}.compute.jobs.heartbeat`,
  computeResult: `${API_PREFIX}.compute.jobs.result`,
  computeFailed: `${API_PREFIX}.compute.jobs.failed`,
  computeOutcomes: `${API_PREFIX}.compute.jobs.outcomes`,
  computeFileCheck: `${API_PREFIX}.compute.jobs.file_check`,
  computeFileGet: `${API_PREFIX}.compute.jobs.file_get`,
  targetsList: `${API_PREFIX}.targets.list`,
  targetsActivate: `${API_PREFIX}.targets.activate`,
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
  /** API key id -> {hash of its secret, tenant | admin}; every supervisor follows it (a delete is a revoke). */
  keys: "bosun_keys",
  /** schedule id -> the schedule and its tick state (which ticks are handled, the last job). */
  schedules: "bosun_schedules",
  /** job id -> the remote compute lease that owns it (the job's envelope, server, lease id, fencing token, expiry); compare-and-set only. */
  leases: "bosun_leases",
  /** server id -> an enrolled compute server (hash of its credential, queues, target); a revoke deletes it. */
  computeServers: "bosun_compute_servers",
  /** hash of an enroll token -> its queues, target and expiry; using it deletes it (single use). */
  enrollTokens: "bosun_enroll_tokens",
  /** job id -> the list of its files (name, size, content type, time, fencing token): a job's files are listed by one read. */
  fileLists: "bosun_file_lists",
} as const;

/** Object store buckets. */
export const objectBuckets = {
  /** Job files: `<job_id>/<name>`, kept for the retention. */
  files: "bosun_files",
} as const;

/** A job file's object name in the files bucket (the name is checked by the caller: JobFileName). */
export const jobFileObject = (jobId: string, name: string): string => `${jobToken(jobId)}/${name}`;

/** The subject a KV bucket stores a key under (how a KV write is a stream publish). */
export const kvKeySubject = (bucket: string, key: string): string => `$KV.${bucket}.${jobToken(key)}`;

/**
 * A lane is (queue, target, band, tenant): every job belongs to one for life,
 * and its id starts with the lane's code, so every subject of a job is built
 * from its id alone.
 */
export type Band = "h" | "n" | "l";
export const DEFAULT_TARGET = "default";
export const bandOf = (priority: number): Band => (priority > 0 ? "h" : priority < 0 ? "l" : "n");
export const laneOf = (jobId: string): string => jobToken(jobId).slice(0, LANE_CODE_LENGTH);
/** Only a 30-character id can name a job: anything else is unknown without a read. */
export const isJobId = (jobId: string): boolean => ISSUED_JOB_ID_PATTERN.test(jobId);
const laneToken = (lane: string): string => token(lane, "lane", LANE_CODE_PATTERN);

export const jobSubject = (jobId: string): string => `bosun.jobs.${laneOf(jobId)}.${jobId}`;
export const laneJobsFilter = (lane: string): string => `bosun.jobs.${laneToken(lane)}.*`;
export const JOBS_WILDCARD = "bosun.jobs.>";

export const scheduledSubject = (jobId: string): string => `bosun.scheduled.${laneOf(jobId)}.${jobId}`;
export const laneScheduledFilter = (lane: string): string => `bosun.scheduled.${laneToken(lane)}.*`;
export const SCHEDULED_WILDCARD = "bosun.scheduled.>";
/** All supervisors share one scheduler consumer: any of them moves due jobs. */
export const SCHEDULER_CONSUMER = "bosun_scheduler";

export const deadSubject = (jobId: string): string => `bosun.dead.${laneOf(jobId)}.${jobId}`;
export const laneDeadFilter = (lane: string): string => `bosun.dead.${laneToken(lane)}.*`;
export const DEAD_WILDCARD = "bosun.dead.>";

export const resultSubject = (jobId: string): string => `bosun.results.${laneOf(jobId)}.${jobId}`;
export const RESULTS_WILDCARD = "bosun.results.>";
/** The job id is the last token of every per-job subject. */
export const jobIdOfSubject = (subject: string): string => subject.slice(subject.lastIndexOf(".") + 1);
/** The lane is the third token of every per-job subject (bosun.<kind>.<lane>.<job_id>). */
export const laneOfSubject = (subject: string): string => subject.split(".")[2] ?? "";

export const HEARTBEATS_PREFIX = "bosun.heartbeats.";
export const heartbeatSubject = (workerId: string): string => `${HEARTBEATS_PREFIX}${token(workerId, "worker id")}`;
export const HEARTBEATS_WILDCARD = "bosun.heartbeats.>";
/**
 * Header of a stopping supervisor's heartbeats, from the moment it begins
 * to stop until it has drained: every reader drops that supervisor from the
 * live ones at once instead of waiting for it to miss three periods, so it
 * leaves the workers list and submits for a queue nobody else serves get
 * 422 at once; the jobs it still runs (`queue_use`) keep counting against
 * their queues' limits.
 */
export const HEARTBEAT_STATE_HEADER = "Bosun-Heartbeat";
export const HEARTBEAT_LEAVING = "leaving";

/** Keys of the ops bucket. */
export const QUEUE_LIMIT_NAMES = ["max_concurrency", "rate_limit", "max_pending"] as const;
export type QueueLimitName = (typeof QUEUE_LIMIT_NAMES)[number];

export const opsKeys = {
  submissionsPaused: "submissions_paused",
  queueSubmissionsPaused: (queue: string) => `queues.${token(queue, "queue")}.submissions_paused`,
  /** One key per limit (`max_concurrency`, `rate_limit`, `max_pending`), its value JSON; deleted when cleared. */
  queueLimit: (queue: string, limit: QueueLimitName) => `queues.${token(queue, "queue")}.${limit}`,
  /** false: every compute route answers 404 (default true). */
  computeEndpointsEnabled: "compute_endpoints_enabled",
  /** The target a queue's new submissions go to (default `default`). */
  queueActiveTarget: (queue: string) => `queues.${token(queue, "queue")}.active_target`,
} as const;

/**
 * A job's fencing token for one delivery of one of its messages: every
 * attempt, re-lease or redelivery of a job is a later message (a higher
 * stream sequence) or a later delivery of the same one, so the token grows
 * with every lease without a write of its own.
 */
export const MAX_FENCED_DELIVERIES = 999;
export const fencingToken = (streamSeq: number, deliveryCount: number): number => streamSeq * (MAX_FENCED_DELIVERIES + 1) + Math.min(Math.max(deliveryCount, 1), MAX_FENCED_DELIVERIES);

/** One durable pull consumer per lane, shared by every supervisor serving the lane's queue. */
export const LANE_CONSUMER_PREFIX = "bosun_l_";
export const laneConsumer = (lane: string): string => `${LANE_CONSUMER_PREFIX}${laneToken(lane)}`;

export const CORRELATION_HEADER = "x-correlation-id";

/** Headers on job messages (internal). */
export const headerNames = {
  /** Attempts used before this message: attempt = offset + delivery count. */
  attemptOffset: "Bosun-Attempt-Offset",
  /** Epoch ms at which a scheduled message is due. */
  dueAt: "Bosun-Due-At",
} as const;
