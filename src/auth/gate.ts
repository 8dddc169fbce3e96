/**
 * The one authorization decision. Every request a supervisor serves (the
 * `bosun` service's endpoints and the control subjects other supervisors
 * forward to) passes through `admit` before its handler runs: who the key
 * is (401), whether the operation's `access` lets it in (403), and for a
 * tenant key the tenant scoping of the operation (its own jobs only; any
 * other job is 404 exactly like an unknown id; its submits and listings are
 * its tenant's). The gateway decides nothing: it forwards the key.
 */
import type { MsgHdrs } from "@nats-io/nats-core";
import type { z } from "zod";
import { BosunError, isJobId, laneOf, operations, type OperationName, type SubmitRequest } from "../contract/index.js";
import type { Lane } from "../records/index.js";
import { OPEN, type KeyStore, type Principal } from "./keys.js";
import { authorizationHeaderOf, bearerOf, type AuthSettings } from "./settings.js";

/** Job types only an admin key may submit, by whichever route. */
export const ADMIN_JOB_TYPE_PREFIX = "maintenance.";

type Input<N extends OperationName> = z.output<(typeof operations)[N]["request"]>;
type Scope<N extends OperationName> = (gate: Gate, who: TenantKey, input: Input<N>) => Promise<Input<N>>;
type TenantKey = Extract<Principal, { admin: false }>;

export interface LaneLookup {
  /** The lane of this code, read from the registry on a miss; undefined when there is none. */
  lookup(code: string): Promise<Lane | undefined>;
}

/** Checks a remote compute server's credential (src/compute/servers.ts): 401 unless it is a live server's. */
export interface ServerCredentials {
  verify(headers: MsgHdrs | undefined): Promise<unknown>;
}

export class Gate {
  #servers: ServerCredentials | undefined;

  constructor(
    private readonly settings: AuthSettings,
    private readonly keys: KeyStore,
    private readonly lanes: LaneLookup,
  ) {}

  /** Compute operations are refused until the compute service is there to check their credentials. */
  checkServersWith(servers: ServerCredentials): void {
    this.#servers = servers;
  }

  /** Who sends a request with these headers: 401 without a valid key while auth is on. */
  async principal(headers: MsgHdrs | undefined): Promise<Principal> {
    if (!this.settings.on) return OPEN;
    const key = bearerOf(authorizationHeaderOf(headers));
    if (key === undefined) throw new BosunError("unauthorized", "an API key is needed: send Authorization: Bearer <key>");
    const who = await this.keys.verify(key);
    if (!who) throw new BosunError("unauthorized", "unknown or revoked API key");
    return who;
  }

  /**
   * The request as this caller may make it (a tenant key's scoping applied),
   * or the error it gets. The key is checked before the body is decoded: a
   * caller without one learns nothing else.
   */
  async admit<N extends OperationName>(name: N, headers: MsgHdrs | undefined, decode: () => Input<N>): Promise<Input<N>> {
    const access = operations[name].access;
    // A compute server's credential, not an API key, whether auth is on or off; enrolling carries its token in the body.
    if (access === "enroll") return decode();
    if (access === "compute") {
      if (!this.#servers) throw new BosunError("unavailable", "compute servers are not served here yet");
      await this.#servers.verify(headers);
      return decode();
    }
    const who = await this.principal(headers);
    if (!who.admin && operations[name].access !== "tenant") throw new BosunError("forbidden", `${name} needs an admin key`);
    const input = decode();
    if (who.admin) return input;
    const scope = tenantScopes[name] as Scope<N> | undefined;
    // Fail closed: a tenant operation nobody said how to confine is refused (test/auth.test.ts checks there is none).
    if (!scope) throw new BosunError("forbidden", `${name} is not open to tenant keys yet`);
    return scope(this, who, input);
  }

  /** Another tenant's job is not there, for this caller: the same 404 as an id never given out. */
  async ownJob(who: TenantKey, jobId: string): Promise<void> {
    // An id Bosun never gave out has no lane: the handler answers its 404 like for anyone.
    if (!isJobId(jobId)) return;
    const lane = await this.lanes.lookup(laneOf(jobId));
    if (lane?.tenant !== who.tenant) throw new BosunError("not_found", `no job ${jobId}`);
  }
}

/** A tenant key's submit: its tenant's (another tenant in the body is 403), never an admin job type. */
export function scopeSubmit<T extends Pick<SubmitRequest, "type" | "tenant">>(who: TenantKey, req: T): T {
  if (typeof req.type === "string" && req.type.startsWith(ADMIN_JOB_TYPE_PREFIX)) throw new BosunError("forbidden", `job type ${req.type} needs an admin key`);
  if (req.tenant !== undefined && req.tenant !== who.tenant) throw new BosunError("forbidden", `this key submits for tenant ${who.tenant} only`);
  return { ...req, tenant: who.tenant };
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

const ownJob = async <T extends { job_id: string }>(gate: Gate, who: TenantKey, input: T): Promise<T> => {
  await gate.ownJob(who, input.job_id);
  return input;
};

/** Per operation a tenant key may call, how it is confined to its tenant: a new such operation must say. */
export const tenantScopes: { [N in OperationName]?: Scope<N> } = {
  jobs_submit: async (_gate, who, req) => scopeSubmit(who, req),
  // Entries are validated one by one later; the scoping applies to each (a forbidden one refuses the batch).
  jobs_submit_batch: async (_gate, who, req) => ({
    ...req,
    jobs: req.jobs.map((entry) => (isObject(entry) ? scopeSubmit(who, entry as Pick<SubmitRequest, "type" | "tenant">) : entry)),
  }),
  jobs_get: ownJob,
  jobs_result: ownJob,
  jobs_cancel: ownJob,
  jobs_retry: ownJob,
  jobs_files_list: ownJob,
  jobs_files_get: ownJob,
  jobs_list: async (_gate, who, req) => {
    if (req.tenant !== undefined && req.tenant !== who.tenant) throw new BosunError("forbidden", `this key lists tenant ${who.tenant} only`);
    return { ...req, tenant: who.tenant };
  },
};
