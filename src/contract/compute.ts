/**
 * The wire shapes of remote compute servers (HTTP-only workers), targets and
 * job files: CONTRACT.md "Remote compute servers", "Targets and ops flags"
 * and the files routes. docs/compute.md tells the protocol.
 */
import { z } from "zod";
import { FencingToken, isoTime, JobError, JobId, JobType, JsonValue, name } from "./schemas.js";
import { MAX_CORRELATION_ID_LENGTH, MAX_FILE_NAME_LENGTH, MAX_TIMEOUT_MS, MAX_WAIT_MS } from "./limits.js";

/** Queues one enroll token (and so one server) may serve. */
export const MAX_SERVER_QUEUES = 64;
/** Types one lease request may name. */
export const MAX_LEASE_TYPES = 64;
/** Jobs one lease request may take, and outcomes one outcomes call may post. */
export const MAX_LEASE_JOBS = 64;
export const DEFAULT_ENROLL_TTL_MS = 3_600_000;
export const MAX_ENROLL_TTL_MS = 30 * 24 * 3_600_000;
/** A secret as sent (enroll tokens, credentials): Bosun's are 43 characters. */
const Secret = z.string().min(1).max(256);
/** A lease id: a nuid (22 characters). */
export const LeaseId = z.string().regex(/^[A-Za-z0-9]{1,64}$/, "a lease id is 1-64 of A-Z a-z 0-9");
const Queues = z.array(name("queue")).min(1).max(MAX_SERVER_QUEUES);

export const CreateEnrollTokenRequest = z
  .object({
    queues: Queues,
    ttl_ms: z.number().int().positive().max(MAX_ENROLL_TTL_MS).default(DEFAULT_ENROLL_TTL_MS),
    /** The target the server joins (default: `default`). */
    target: name("target").optional(),
  })
  .strict();
export type CreateEnrollTokenRequest = z.infer<typeof CreateEnrollTokenRequest>;
export const EnrollToken = z.object({ token: z.string(), expires_at: isoTime, queues: z.array(z.string()), target: z.string() });
export type EnrollToken = z.infer<typeof EnrollToken>;

/** `target` is the server's (default: the token's, else `default`); a token that names another refuses it. */
export const EnrollServerRequest = z.object({ enroll_token: Secret, name: name("name"), target: name("target").optional() }).strict();
export type EnrollServerRequest = z.infer<typeof EnrollServerRequest>;
export const EnrolledServer = z.object({ server_id: z.string(), credential: z.string(), queues: z.array(z.string()), target: z.string() });
export type EnrolledServer = z.infer<typeof EnrolledServer>;

export const ComputeServer = z.object({
  server_id: z.string(),
  name: z.string(),
  queues: z.array(z.string()),
  target: z.string(),
  enrolled_at: isoTime,
  last_heartbeat_at: isoTime.nullable(),
  leased_jobs: z.array(z.string()),
});
export type ComputeServer = z.infer<typeof ComputeServer>;
export const ComputeServersReply = z.object({ servers: z.array(ComputeServer) });
export const ServerIdRequest = z.object({ server_id: name("server_id") }).strict();
export const RevokeServerReply = z.object({ server_id: z.string(), status: z.literal("revoked"), requeued: z.number().int() });

export const LeaseRequest = z
  .object({
    wait_ms: z.number().int().min(0).max(MAX_WAIT_MS).default(0),
    types: z.array(JobType).min(1).max(MAX_LEASE_TYPES).optional(),
    /** Up to this many jobs in one answer: the first as `job`/`lease`, the others in `more`. */
    max_jobs: z.number().int().min(1).max(MAX_LEASE_JOBS).default(1),
  })
  .strict();
export type LeaseRequest = z.infer<typeof LeaseRequest>;
export const Lease = z.object({ lease_id: z.string(), fencing_token: FencingToken, expires_at: isoTime });
export type Lease = z.infer<typeof Lease>;
export const LeasedJob = z.object({
  job_id: z.string(),
  type: z.string(),
  payload: JsonValue,
  attempt: z.number().int(),
  timeout_ms: z.number().int().positive().max(MAX_TIMEOUT_MS),
  correlation_id: z.string().max(MAX_CORRELATION_ID_LENGTH),
});
export type LeasedJob = z.infer<typeof LeasedJob>;
export const LeaseGrant = z.object({ job: LeasedJob, lease: Lease });
export type LeaseGrant = z.infer<typeof LeaseGrant>;
/**
 * Over NATS nothing to do is `{"job": null, "lease": null}`; HTTP answers
 * 204. `more` holds the grants past the first of a `max_jobs` request
 * (absent when there are none).
 */
export const LeaseReply = z.union([LeaseGrant.extend({ more: z.array(LeaseGrant).max(MAX_LEASE_JOBS - 1).optional() }), z.object({ job: z.null(), lease: z.null() })]);
export type LeaseReply = z.infer<typeof LeaseReply>;

const leaseCall = { job_id: JobId, lease_id: LeaseId };
export const LeaseHeartbeatRequest = z.object({ ...leaseCall, progress: z.number().min(0).max(1).optional() }).strict();
export const LeaseHeartbeatReply = z.object({ job_id: z.string(), lease_id: z.string(), expires_at: isoTime });
export const LeaseResultRequest = z.object({ ...leaseCall, result: JsonValue.default(null) }).strict();
export const LeaseFailedRequest = z.object({ ...leaseCall, error: JobError, retryable: z.boolean().default(true) }).strict();
export const LeaseEndReply = z.object({ job_id: z.string(), state: z.string() });
/**
 * Several leases' outcomes in one call, each a result's or a failure's
 * body with its `job_id`; each is decided alone, as its own call would be.
 */
export const LeaseOutcomesRequest = z
  .object({
    outcomes: z
      .array(z.union([LeaseFailedRequest, LeaseResultRequest]))
      .min(1)
      .max(MAX_LEASE_JOBS)
      .refine((items) => new Set(items.map((o) => o.job_id)).size === items.length, "each job_id at most once per call"),
  })
  .strict();
export type LeaseOutcomesRequest = z.infer<typeof LeaseOutcomesRequest>;
/** In the request's order: the lease's end, or why that outcome was refused (`lease_stale`, `cancelled`, ...). */
export const LeaseOutcomeReply = z.union([LeaseEndReply.strict(), z.object({ job_id: z.string(), error: z.object({ code: z.string(), message: z.string() }) }).strict()]);
export const LeaseOutcomesReply = z.object({ outcomes: z.array(LeaseOutcomeReply) });

/** A job file's name: one path segment of printable characters (no `/`, no `..`). */
export const JobFileName = z
  .string()
  .min(1)
  .max(MAX_FILE_NAME_LENGTH)
  .regex(/^[A-Za-z0-9._-]+$/, `a file name is 1-${MAX_FILE_NAME_LENGTH} of A-Z a-z 0-9 . _ -`)
  .refine((n) => n !== "." && n !== "..", "a file name is not . or ..");
/**
 * A file's content type as stored and served (`type/subtype`, parameters
 * allowed): visible ASCII only, since it becomes an HTTP header.
 */
export const FileContentType = z
  .string()
  .max(255)
  .regex(/^[A-Za-z0-9!#$&^_.+-]+\/[A-Za-z0-9!#$&^_.+-]+(\s*;\s*[\x21-\x7e]+(\s+[\x21-\x7e]+)*)?$/, "a content type is type/subtype with optional parameters, in visible ASCII");
export const DEFAULT_FILE_CONTENT_TYPE = "application/octet-stream";
export const JobFile = z.object({ name: z.string(), size: z.number().int().nonnegative(), content_type: z.string(), created_at: isoTime });
export type JobFile = z.infer<typeof JobFile>;
export const JobFilesReply = z.object({ files: z.array(JobFile) });
/** Where a located file is: its object in the files bucket. */
export const LocatedFile = JobFile.extend({ object: z.string() });
export type LocatedFile = z.infer<typeof LocatedFile>;

/** The header of a compute server's file upload that names its lease. */
export const LEASE_ID_HEADER = "bosun-lease-id";
/**
 * A compute server's file upload, checked twice by the gateway: before the
 * bytes are stored (is the lease current?), and after (`stored`: is it
 * still? then the file is listed; if not, the gateway removes it).
 */
export const FileCheckRequest = z.object({ ...leaseCall, name: JobFileName, stored: z.boolean().default(false) }).strict();
export const FileCheckReply = z.object({ fencing_token: FencingToken, object: z.string() });
export type FileCheckReply = z.infer<typeof FileCheckReply>;
/** A compute server's read of a file of the job it holds the lease of (ctx.files.read): where it is, for the gateway's download. */
export const FileGetRequest = z.object({ ...leaseCall, name: JobFileName }).strict();

export const TargetInfo = z.object({
  target_id: z.string(),
  supervisors: z.array(z.string()),
  servers: z.array(z.string()),
  /** Queues whose active target this is. */
  active_for: z.array(z.string()),
  /** Queues its supervisors and servers serve. */
  queues: z.array(z.string()),
});
export const TargetsReply = z.object({ targets: z.array(TargetInfo) });
export const ActivateTargetRequest = z.object({ target_id: name("target_id"), queue: name("queue") }).strict();
export const ActivateTargetReply = z.object({ target_id: z.string(), queue: z.string(), previous: z.string() });
