/**
 * The zod schemas of every JSON document on the wire (HTTP and NATS).
 * Types are inferred from them, so a shape is written exactly once.
 */
import { z } from "zod";
import { NAME_PATTERN } from "./subjects.js";
import { errorCodes, type ErrorCode } from "./errors.js";

const name = (what: string) =>
  z.string().regex(NAME_PATTERN, `${what} must be 1-64 characters of A-Z a-z 0-9 _ -`);
const ms = z.number().int().nonnegative();
const isoTime = z.iso.datetime({ offset: true });

export const MAX_WAIT_MS = 300_000;
export const MAX_TIMEOUT_MS = 24 * 60 * 60 * 1000;

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
const JsonValue = z.unknown().describe("any JSON value");

export const SubmitRequest = z
  .object({
    type: z.string().min(1).max(200),
    payload: JsonValue.default({}),
    queue: name("queue").default("default"),
    tenant: name("tenant").optional(),
    idempotency_key: z.string().min(1).max(256).optional(),
    delay_ms: ms.max(365 * 24 * 3600 * 1000).optional(),
    run_at: isoTime.optional(),
    timeout_ms: z.number().int().positive().max(MAX_TIMEOUT_MS).optional(),
    max_attempts: z.number().int().min(1).max(100).optional(),
    backoff: Backoff.optional(),
    priority: z.number().int().min(-1000).max(1000).optional(),
    correlation_id: z.string().min(1).max(128).optional(),
    /** NATS API only (HTTP uses ?wait_ms): reply when the job ends or the wait runs out. */
    wait_ms: ms.max(MAX_WAIT_MS).optional(),
  })
  .strict()
  .refine((s) => s.delay_ms === undefined || s.run_at === undefined, {
    message: "give delay_ms or run_at, not both",
    path: ["run_at"],
  });
export type SubmitRequest = z.infer<typeof SubmitRequest>;

/** For endpoints that take no input: an empty body, or {}. */
export const EmptyRequest = z.object({}).strict();

/** Job ids are nuids; anything else cannot name a job (and is no valid KV key). */
export const JobId = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, "a job id is 1-64 of A-Z a-z 0-9 _ -");

export const JobIdRequest = z.object({ job_id: JobId }).strict();
export type JobIdRequest = z.infer<typeof JobIdRequest>;

export const ListJobsRequest = z
  .object({
    state: JobState.optional(),
    queue: name("queue").optional(),
    tenant: name("tenant").optional(),
    limit: z.coerce.number().int().min(1).max(1000).default(100),
  })
  .strict();
export type ListJobsRequest = z.infer<typeof ListJobsRequest>;

export const JobError = z.object({ code: z.string(), message: z.string() });
export type JobError = z.infer<typeof JobError>;

/** Who ran a job: a supervisor's execution process (pid), or with thread isolation its thread (pid = the supervisor's, and thread_id). */
export const Owner = z.object({ worker_id: z.string(), pid: z.number().int(), thread_id: z.number().int().optional() });

/** What GET /api/jobs/{id} and bosun.api.jobs.get answer. */
export const JobStatus = z.object({
  job_id: z.string(),
  type: z.string(),
  queue: z.string(),
  tenant: z.string().nullable(),
  state: JobState,
  attempts: z.number().int(),
  max_attempts: z.number().int(),
  created_at: isoTime,
  started_at: isoTime.nullable(),
  finished_at: isoTime.nullable(),
  owner: Owner.nullable(),
  progress: z.number().nullable(),
  error: JobError.nullable(),
  correlation_id: z.string(),
});
export type JobStatus = z.infer<typeof JobStatus>;

export const JobResult = z.object({
  job_id: z.string(),
  state: JobState,
  result: JsonValue,
  error: JobError.nullable(),
  attempts: z.number().int(),
  duration_ms: z.number().int().nullable(),
  correlation_id: z.string(),
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

export const ListJobsReply = z.object({ jobs: z.array(JobStatus) });
export type ListJobsReply = z.infer<typeof ListJobsReply>;

/**
 * The message on the jobs stream: everything an execution needs, so running
 * a job never has to read its record first.
 */
export const JobEnvelope = z.object({
  job_id: z.string(),
  type: z.string(),
  queue: z.string(),
  tenant: z.string().nullable(),
  payload: JsonValue,
  timeout_ms: z.number().int().positive(),
  max_attempts: z.number().int().min(1),
  backoff: Backoff,
  priority: z.number().int(),
  correlation_id: z.string(),
  created_at: isoTime,
  /** Manual retries of a dead job so far; keeps message ids of a new round distinct. */
  generation: z.number().int().nonnegative().default(0),
  /** Errors of the attempts before this message, oldest first. */
  errors: z.array(JobError).default([]),
  /** W3C traceparent of the submit: every attempt's run span is its child (retries and delays keep it). */
  traceparent: z.string().max(128).optional(),
});
export type JobEnvelope = z.infer<typeof JobEnvelope>;

/** What the dead-letter stream keeps per dead job. */
export const DeadLetter = z.object({
  job: JobEnvelope,
  record: JobStatus,
});
export type DeadLetter = z.infer<typeof DeadLetter>;

export const ExecutionInfo = z.object({
  execution_id: z.string(),
  /** Beyond the contract's fields: the job it runs (the dashboard links to it). */
  job_id: z.string().optional(),
  started_at: isoTime,
  elapsed_seconds: z.number(),
});
export type ExecutionInfo = z.infer<typeof ExecutionInfo>;

export const ProcessInfo = z.object({
  pid: z.number().int(),
  process_id: z.string(),
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

export const WorkerInfo = z.object({
  worker_id: z.string(),
  started_at: isoTime,
  hostname: z.string(),
  min_workers: z.number().int(),
  max_workers: z.number().int(),
  pool_size: z.number().int(),
  idle_count: z.number().int(),
  busy_count: z.number().int(),
  processes: z.array(ProcessInfo),
  /** Beyond the contract's fields: what this supervisor serves, for routing checks. */
  queues: z.array(z.string()),
  job_types: z.array(z.string()),
  supervision: Supervision,
  /** This supervisor's heartbeat period: it counts as gone after three of them without one. */
  heartbeat_ms: z.number().int().positive(),
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
});
export type QueueStatus = z.infer<typeof QueueStatus>;

export const QueueStatusReply = z.object({ queues: z.array(QueueStatus) });
export type QueueStatusReply = z.infer<typeof QueueStatusReply>;

/** The ops (cutover) flags, as read. */
export const OpsFlags = z.object({
  submissions_paused: z.boolean(),
  queues: z.record(z.string(), z.object({ submissions_paused: z.boolean() })),
});
export type OpsFlags = z.infer<typeof OpsFlags>;

/** A change to the ops flags: only known flags, with the right types. */
export const OpsPatch = z
  .object({
    submissions_paused: z.boolean().optional(),
    queues: z.record(name("queue"), z.object({ submissions_paused: z.boolean() }).strict()).optional(),
  })
  .strict();
export type OpsPatch = z.infer<typeof OpsPatch>;

export const JobEvent = z.object({
  type: z.enum(["state", "progress"]),
  data: JobStatus,
});
export type JobEvent = z.infer<typeof JobEvent>;

export const MaintenanceReply = z.object({ status: z.literal("queued"), task_id: z.string() });
/** Which queue a maintenance task runs on (a supervisor serving it must be live). */
export const MaintenanceQuery = z.object({ queue: name("queue").optional() }).strict();

const maxAgeHours = z.number().positive().max(24 * 365 * 10);
/** Payloads of the built-in maintenance tasks; omitted fields take the supervisor's defaults. */
export const CleanupRunsPayload = z.object({ max_age_hours: maxAgeHours.optional() }).strict();
export type CleanupRunsPayload = z.infer<typeof CleanupRunsPayload>;
export const CleanupTempFilesPayload = z.object({ dir: z.string().min(1).optional(), max_age_hours: maxAgeHours.optional() }).strict();
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
