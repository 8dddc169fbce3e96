/**
 * Every operation of the API, once: its NATS subject, its request and reply
 * schemas, who may call it, and the HTTP route(s) that reach it. The
 * supervisors' NATS service, the gateway's routes, /openapi.json, the auth
 * checks and the typed client are all built from these two tables, so a new
 * operation cannot skip validation, auth or documentation.
 */
import { z } from "zod";
import {
  BatchSubmitReply,
  BatchSubmitRequest,
  CancelReply,
  CleanupRunsPayload,
  CleanupTempFilesPayload,
  CreatedKey,
  CreateKeyRequest,
  KeyIdRequest,
  KeysReply,
  RevokeKeyReply,
  EmptyRequest,
  JobId,
  JobIdRequest,
  JobResult,
  JobStatus,
  ListJobsReply,
  ListJobsRequest,
  MaintenanceQuery,
  MaintenanceReply,
  QueueStatusReply,
  RecycleReply,
  RecycleRequest,
  SubmitReply,
  SubmitRequest,
  WorkerInfo,
  WorkersReply,
} from "./schemas.js";
import { OpsFlags, OpsPatch } from "./ops.js";
import { DeleteScheduleReply, ListSchedulesReply, Schedule, ScheduleIdRequest, ScheduleParams, ScheduleSpec, TriggerReply } from "./schedules.js";
import {
  ActivateTargetReply,
  ActivateTargetRequest,
  ComputeServersReply,
  CreateEnrollTokenRequest,
  EnrolledServer,
  EnrollServerRequest,
  EnrollToken,
  FileCheckReply,
  FileCheckRequest,
  FileGetRequest,
  JobFileName,
  JobFilesReply,
  LocatedFile,
  LeaseEndReply,
  LeaseFailedRequest,
  LeaseOutcomesReply,
  LeaseOutcomesRequest,
  LeaseHeartbeatReply,
  LeaseHeartbeatRequest,
  LeaseReply,
  LeaseRequest,
  LeaseResultRequest,
  RevokeServerReply,
  ServerIdRequest,
  TargetsReply,
} from "./compute.js";
import { api } from "./subjects.js";
import { MAX_NAME_LENGTH, MAX_WAIT_MS } from "./limits.js";

/**
 * Who may call an operation when auth is on: `tenant` any valid key (a
 * tenant key sees only its tenant's jobs), `admin` an admin key only.
 * Whether auth is on or not: `compute` a remote compute server's credential
 * only, `enroll` anyone holding an enroll token (it is in the body).
 */
export type Access = "tenant" | "admin" | "compute" | "enroll";

/** Groups in the OpenAPI document; every `compute` route answers 404 while compute_endpoints_enabled is false. */
export type Tag = "jobs" | "schedules" | "platform" | "admin" | "system" | "compute";

export interface Operation<Req extends z.ZodType = z.ZodType, Res extends z.ZodType = z.ZodType> {
  subject: string;
  request: Req;
  response: Res;
  access: Access;
  summary: string;
  tag: Tag;
}

/** Keeps each operation's own schema types (the table's values stay precise). */
const op = <Req extends z.ZodType, Res extends z.ZodType>(o: Operation<Req, Res>): Operation<Req, Res> => o;

/** The NATS API: one request/reply subject per operation, served by the supervisors. */
export const operations = {
  jobs_submit: op({
    subject: api.jobsSubmit,
    request: SubmitRequest,
    response: z.union([SubmitReply, JobResult]),
    access: "tenant",
    summary: "Submit a job; with wait_ms, wait for its result",
    tag: "jobs",
  }),
  jobs_submit_batch: op({
    subject: api.jobsSubmitBatch,
    request: BatchSubmitRequest,
    response: BatchSubmitReply,
    access: "tenant",
    summary: "Submit 1 to 1,000 jobs; each entry is validated and accepted on its own, answers in the same order",
    tag: "jobs",
  }),
  jobs_get: op({ subject: api.jobsGet, request: JobIdRequest, response: JobStatus, access: "tenant", summary: "A job's status", tag: "jobs" }),
  jobs_result: op({ subject: api.jobsResult, request: JobIdRequest, response: JobResult, access: "tenant", summary: "A finished job's result", tag: "jobs" }),
  jobs_cancel: op({
    subject: api.jobsCancel,
    request: JobIdRequest,
    response: CancelReply,
    access: "tenant",
    summary: "Cancel a job: a queued one never runs, a running one is killed",
    tag: "jobs",
  }),
  jobs_retry: op({ subject: api.jobsRetry, request: JobIdRequest, response: SubmitReply, access: "tenant", summary: "Requeue a dead job with fresh attempts", tag: "jobs" }),
  jobs_list: op({ subject: api.jobsList, request: ListJobsRequest, response: ListJobsReply, access: "tenant", summary: "List jobs, newest first, a page at a time (pass next_cursor back as cursor)", tag: "jobs" }),
  workers_list: op({ subject: api.workersList, request: EmptyRequest, response: WorkersReply, access: "admin", summary: "Live supervisors, from their heartbeats", tag: "platform" }),
  workers_recycle: op({
    subject: api.workersRecycle,
    request: RecycleRequest,
    response: RecycleReply,
    access: "admin",
    summary: "Recycle one execution process (after its job), or any idle one",
    tag: "platform",
  }),
  queue_status: op({
    subject: api.queueStatus,
    request: EmptyRequest,
    response: QueueStatusReply,
    access: "admin",
    summary: "Per queue: pending, scheduled, running, dead, consumers",
    tag: "platform",
  }),
  ops_get: op({ subject: api.opsGet, request: EmptyRequest, response: OpsFlags, access: "admin", summary: "The ops flags", tag: "admin" }),
  ops_set: op({ subject: api.opsSet, request: OpsPatch, response: OpsFlags, access: "admin", summary: "Change ops flags (applied live everywhere)", tag: "admin" }),
  keys_create: op({
    subject: api.keysCreate,
    request: CreateKeyRequest,
    response: CreatedKey,
    access: "admin",
    summary: "Create an API key for one tenant, or an admin key; the key is in this answer only",
    tag: "admin",
  }),
  keys_list: op({ subject: api.keysList, request: EmptyRequest, response: KeysReply, access: "admin", summary: "Every API key, without secrets", tag: "admin" }),
  keys_revoke: op({
    subject: api.keysRevoke,
    request: KeyIdRequest,
    response: RevokeKeyReply,
    access: "admin",
    summary: "Revoke an API key (refused everywhere within a second)",
    tag: "admin",
  }),
  // Schedules are admin-only for now (docs/scheduling.md, "Access"): a schedule submits as its job's tenant.
  schedules_create: op({ subject: api.schedulesCreate, request: ScheduleSpec, response: Schedule, access: "admin", summary: "Create or replace a schedule (recurring job)", tag: "schedules" }),
  schedules_list: op({ subject: api.schedulesList, request: EmptyRequest, response: ListSchedulesReply, access: "admin", summary: "Every schedule, with its next and last run", tag: "schedules" }),
  schedules_get: op({ subject: api.schedulesGet, request: ScheduleIdRequest, response: Schedule, access: "admin", summary: "A schedule, with its next and last run", tag: "schedules" }),
  schedules_delete: op({ subject: api.schedulesDelete, request: ScheduleIdRequest, response: DeleteScheduleReply, access: "admin", summary: "Delete a schedule (no tick fires after the reply)", tag: "schedules" }),
  schedules_pause: op({ subject: api.schedulesPause, request: ScheduleIdRequest, response: Schedule, access: "admin", summary: "Pause a schedule: no ticks until resumed", tag: "schedules" }),
  schedules_resume: op({ subject: api.schedulesResume, request: ScheduleIdRequest, response: Schedule, access: "admin", summary: "Resume a paused schedule from now (paused ticks are not run)", tag: "schedules" }),
  schedules_trigger: op({ subject: api.schedulesTrigger, request: ScheduleIdRequest, response: TriggerReply, access: "admin", summary: "Run a schedule's job now, once (paused or not)", tag: "schedules" }),
  jobs_files_list: op({ subject: api.jobsFilesList, request: JobIdRequest, response: JobFilesReply, access: "tenant", summary: "The files a job wrote", tag: "jobs" }),
  jobs_files_get: op({ subject: api.jobsFilesGet, request: JobIdRequest.extend({ name: JobFileName }), response: LocatedFile, access: "tenant", summary: "Where one of a job's files is (the gateway streams it)", tag: "jobs" }),
  compute_enroll_tokens_create: op({
    subject: api.computeEnrollTokensCreate,
    request: CreateEnrollTokenRequest,
    response: EnrollToken,
    access: "admin",
    summary: "A single-use enroll token for a remote compute server, with an expiry and the queues it may serve",
    tag: "compute",
  }),
  compute_servers_enroll: op({
    subject: api.computeServersEnroll,
    request: EnrollServerRequest,
    response: EnrolledServer,
    access: "enroll",
    summary: "Trade an enroll token for a compute server's credential (shown once, stored hashed)",
    tag: "compute",
  }),
  compute_servers_list: op({ subject: api.computeServersList, request: EmptyRequest, response: ComputeServersReply, access: "admin", summary: "Enrolled compute servers, their queues, last heartbeat and leased jobs", tag: "compute" }),
  compute_servers_revoke: op({
    subject: api.computeServersRevoke,
    request: ServerIdRequest,
    response: RevokeServerReply,
    access: "admin",
    summary: "Emergency revoke: the credential stops working at once and the server's leased jobs run again",
    tag: "compute",
  }),
  compute_lease: op({ subject: api.computeLease, request: LeaseRequest, response: LeaseReply, access: "compute", summary: "Long-poll up to wait_ms for one job of the server's queues", tag: "compute" }),
  compute_heartbeat: op({ subject: api.computeHeartbeat, request: LeaseHeartbeatRequest, response: LeaseHeartbeatReply, access: "compute", summary: "Extend a lease (409 lease_stale, or cancelled)", tag: "compute" }),
  compute_result: op({ subject: api.computeResult, request: LeaseResultRequest, response: LeaseEndReply, access: "compute", summary: "End a lease with the job's result", tag: "compute" }),
  compute_failed: op({ subject: api.computeFailed, request: LeaseFailedRequest, response: LeaseEndReply, access: "compute", summary: "End a lease with a failed attempt (retried per the job's attempts and backoff)", tag: "compute" }),
  compute_outcomes: op({
    subject: api.computeOutcomes,
    request: LeaseOutcomesRequest,
    response: LeaseOutcomesReply,
    access: "compute",
    summary: "End several leases in one call, each with its result or failure (each decided as its own call would be)",
    tag: "compute",
  }),
  compute_file_check: op({ subject: api.computeFileCheck, request: FileCheckRequest, response: FileCheckReply, access: "compute", summary: "A compute server's file upload, checked before and after the gateway stores it", tag: "compute" }),
  compute_file_get: op({ subject: api.computeFileGet, request: FileGetRequest, response: LocatedFile, access: "compute", summary: "Where a file of the job a compute server holds the lease of is, for the gateway's download (ctx.files.read)", tag: "compute" }),
  targets_list: op({ subject: api.targetsList, request: EmptyRequest, response: TargetsReply, access: "admin", summary: "Targets, their live supervisors and servers, and their queues", tag: "platform" }),
  targets_activate: op({
    subject: api.targetsActivate,
    request: ActivateTargetRequest,
    response: ActivateTargetReply,
    access: "admin",
    summary: "Switch a queue's new submissions to this target (queued jobs drain where they are)",
    tag: "platform",
  }),
} as const satisfies Record<string, Operation>;

export type OperationName = keyof typeof operations;

export const JobParams = z.object({ job_id: JobId }).strict();
/** A job file's route (its download, a compute server's upload). */
export const FileParams = JobParams.extend({ name: JobFileName }).strict();
export const WorkerParams = z.object({ worker_id: z.string().min(1).max(MAX_NAME_LENGTH) }).strict();
export const WaitQuery = z.object({ wait_ms: z.coerce.number().int().min(0).max(MAX_WAIT_MS).optional() }).strict();
const RecycleQuery = z.object({ pid: z.coerce.number().int().positive().optional(), thread_id: z.coerce.number().int().nonnegative().optional() }).strict();
const NoQuery = z.object({}).strict();
const KeyParams = z.object({ key_id: KeyIdRequest.shape.key_id }).strict();
const ServerParams = z.object({ server_id: ServerIdRequest.shape.server_id }).strict();
const TargetParams = z.object({ target_id: ActivateTargetRequest.shape.target_id }).strict();
/** What ends a lease call's path: the job id (its body names the lease). */
const leaseRoute = (end: "heartbeat" | "result" | "failed", operationId: string, operation: OperationName, body: z.ZodObject, example: unknown): HttpRoute => ({
  method: "POST",
  url: `/api/compute/jobs/:job_id/${end}`,
  operationId,
  operation,
  params: JobParams,
  query: NoQuery,
  body: body.omit({ job_id: true }),
  tag: "compute",
  example,
});

export interface HttpRoute {
  method: "GET" | "POST" | "PATCH" | "PUT" | "DELETE";
  /** Fastify syntax (`:param`). */
  url: string;
  /** A unique camelCase name: generated clients use it as the method name. */
  operationId: string;
  /** The NATS operation this route is one request to. */
  operation: OperationName;
  summary?: string;
  params?: z.ZodObject;
  query?: z.ZodObject;
  body?: z.ZodType;
  /** What the route answers on success, when it differs from the operation's reply. */
  response?: z.ZodType;
  /** Status of a successful reply (default 200). */
  status?: number;
  /** Further successful answers, for the document (submit with `wait_ms` answers 200 with the result). */
  otherResponses?: readonly { status: number; description: string; schema: z.ZodType }[];
  /** A request body the route accepts, shown in /docs (tests check that it is accepted). */
  example?: unknown;
  /** The document's group, when it differs from the operation's. */
  tag?: Tag;
  /** Overrides the operation's access (maintenance routes submit jobs, but only admins may). */
  access?: Access;
  /** The NATS request body; by default params, query and body merged. */
  toRequest?(input: { params: Record<string, unknown>; query: Record<string, unknown>; body: unknown }): unknown;
  /** The HTTP body from a successful NATS reply; by default the reply itself. */
  fromReply?(reply: unknown): unknown;
  /** A successful reply that means "nothing": answered 204 without a body. */
  noContent?(reply: unknown): boolean;
}

const maintenance = (type: string, operationId: string, payload: z.ZodType, summary: string): HttpRoute => ({
  method: "POST",
  url: `/api/system/maintenance/${type.replace("maintenance.", "").replaceAll("_", "-")}`,
  operationId,
  operation: "jobs_submit",
  summary,
  query: MaintenanceQuery,
  body: payload,
  response: MaintenanceReply,
  status: 202,
  tag: "system",
  example: { max_age_hours: 168 },
  access: "admin",
  // Attempts and backoff are the defaults (a payload cannot carry them: it is the task's input).
  toRequest: ({ query, body }) => ({ type, queue: query.queue ?? "default", payload: body ?? {} }),
  fromReply: (reply) => ({ status: "queued", task_id: (reply as { job_id: string }).job_id }),
});

/**
 * Every request/reply HTTP route. The submit route is in the table too; its
 * `?wait_ms` and 200-when-finished handling are the gateway's.
 */
export const httpRoutes: readonly HttpRoute[] = [
  {
    method: "POST",
    url: "/api/jobs",
    operationId: "submitJob",
    operation: "jobs_submit",
    query: WaitQuery,
    body: SubmitRequest,
    status: 202,
    response: SubmitReply,
    otherResponses: [{ status: 200, description: "with `wait_ms`: the job finished within it; its result", schema: JobResult }],
    example: { type: "echo", payload: { hello: "world" } },
  },
  {
    method: "POST",
    url: "/api/jobs/batch",
    operationId: "submitJobs",
    operation: "jobs_submit_batch",
    query: NoQuery,
    body: BatchSubmitRequest,
    status: 202,
    example: { jobs: [{ type: "echo", payload: { n: 1 } }, { type: "echo", payload: { n: 2 } }] },
  },
  { method: "GET", url: "/api/jobs", operationId: "listJobs", operation: "jobs_list", query: ListJobsRequest },
  { method: "GET", url: "/api/jobs/:job_id", operationId: "getJob", operation: "jobs_get", params: JobParams, query: NoQuery },
  { method: "GET", url: "/api/jobs/:job_id/result", operationId: "getJobResult", operation: "jobs_result", params: JobParams, query: NoQuery },
  { method: "POST", url: "/api/jobs/:job_id/cancel", operationId: "cancelJob", operation: "jobs_cancel", params: JobParams, query: NoQuery, status: 202 },
  { method: "POST", url: "/api/jobs/:job_id/retry", operationId: "retryJob", operation: "jobs_retry", params: JobParams, query: NoQuery, status: 202 },
  {
    method: "GET",
    url: "/api/platform/workers",
    operationId: "listWorkers",
    operation: "workers_list",
    query: NoQuery,
    response: z.array(WorkerInfo),
    fromReply: (reply) => (reply as { workers: unknown[] }).workers,
  },
  {
    method: "POST",
    url: "/api/platform/workers/:worker_id/recycle",
    operationId: "recycleWorker",
    operation: "workers_recycle",
    params: WorkerParams,
    query: RecycleQuery,
  },
  { method: "GET", url: "/api/platform/queue", operationId: "getQueueStatus", operation: "queue_status", query: NoQuery },
  { method: "GET", url: "/api/admin/ops", operationId: "getOpsFlags", operation: "ops_get", query: NoQuery },
  {
    method: "PATCH",
    url: "/api/admin/ops",
    operationId: "setOpsFlags",
    operation: "ops_set",
    query: NoQuery,
    body: OpsPatch,
    example: { queues: { default: { submissions_paused: false, max_concurrency: 10, rate_limit: { max: 100, per_ms: 1000 }, max_pending: null } } },
    toRequest: ({ body }) => body,
  },
  {
    method: "POST",
    url: "/api/admin/keys",
    operationId: "createKey",
    operation: "keys_create",
    query: NoQuery,
    body: CreateKeyRequest,
    status: 201,
    example: { tenant: "acme", label: "acme-web" },
  },
  { method: "GET", url: "/api/admin/keys", operationId: "listKeys", operation: "keys_list", query: NoQuery },
  { method: "DELETE", url: "/api/admin/keys/:key_id", operationId: "revokeKey", operation: "keys_revoke", params: KeyParams, query: NoQuery },
  { method: "GET", url: "/api/schedules", operationId: "listSchedules", operation: "schedules_list", query: NoQuery },
  {
    method: "POST",
    url: "/api/schedules",
    operationId: "createSchedule",
    operation: "schedules_create",
    query: NoQuery,
    body: ScheduleSpec,
    status: 201,
    example: { schedule_id: "nightly-report", cron: "0 3 * * *", timezone: "Europe/Berlin", job: { type: "echo", payload: { report: "daily" } } },
    toRequest: ({ body }) => body,
  },
  { method: "GET", url: "/api/schedules/:schedule_id", operationId: "getSchedule", operation: "schedules_get", params: ScheduleParams, query: NoQuery },
  { method: "DELETE", url: "/api/schedules/:schedule_id", operationId: "deleteSchedule", operation: "schedules_delete", params: ScheduleParams, query: NoQuery },
  { method: "POST", url: "/api/schedules/:schedule_id/pause", operationId: "pauseSchedule", operation: "schedules_pause", params: ScheduleParams, query: NoQuery },
  { method: "POST", url: "/api/schedules/:schedule_id/resume", operationId: "resumeSchedule", operation: "schedules_resume", params: ScheduleParams, query: NoQuery },
  { method: "POST", url: "/api/schedules/:schedule_id/trigger", operationId: "triggerSchedule", operation: "schedules_trigger", params: ScheduleParams, query: NoQuery, status: 202 },
  { method: "GET", url: "/api/jobs/:job_id/files", operationId: "listJobFiles", operation: "jobs_files_list", params: JobParams, query: NoQuery },
  { method: "POST", url: "/api/compute/enroll-tokens", operationId: "createEnrollToken", operation: "compute_enroll_tokens_create", query: NoQuery, body: CreateEnrollTokenRequest, status: 201, example: { queues: ["default"], ttl_ms: 600000 } },
  { method: "POST", url: "/api/compute/servers", operationId: "enrollServer", operation: "compute_servers_enroll", query: NoQuery, body: EnrollServerRequest, status: 201, example: { enroll_token: "qfa1oLxJ2v0c3Ykz9sVb7WmQ4tZr8hNdE6uPpXyG5Ko", name: "gpu-box-1" } },
  { method: "GET", url: "/api/compute/servers", operationId: "listServers", operation: "compute_servers_list", query: NoQuery },
  { method: "DELETE", url: "/api/compute/servers/:server_id", operationId: "revokeServer", operation: "compute_servers_revoke", params: ServerParams, query: NoQuery },
  {
    method: "POST",
    url: "/api/compute/jobs/lease",
    operationId: "leaseJob",
    operation: "compute_lease",
    query: NoQuery,
    body: LeaseRequest,
    otherResponses: [{ status: 204, description: "the wait ran out with nothing to do", schema: z.null() }],
    example: { wait_ms: 20000 },
    noContent: (reply) => (reply as { job: unknown }).job === null,
  },
  leaseRoute("heartbeat", "heartbeatLease", "compute_heartbeat", LeaseHeartbeatRequest, { lease_id: "I6SH3SWPBBDBG3HIAU27DM", progress: 0.5 }),
  leaseRoute("result", "postLeaseResult", "compute_result", LeaseResultRequest, { lease_id: "I6SH3SWPBBDBG3HIAU27DM", result: { rows: 42 } }),
  leaseRoute("failed", "postLeaseFailure", "compute_failed", LeaseFailedRequest, { lease_id: "I6SH3SWPBBDBG3HIAU27DM", error: { code: "render_failed", message: "out of memory" }, retryable: true }),
  {
    method: "POST",
    url: "/api/compute/jobs/outcomes",
    operationId: "postLeaseOutcomes",
    operation: "compute_outcomes",
    query: NoQuery,
    body: LeaseOutcomesRequest,
    tag: "compute",
    example: { outcomes: [{ job_id: "01JD0C4V3T8W6Y2N5QF7R9XKZA", lease_id: "I6SH3SWPBBDBG3HIAU27DM", result: { rows: 42 } }] },
  },
  { method: "GET", url: "/api/targets", operationId: "listTargets", operation: "targets_list", query: NoQuery },
  {
    method: "PUT",
    url: "/api/targets/:target_id/active",
    operationId: "activateTarget",
    operation: "targets_activate",
    params: TargetParams,
    query: NoQuery,
    body: ActivateTargetRequest.pick({ queue: true }),
    example: { queue: "default" },
  },
  maintenance("maintenance.cleanup_runs", "cleanupRuns", CleanupRunsPayload, "Enqueue removal of old finished job records and results"),
  maintenance("maintenance.cleanup_temp_files", "cleanupTempFiles", CleanupTempFilesPayload, "Enqueue removal of old temporary files"),
];

/** The route's effective access: its own override, else its operation's. */
export const accessOf = (route: HttpRoute): Access => route.access ?? operations[route.operation].access;
