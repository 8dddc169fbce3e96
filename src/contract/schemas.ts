/**
 * The zod schemas of every JSON document on the wire (HTTP and NATS).
 * Types are inferred from them, so a shape is written exactly once.
 */
import { z } from "zod";
import { DEFAULT_TARGET, JOB_ID_PATTERN, NAME_PATTERN, NO_TENANT } from "./subjects.js";
import { errorCodes, type ErrorCode } from "./errors.js";
import {
  MAX_ATTEMPTS,
  MAX_BATCH,
  MAX_CORRELATION_ID_LENGTH,
  MAX_CURSOR_LENGTH,
  MAX_DELAY_MS,
  MAX_GENERATION,
  MAX_IDEMPOTENCY_KEY_LENGTH,
  MAX_JOB_ERROR_CODE_LENGTH,
  MAX_JOB_ERROR_MESSAGE_LENGTH,
  MAX_JOB_ID_LENGTH,
  MAX_JOB_TYPE_LENGTH,
  MAX_LIST_LIMIT,
  MAX_NAME_LENGTH,
  MAX_PENDING_LIMIT,
  MAX_POOL_SIZE,
  MAX_QUEUE_CONCURRENCY,
  MAX_RATE_LIMIT,
  MAX_RATE_WINDOW_MS,
  MAX_PRIORITY,
  MAX_TIMEOUT_MS,
  MAX_TRACEPARENT_LENGTH,
  MAX_WAIT_MS,
} from "./limits.js";

export const name = (what: string) =>
  z.string().regex(NAME_PATTERN, `${what} must be 1-${MAX_NAME_LENGTH} characters of A-Z a-z 0-9 _ -`);
/** A tenant a caller names (a job's, a schedule's, a key's); not NO_TENANT. Records stored before it was refused read with name("tenant"). */
export const TenantName = name("tenant").refine((t) => t !== NO_TENANT, `tenant "${NO_TENANT}" is reserved: it stands for no tenant`);
const ms = z.number().int().nonnegative();
export const isoTime = z.iso.datetime({ offset: true });
/** Short free text read back from NATS (host names, consumer names): bounded, no control characters. */
const label = (max = 255) => z.string().max(max);
// eslint-disable-next-line no-control-regex -- the point is to refuse control characters
const NO_CONTROL_CHARACTERS = /^[^\u0000-\u001f\u007f]*$/;

/** A handler name: printable, so it is safe in error messages, headers and logs. */
export const JobType = z.string().min(1).max(MAX_JOB_TYPE_LENGTH).regex(NO_CONTROL_CHARACTERS, "type must not contain control characters");
/** Visible ASCII (and spaces): it travels in HTTP and NATS headers. */
export const CorrelationId = z
  .string()
  .regex(new RegExp(`^[\\x20-\\x7e]{1,${MAX_CORRELATION_ID_LENGTH}}$`), `a correlation id is 1-${MAX_CORRELATION_ID_LENGTH} printable ASCII characters`);
/** A correlation id from a header (HTTP or NATS): kept when valid, else ignored so the caller makes one. */
export const headerCorrelationId = (value: unknown): string | undefined =>
  // Most requests come without one: a failed parse builds its error result (about 1 % of a gateway's CPU).
  value !== undefined && CorrelationId.safeParse(value).success ? (value as string) : undefined;

export const Backoff = z
  .object({
    type: z.enum(["exponential", "fixed"]),
    delay_ms: ms.max(MAX_TIMEOUT_MS),
    max_delay_ms: ms.max(MAX_TIMEOUT_MS).optional(),
    /** Spread each delay by up to ±this fraction (default 0.2 exponential, 0 fixed). */
    jitter: z.number().min(0).max(1).optional(),
  })
  .strict();
export type Backoff = z.infer<typeof Backoff>;

export const JobState = z.enum([
  "scheduled",
  "queued",
  "running",
  "succeeded",
  "failed",
  "cancelled",
  "dead",
]);
export type JobState = z.infer<typeof JobState>;
export const FINAL_STATES: ReadonlySet<JobState> = new Set(["succeeded", "cancelled", "dead"]);

/**
 * Any JSON value. Wire documents come out of JSON.parse, so they are JSON by
 * construction; z.json() would re-walk every payload for nothing.
 */
export const JsonValue = z.unknown().describe("any JSON value");

/** The fields of a submit, before the checks across fields (schedules reuse them for their job). */
export const SubmitFields = z
  .object({
    type: JobType,
    payload: JsonValue.default({}),
    queue: name("queue").default("default"),
    tenant: TenantName.optional(),
    idempotency_key: z.string().min(1).max(MAX_IDEMPOTENCY_KEY_LENGTH).optional(),
    delay_ms: ms.max(MAX_DELAY_MS).optional(),
    run_at: isoTime.optional(),
    timeout_ms: z.number().int().positive().max(MAX_TIMEOUT_MS).optional(),
    max_attempts: z.number().int().min(1).max(MAX_ATTEMPTS).optional(),
    backoff: Backoff.optional(),
    priority: z.number().int().min(-MAX_PRIORITY).max(MAX_PRIORITY).optional(),
    correlation_id: CorrelationId.optional(),
    /** NATS API only (HTTP uses ?wait_ms): reply when the job ends or the wait runs out. */
    wait_ms: ms.max(MAX_WAIT_MS).optional(),
  })
  .strict();

export const SubmitRequest = SubmitFields.refine((s) => s.delay_ms === undefined || s.run_at === undefined, {
  message: "give delay_ms or run_at, not both",
  path: ["run_at"],
});
export type SubmitRequest = z.infer<typeof SubmitRequest>;

/** For endpoints that take no input: an empty body, or {}. */
export const EmptyRequest = z.object({}).strict();

/** Job ids are nuids; anything else cannot name a job (and is no valid KV key or subject token). */
export const JobId = z.string().regex(JOB_ID_PATTERN, `a job id is 1-${MAX_JOB_ID_LENGTH} of A-Z a-z 0-9 _ -`);

export const JobIdRequest = z.object({ job_id: JobId }).strict();
export type JobIdRequest = z.infer<typeof JobIdRequest>;

export const ListJobsRequest = z
  .object({
    state: JobState.optional(),
    queue: name("queue").optional(),
    tenant: name("tenant").optional(),
    type: JobType.optional(),
    limit: z.coerce.number().int().min(1).max(MAX_LIST_LIMIT).default(20),
    /** `next_cursor` of the previous page. */
    cursor: z.string().min(1).max(MAX_CURSOR_LENGTH).optional(),
  })
  .strict();
export type ListJobsRequest = z.infer<typeof ListJobsRequest>;

/** An attempt's error; jobErrorOf (errors.ts) cuts handler messages to fit. */
export const JobError = z.object({ code: z.string().max(MAX_JOB_ERROR_CODE_LENGTH), message: z.string().max(MAX_JOB_ERROR_MESSAGE_LENGTH) });
export type JobError = z.infer<typeof JobError>;

/**
 * Who ran a job: a supervisor's execution process (pid), or with thread
 * isolation its thread (pid = the supervisor's, and thread_id); or a remote
 * compute server (server_id).
 */
export const SupervisorOwner = z.object({ worker_id: name("worker_id"), pid: z.number().int(), thread_id: z.number().int().optional() });
export const ServerOwner = z.object({ server_id: name("server_id") });
export const Owner = z.union([SupervisorOwner, ServerOwner]);
export type Owner = z.infer<typeof Owner>;


/** Grows with every lease of a job (see fencingToken in subjects.ts). */
export const FencingToken = z.number().int().positive().max(Number.MAX_SAFE_INTEGER);

/** A job made by a schedule names it and the tick it was made for (absent on other jobs). */
const scheduleOrigin = {
  schedule_id: name("schedule_id").optional(),
  tick_at: isoTime.optional(),
};
export type ScheduleOrigin = { schedule_id: string; tick_at: string };

/** What GET /api/jobs/{id} and bosun.api.jobs.get answer. */
export const JobStatus = z.object({
  job_id: JobId,
  type: JobType,
  queue: name("queue"),
  tenant: name("tenant").nullable(),
  state: JobState,
  attempts: z.number().int(),
  max_attempts: z.number().int(),
  created_at: isoTime,
  started_at: isoTime.nullable(),
  finished_at: isoTime.nullable(),
  owner: Owner.nullable(),
  progress: z.number().nullable(),
  error: JobError.nullable(),
  correlation_id: z.string().max(MAX_CORRELATION_ID_LENGTH),
  ...scheduleOrigin,
});
export type JobStatus = z.infer<typeof JobStatus>;

export const JobResult = z.object({
  job_id: JobId,
  state: JobState,
  result: JsonValue,
  error: JobError.nullable(),
  attempts: z.number().int(),
  duration_ms: z.number().int().nullable(),
  correlation_id: z.string().max(MAX_CORRELATION_ID_LENGTH),
});
export type JobResult = z.infer<typeof JobResult>;

export const SubmitReply = z.object({
  job_id: z.string(),
  state: JobState,
  /** True when an idempotency key matched an earlier job: this is that job. */
  duplicate: z.boolean().optional(),
});
export type SubmitReply = z.infer<typeof SubmitReply>;

export const CancelReply = z.object({
  job_id: z.string(),
  state: JobState,
  /** The job was running: its process is being killed, and it ends `cancelled`. */
  cancel_requested: z.boolean().optional(),
});
export type CancelReply = z.infer<typeof CancelReply>;

export const ListJobsReply = z.object({ jobs: z.array(JobStatus), next_cursor: z.string().nullable() });
export type ListJobsReply = z.infer<typeof ListJobsReply>;

/**
 * The message on the jobs stream: everything an execution needs, so running
 * a job never has to read its record first. Anyone with publish rights can
 * write one, so it is held to the submit's limits when read back.
 */
export const JobEnvelope = z.object({
  job_id: JobId,
  type: JobType,
  queue: name("queue"),
  tenant: name("tenant").nullable(),
  payload: JsonValue,
  timeout_ms: z.number().int().positive().max(MAX_TIMEOUT_MS),
  max_attempts: z.number().int().min(1).max(MAX_ATTEMPTS),
  backoff: Backoff,
  priority: z.number().int().min(-MAX_PRIORITY).max(MAX_PRIORITY),
  correlation_id: CorrelationId,
  created_at: isoTime,
  /** Manual retries of a dead job so far; keeps message ids of a new round distinct. */
  generation: z.number().int().nonnegative().max(MAX_GENERATION).default(0),
  /** Errors of the attempts before this message, oldest first (lost runs count too, hence the slack). */
  errors: z.array(JobError).max(2 * MAX_ATTEMPTS).default([]),
  /** Who ran the latest attempt, and when it started (a job waiting for its next attempt shows them). */
  owner: Owner.nullable().default(null),
  started_at: isoTime.nullable().default(null),
  /** W3C traceparent of the submit: every attempt's run span is its child (retries and delays keep it). */
  traceparent: z.string().max(MAX_TRACEPARENT_LENGTH).optional(),
  ...scheduleOrigin,
});
export type JobEnvelope = z.infer<typeof JobEnvelope>;

/**
 * The message on the results stream: the job's final record and its
 * result, written once when it ends. It is the job's record from then on.
 */
export const FinalRecord = JobStatus.extend({
  state: z.enum(["succeeded", "cancelled", "dead"]),
  result: JsonValue,
  duration_ms: z.number().int().nullable(),
  generation: z.number().int().nonnegative().max(MAX_GENERATION).default(0),
  /** The fencing token of the run that stored it (absent on records from before tokens): an older run's outcome is refused. */
  fencing_token: FencingToken.optional(),
});
export type FinalRecord = z.infer<typeof FinalRecord>;

/** The interim record of a running attempt (KV bucket bosun_jobs), removed when the attempt ends. */
export const InterimRecord = JobStatus.extend({ generation: z.number().int().nonnegative().max(MAX_GENERATION).default(0), fencing_token: FencingToken.optional() });
export type InterimRecord = z.infer<typeof InterimRecord>;

/** Each entry is checked on its own (against SubmitRequest), so one bad entry refuses only itself. */
export const BatchSubmitRequest = z.object({ jobs: z.array(z.unknown()).min(1).max(MAX_BATCH) }).strict();
export type BatchSubmitRequest = z.infer<typeof BatchSubmitRequest>;
export const BatchEntryError = z.object({ error: z.object({ code: z.string(), message: z.string(), details: z.unknown().optional() }) });
export const BatchSubmitReply = z.object({ jobs: z.array(z.union([SubmitReply, BatchEntryError])) });
export type BatchSubmitReply = z.infer<typeof BatchSubmitReply>;

/** What the dead-letter stream keeps per dead job. */
export const DeadLetter = z.object({
  job: JobEnvelope,
  record: JobStatus,
});
export type DeadLetter = z.infer<typeof DeadLetter>;

export const ExecutionInfo = z.object({
  execution_id: label(64),
  /** Beyond the contract's fields: the job it runs (the dashboard links to it). */
  job_id: JobId.optional(),
  started_at: isoTime,
  elapsed_seconds: z.number(),
});
export type ExecutionInfo = z.infer<typeof ExecutionInfo>;

export const ProcessInfo = z.object({
  pid: z.number().int(),
  process_id: label(64),
  state: z.enum(["idle", "busy", "killed"]),
  memory_mb: z.number(),
  uptime_seconds: z.number(),
  executions_completed: z.number().int(),
  execution: ExecutionInfo.nullable(),
  /** Beyond the contract's fields: what the actor is (`--isolation`); a thread's pid is its supervisor's, so it also has a thread_id. */
  kind: z.enum(["process", "thread"]).optional(),
  thread_id: z.number().int().optional(),
});
export type ProcessInfo = z.infer<typeof ProcessInfo>;

/** Restart intensity of a supervisor's pool (OTP-style decisions, plain strings). */
export const Supervision = z.object({
  decision: z.enum(["restart", "backoff"]),
  crashes_in_window: z.number().int(),
  spawn_paused_ms: z.number().int(),
});
export type Supervision = z.infer<typeof Supervision>;

const limitInt = (what: string, min: number, max: number) =>
  z.number({ error: `${what}: an integer from ${min} to ${max}` }).int(`${what}: an integer from ${min} to ${max}`).min(min, `${what}: at least ${min}`).max(max, `${what}: at most ${max}`);

/** At most `max` jobs of the queue start in any window of `per_ms`, across every supervisor. */
export const RateLimit = z
  .object({ max: limitInt("rate_limit.max", 1, MAX_RATE_LIMIT), per_ms: limitInt("rate_limit.per_ms", 1, MAX_RATE_WINDOW_MS) })
  .strict();
export type RateLimit = z.infer<typeof RateLimit>;
/** 0 holds the queue: nothing of it starts. */
export const MaxConcurrency = limitInt("max_concurrency", 0, MAX_QUEUE_CONCURRENCY);
/** 0 refuses every submit to the queue while anything waits in it. */
export const MaxPending = limitInt("max_pending", 0, MAX_PENDING_LIMIT);

/** A queue's limits as set (a limit not set is absent). */
export const QueueLimits = z.object({
  max_concurrency: MaxConcurrency.optional(),
  rate_limit: RateLimit.optional(),
  max_pending: MaxPending.optional(),
});
export type QueueLimits = z.infer<typeof QueueLimits>;

/** What one supervisor uses of a limited queue's limits: jobs in hand (running or about to), starts in the current rate window. */
export const QueueUse = z.object({ running: z.number().int().nonnegative(), window_starts: z.number().int().nonnegative() });
export type QueueUse = z.infer<typeof QueueUse>;

export const WorkerInfo = z.object({
  worker_id: name("worker_id"),
  started_at: isoTime,
  hostname: label(),
  min_workers: z.number().int(),
  max_workers: z.number().int(),
  pool_size: z.number().int(),
  idle_count: z.number().int(),
  busy_count: z.number().int(),
  processes: z.array(ProcessInfo).max(MAX_POOL_SIZE),
  /** Beyond the contract's fields: what this supervisor serves, for routing checks. */
  queues: z.array(name("queue")).max(1000),
  /** Its target (absent from older supervisors' heartbeats: `default`). */
  target: name("target").default(DEFAULT_TARGET),
  job_types: z.array(JobType).max(10_000),
  supervision: Supervision,
  /** This supervisor's heartbeat period: it counts as gone after three of them without one. */
  heartbeat_ms: z.number().int().positive(),
  /** The schedules this supervisor keeps timers for (every supervisor claims every tick) and the next tick among them. */
  schedules: z.object({ active: z.number().int().nonnegative(), next_run_at: isoTime.nullable() }),
  /** Per queue with a max_concurrency or rate_limit: this supervisor's use, summed by readers into the queue's use (empty without limits; absent from older supervisors' heartbeats). */
  queue_use: z.record(name("queue"), QueueUse).default({}),
});
export type WorkerInfo = z.infer<typeof WorkerInfo>;

export const WorkersReply = z.object({ workers: z.array(WorkerInfo) });
export type WorkersReply = z.infer<typeof WorkersReply>;

export const RecycleRequest = z
  .object({
    worker_id: name("worker_id"),
    pid: z.coerce.number().int().positive().optional(),
    /** With thread isolation every actor has the supervisor's pid: the thread names one. */
    thread_id: z.coerce.number().int().nonnegative().optional(),
  })
  .strict();
export type RecycleRequest = z.infer<typeof RecycleRequest>;

export const RecycleReply = z.object({
  status: z.literal("recycle_requested"),
  worker_id: z.string(),
  pid: z.number().int(),
  thread_id: z.number().int().optional(),
});
export type RecycleReply = z.infer<typeof RecycleReply>;

export const QueueStatus = z.object({
  queue: z.string(),
  /** Waiting in the queue, runnable now. */
  pending: z.number().int(),
  /** The pending jobs by priority band (h > 0, n = 0, l < 0): the bands are served strictly in that order. */
  pending_by_band: z.object({ h: z.number().int(), n: z.number().int(), l: z.number().int() }),
  /** Parked until a due time (delayed, or a retry in backoff). */
  scheduled: z.number().int(),
  /** Delivered to a supervisor and not yet acked. */
  running: z.number().int(),
  dead: z.number().int(),
  consumers: z.object({
    durable: z.string(),
    /** Pull requests the supervisors have open on the server: free processes waiting for work. */
    waiting_pulls: z.number().int(),
    workers: z.array(z.string()),
  }),
  /** The queue's limits from the ops flags (absent: not limited). */
  limits: QueueLimits,
  /** Summed over the live supervisors' heartbeats (a heartbeat period old at most). */
  use: QueueUse,
});
export type QueueStatus = z.infer<typeof QueueStatus>;

export const QueueStatusReply = z.object({ queues: z.array(QueueStatus) });
export type QueueStatusReply = z.infer<typeof QueueStatusReply>;

export const JobEvent = z.object({
  type: z.enum(["state", "progress"]),
  data: JobStatus,
});
export type JobEvent = z.infer<typeof JobEvent>;

export const MaintenanceReply = z.object({ status: z.literal("queued"), task_id: z.string() });
/** Which queue a maintenance task runs on (a supervisor serving it must be live). */
export const MaintenanceQuery = z.object({ queue: name("queue").optional() }).strict();

const maxAgeHours = z.number().nonnegative().max(24 * 365 * 10);
/** Payloads of the built-in maintenance tasks; omitted fields take the supervisor's defaults. 0 hours: everything finished. */
export const CleanupRunsPayload = z.object({ max_age_hours: maxAgeHours.optional() }).strict();
export type CleanupRunsPayload = z.infer<typeof CleanupRunsPayload>;
/**
 * A directory below the supervisor's --temp-dir (relative to it, or
 * absolute inside it): no `..`, no control characters, so a bad one is a
 * 400 at submit. The supervisor checks it is inside its --temp-dir there
 * too; the task checks the real path when it runs (symlinks).
 */
const TempDir = z
  .string()
  .min(1)
  .max(1024)
  .refine((dir) => !dir.includes("\\") && NO_CONTROL_CHARACTERS.test(dir) && !dir.split("/").includes(".."), {
    message: "dir must be a path inside the temp dir, without ..",
  });
export const CleanupTempFilesPayload = z.object({ dir: TempDir.optional(), max_age_hours: maxAgeHours.optional() }).strict();
export type CleanupTempFilesPayload = z.infer<typeof CleanupTempFilesPayload>;

/** Every error reply, HTTP or NATS. */
export const ErrorReply = z.object({
  error: z.object({
    code: z.enum(Object.keys(errorCodes) as [ErrorCode, ...ErrorCode[]]),
    message: z.string(),
    details: z.unknown().optional(),
  }),
});
export type ErrorReply = z.infer<typeof ErrorReply>;

/** An API key's public id (16 base62 characters; `bootstrap` is BOSUN_ADMIN_KEY's). */
export const KeyId = z.string().regex(/^[A-Za-z0-9]{1,64}$/, "key_id: base62, 1 to 64 characters");
/** A new key: bound to one tenant, or admin. */
export const CreateKeyRequest = z
  .object({
    tenant: TenantName.optional(),
    admin: z.boolean().optional(),
    /** Free text shown in listings (who holds it, what for). */
    label: label(200).optional(),
  })
  .strict()
  .refine((k) => (k.admin === true) !== (k.tenant !== undefined), { message: 'a key is either {"tenant": "..."} or {"admin": true}' });
export type CreateKeyRequest = z.infer<typeof CreateKeyRequest>;
/** A key as listed: never its secret. */
export const KeyInfo = z.object({
  key_id: KeyId,
  tenant: name("tenant").nullable(),
  admin: z.boolean(),
  label: label(200).nullable(),
  created_at: isoTime,
});
export type KeyInfo = z.infer<typeof KeyInfo>;
/** The one answer that shows the key itself. */
export const CreatedKey = KeyInfo.extend({ key: z.string() });
export type CreatedKey = z.infer<typeof CreatedKey>;
export const KeysReply = z.object({ keys: z.array(KeyInfo) });
export type KeysReply = z.infer<typeof KeysReply>;
export const KeyIdRequest = z.object({ key_id: KeyId }).strict();
export const RevokeKeyReply = z.object({ key_id: KeyId, revoked: z.literal(true) });
