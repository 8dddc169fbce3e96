/**
 * The gateway's request/reply routes as data: each names its NATS subject
 * and the zod schemas it validates with. The same table registers the
 * Fastify routes and generates /openapi.json, so the two cannot drift.
 */
import { z } from "zod";
import {
  api,
  CancelReply,
  CleanupRunsPayload,
  CleanupTempFilesPayload,
  JobId,
  JobResult,
  JobStatus,
  ListJobsReply,
  ListJobsRequest,
  MAX_WAIT_MS,
  MaintenanceQuery,
  MaintenanceReply,
  OpsFlags,
  OpsPatch,
  QueueStatusReply,
  RecycleReply,
  SubmitReply,
  SubmitRequest,
  WorkersReply,
} from "../contract/index.js";

export const JobParams = z.object({ job_id: JobId });
export const WorkerParams = z.object({ worker_id: z.string().min(1).max(64) });
export const WaitQuery = z.object({ wait_ms: z.coerce.number().int().min(0).max(MAX_WAIT_MS).optional() }).strict();
const RecycleQuery = z.object({ pid: z.coerce.number().int().positive().optional() }).strict();
const NoQuery = z.object({}).strict();


export interface ApiRoute {
  method: "GET" | "POST" | "PATCH";
  url: string;
  summary: string;
  subject: string;
  params?: z.ZodObject;
  query?: z.ZodObject;
  body?: z.ZodType;
  response: z.ZodType;
  /** Status of a successful reply (default 200). */
  status?: number;
  /** The NATS request body; by default params, query and body merged. */
  toRequest?(input: { params: Record<string, unknown>; query: Record<string, unknown>; body: unknown }): unknown;
  /** The HTTP body from a successful NATS reply; by default the reply itself. */
  fromReply?(reply: unknown): unknown;
}

const maintenance = (type: string, payload: z.ZodType, summary: string): ApiRoute => ({
  method: "POST",
  url: `/api/system/maintenance/${type.replace("maintenance.", "").replaceAll("_", "-")}`,
  summary,
  subject: api.jobsSubmit,
  query: MaintenanceQuery,
  body: payload,
  response: MaintenanceReply,
  status: 202,
  toRequest: ({ query, body }) => ({ type, queue: query.queue ?? "default", payload: body ?? {}, max_attempts: 1 }),
  fromReply: (reply) => ({ status: "queued", task_id: (reply as { job_id: string }).job_id }),
});

export const apiRoutes: ApiRoute[] = [
  { method: "GET", url: "/api/jobs", summary: "List jobs, newest first", subject: api.jobsList, query: ListJobsRequest, response: ListJobsReply },
  { method: "GET", url: "/api/jobs/:job_id", summary: "A job's status", subject: api.jobsGet, params: JobParams, query: NoQuery, response: JobStatus },
  { method: "GET", url: "/api/jobs/:job_id/result", summary: "A finished job's result", subject: api.jobsResult, params: JobParams, query: NoQuery, response: JobResult },
  {
    method: "POST",
    url: "/api/jobs/:job_id/cancel",
    summary: "Cancel a job: a queued one never runs, a running one is killed",
    subject: api.jobsCancel,
    params: JobParams,
    query: NoQuery,
    response: CancelReply,
    status: 202,
  },
  {
    method: "POST",
    url: "/api/jobs/:job_id/retry",
    summary: "Requeue a dead job with fresh attempts",
    subject: api.jobsRetry,
    params: JobParams,
    query: NoQuery,
    response: SubmitReply,
    status: 202,
  },
  { method: "GET", url: "/api/platform/workers", summary: "Live supervisors, from their heartbeats", subject: api.workersList, query: NoQuery, response: WorkersReply },
  {
    method: "POST",
    url: "/api/platform/workers/:worker_id/recycle",
    summary: "Recycle one execution process (after its job), or any idle one",
    subject: api.workersRecycle,
    params: WorkerParams,
    query: RecycleQuery,
    response: RecycleReply,
  },
  { method: "GET", url: "/api/platform/queue", summary: "Per queue: pending, scheduled, running, dead, consumers", subject: api.queueStatus, query: NoQuery, response: QueueStatusReply },
  { method: "GET", url: "/api/admin/ops", summary: "The ops flags", subject: api.opsGet, query: NoQuery, response: OpsFlags },
  { method: "PATCH", url: "/api/admin/ops", summary: "Change ops flags (applied live everywhere)", subject: api.opsSet, query: NoQuery, body: OpsPatch, response: OpsFlags, toRequest: ({ body }) => body },
  maintenance("maintenance.cleanup_runs", CleanupRunsPayload, "Enqueue removal of old finished job records and results"),
  maintenance("maintenance.cleanup_temp_files", CleanupTempFilesPayload, "Enqueue removal of old temporary files"),
];

/** Routes that are not a plain request/reply, documented alongside the table. */
export const specialRoutes = {
  submit: {
    method: "POST",
    url: "/api/jobs",
    summary: "Submit a job; with wait_ms, wait for its result",
    subject: api.jobsSubmit,
    query: WaitQuery,
    body: SubmitRequest,
    response: z.union([SubmitReply, JobResult]),
    status: 202,
  },
} satisfies Record<string, ApiRoute>;
