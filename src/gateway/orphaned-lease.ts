/**
 * A compute server's lease long-poll that was granted after the server
 * went away (killed, or its poll aborted by a drain): nobody will run the
 * job, and left alone it would wait out its lease before running elsewhere.
 * The gateway sees the client's socket gone when the grant comes back and
 * ends the lease at once as a hand-back (`failed` with code `shutdown`, the
 * code a compute worker's drain uses), under the server's own credential.
 */
import type { FastifyRequest } from "fastify";
import { api, LeaseOutcomesReply, LeaseReply } from "../contract/index.js";
import type { Call } from "./app.js";

/** True when the lease reply had jobs and the client was gone: the leases were handed back (or that was tried). */
export async function handBackIfOrphaned(call: Call, req: FastifyRequest, body: unknown): Promise<boolean> {
  if (!req.raw.socket.destroyed) return false;
  const granted = LeaseReply.safeParse(body);
  if (!granted.success || !granted.data.job) return false;
  const { job, lease, more = [] } = granted.data;
  const grants = [{ job, lease }, ...more];
  const error = { code: "shutdown", message: "the compute server went away before its lease reached it" };
  const outcomes = grants.map((g) => ({ job_id: g.job.job_id, lease_id: g.lease.lease_id, error, retryable: true }));
  const ended = await call(api.computeOutcomes, { outcomes }, req).catch((err: unknown) => ({ status: 0, body: err }));
  const answer = ended.status === 200 ? LeaseOutcomesReply.safeParse(ended.body) : undefined;
  const refused = new Map(answer?.success ? answer.data.outcomes.flatMap((o) => ("error" in o ? [[o.job_id, o.error] as const] : [])) : []);
  for (const g of grants) {
    const logCtx = { job_id: g.job.job_id, correlation_id: g.job.correlation_id, lease_id: g.lease.lease_id };
    const err = answer?.success ? refused.get(g.job.job_id) : ended.body;
    if (err === undefined) req.log.warn(logCtx, "lease handed back: its compute server went away before the lease reached it");
    else req.log.warn({ ...logCtx, status: ended.status, err }, "could not hand back a lease whose compute server went away; it runs again once the lease expires");
  }
  return true;
}
