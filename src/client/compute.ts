/**
 * A remote compute server's side of the lease protocol over a gateway's
 * HTTP API (CONTRACT.md "Remote compute servers"): enroll, lease, heartbeat,
 * result, failed. Every answer is input: it is checked against the
 * contract's schema, and one that does not fit is an `internal_error` (a
 * proxy's page, a gateway of another version), never a value taken on
 * trust. Lease expiries are turned into this machine's clock, so a server
 * whose clock is off still heartbeats in time.
 */
import type { z } from "zod";
import { EnrolledServer, LeaseEndReply, LeaseHeartbeatReply, LeaseOutcomesReply, LeaseReply, type EnrollServerRequest, type LeasedJob } from "../contract/compute.js";
import type { JobError } from "../contract/schemas.js";
import type { CallOptions } from "./client.js";
import { InternalError } from "./errors.js";
import { HttpTransport, type AnswerHeaders } from "./http.js";
import { nodeExchange } from "./node-http.js";
import { routeTable } from "./routes.js";

export interface LeasedRun {
  job: LeasedJob;
  lease_id: string;
  fencing_token: number;
  /** When the lease lapses, on this machine's clock (epoch ms). */
  expiresAt: number;
}

export type LeaseEnd = z.output<typeof LeaseEndReply>;

/** A run's outcome as posted: its value, or its error and whether another attempt may follow. */
export interface LeaseOutcome {
  run: LeasedRun;
  outcome: { ok: true; value: unknown } | { ok: false; error: JobError; retryable: boolean };
}

export class ComputeClient {
  readonly #http: HttpTransport;

  /** `credential` is the server's, from enroll (absent: only `enroll` works). */
  constructor(gateway: string, credential?: string) {
    this.#http = new HttpTransport(routeTable(), { url: gateway, exchange: nodeExchange, ...(credential !== undefined && { key: credential }) });
  }

  async enroll(req: EnrollServerRequest): Promise<z.output<typeof EnrolledServer>> {
    return (await this.#send("compute_servers_enroll", req, EnrolledServer)).body;
  }

  /** One job within waitMs, or undefined when the wait ran out (204). */
  async lease(waitMs: number, types: readonly string[] | undefined, opts?: CallOptions): Promise<LeasedRun | undefined> {
    return (await this.leaseMany(1, waitMs, types, opts))[0];
  }

  /** Up to maxJobs jobs: within waitMs for the first, with those ready beside it; none when the wait ran out. */
  async leaseMany(maxJobs: number, waitMs: number, types: readonly string[] | undefined, opts?: CallOptions): Promise<LeasedRun[]> {
    const request = { wait_ms: waitMs, ...(types && { types }), ...(maxJobs > 1 && { max_jobs: maxJobs }) };
    const { body, headers } = await this.#send("compute_lease", request, LeaseReply, opts, { job: null, lease: null });
    if (!body.job) return [];
    return [{ job: body.job, lease: body.lease }, ...(body.more ?? [])].map(({ job, lease }) => ({ job, lease_id: lease.lease_id, fencing_token: lease.fencing_token, expiresAt: localTime(lease.expires_at, headers) }));
  }

  /** Extends the lease: its new expiry on this machine's clock. */
  async heartbeat(run: LeasedRun, progress: number | undefined): Promise<number> {
    const { body, headers } = await this.#send("compute_heartbeat", { job_id: run.job.job_id, lease_id: run.lease_id, ...(progress !== undefined && { progress }) }, LeaseHeartbeatReply);
    return localTime(body.expires_at, headers);
  }

  async result(run: LeasedRun, result: unknown): Promise<LeaseEnd> {
    return (await this.#send("compute_result", { job_id: run.job.job_id, lease_id: run.lease_id, result: result ?? null }, LeaseEndReply)).body;
  }

  async failed(run: LeasedRun, error: JobError, retryable: boolean): Promise<LeaseEnd> {
    return (await this.#send("compute_failed", { job_id: run.job.job_id, lease_id: run.lease_id, error, retryable }, LeaseEndReply)).body;
  }

  /** Several leases' outcomes in one call; each answer says how its lease ended, or why it was refused. */
  async outcomes(items: readonly LeaseOutcome[]): Promise<z.output<typeof LeaseOutcomesReply>["outcomes"]> {
    const outcomes = items.map(({ run, outcome }) =>
      outcome.ok ? { job_id: run.job.job_id, lease_id: run.lease_id, result: outcome.value ?? null } : { job_id: run.job.job_id, lease_id: run.lease_id, error: outcome.error, retryable: outcome.retryable },
    );
    return (await this.#send("compute_outcomes", { outcomes }, LeaseOutcomesReply)).body.outcomes;
  }

  async #send<S extends z.ZodType>(operation: string, input: object, schema: S, opts?: CallOptions, noContent?: z.input<S>): Promise<{ body: z.output<S>; headers: AnswerHeaders }> {
    const { body, headers } = await this.#http.send(operation, input, opts);
    const parsed = schema.safeParse(body ?? noContent);
    if (!parsed.success) throw new InternalError("internal_error", `the gateway's answer to ${operation} is not one of Bosun's: ${parsed.error.issues[0]?.message ?? "invalid"}`);
    return { body: parsed.data, headers };
  }
}

/**
 * A gateway time on this machine's clock: its distance from the answer's
 * `Date` (the gateway's clock when it answered), counted from now, when the
 * answer is in. Without a usable `Date`, taken as is.
 */
function localTime(iso: string, headers: AnswerHeaders): number {
  const at = Date.parse(iso);
  const gatewayNow = Date.parse(headers.get("date") ?? "");
  if (!Number.isFinite(gatewayNow)) return at;
  // Date is whole seconds: the gateway's true now was up to 1 s later, so the span left is up to 1 s shorter.
  return Date.now() + Math.max(0, at - gatewayNow - 1000);
}
