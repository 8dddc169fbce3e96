/**
 * Where a submit goes (CONTRACT.md "Targets and ops flags"): into the lane
 * of its queue's active target, written here when this supervisor runs the
 * type there, else forwarded to a supervisor of that target that does, else
 * accepted for the remote compute servers that serve the target; with none
 * of them, refused 422 as a type nobody serves.
 */
import { errors, headers as natsHeaders, type NatsConnection } from "@nats-io/nats-core";
import { BosunError, controlSubject, CORRELATION_HEADER, encodeJson, DEFAULT_TARGET, type JobResult, type SubmitReply, type SubmitRequest } from "../contract/index.js";
import type { HandlerDefinition } from "../actors/handlers.js";
import { readReply } from "../platform/nats.js";
import { AUTHORIZATION_HEADER } from "../auth/index.js";
import { TRACEPARENT } from "../platform/tracing.js";

export interface RouteDeps {
  nc: NatsConnection;
  workerId: string;
  /** This supervisor's target (`--target`). */
  target: string;
  queues: readonly string[];
  handlers: ReadonlyMap<string, HandlerDefinition>;
  /** The target the queue's new jobs go to, from the ops flags. */
  activeTarget(queue: string): string;
  /** Live supervisors of this target serving this type on this queue (this one included). */
  serversOf(type: string, queue: string, target: string): string[];
  /** Whether remote compute servers serve this queue for this target (they lease any type). */
  remoteServes(queue: string, target: string): boolean;
  /** A supervisor that turned out not to be there. */
  forgetWorker(workerId: string): void;
}

/**
 * `here`: written by this supervisor into the target's lane; `handler` is
 * this supervisor's, or undefined for a job only remote servers will run
 * (its payload is theirs to check, its defaults this supervisor's config).
 */
export type Route = { kind: "here"; target: string; handler: HandlerDefinition | undefined } | { kind: "forward"; target: string; to: string[] };

export function routeSubmit(deps: RouteDeps, req: SubmitRequest, forwarded: boolean): Route {
  // A forwarded submit was sent here as to a supervisor of the active target its sender saw: that
  // decision stands (a switch this supervisor has not seen yet, or has and the sender had not, moves nothing).
  const target = forwarded ? deps.target : deps.activeTarget(req.queue);
  const handler = target === deps.target && deps.queues.includes(req.queue) ? deps.handlers.get(req.type) : undefined;
  if (handler) return { kind: "here", target, handler };
  // Forwarded once at most: a second hop could bounce between two supervisors that disagree.
  const others = forwarded ? [] : deps.serversOf(req.type, req.queue, target).filter((w) => w !== deps.workerId);
  if (others.length > 0) return { kind: "forward", target, to: others };
  if (!forwarded && deps.remoteServes(req.queue, target)) return { kind: "here", target, handler: undefined };
  throw nobodyServes(req, target);
}

const nobodyServes = (req: SubmitRequest, target: string): BosunError =>
  new BosunError(
    "unknown_type",
    `no live supervisor serves job type "${req.type}" on queue "${req.queue}"${target === DEFAULT_TARGET ? "" : ` for its active target "${target}"`}`,
    { type: req.type, queue: req.queue, target },
  );

const FORWARD_TIMEOUT_MS = 5000;
/** Supervisors a submit is offered to before it is refused (each costs a no-responders round trip when gone). */
const MAX_FORWARD_TRIES = 3;

export interface ForwardContext {
  correlationId?: string;
  traceparent?: string;
  authorization?: string;
}

/**
 * Forwards to one of the supervisors whose heartbeats say they serve the
 * type, in random order. One that has no subscription on its control
 * subject is no supervisor at all (a spoofed or stale heartbeat): it is
 * forgotten and the next is tried, so it cannot turn a 422 into a 503.
 */
export async function forwardToAny(deps: RouteDeps, route: Extract<Route, { kind: "forward" }>, req: SubmitRequest, ctx: ForwardContext): Promise<SubmitReply | JobResult> {
  const order = [...route.to].sort(() => Math.random() - 0.5);
  for (const workerId of order.slice(0, MAX_FORWARD_TRIES)) {
    const headers = natsHeaders();
    if (ctx.correlationId) headers.set(CORRELATION_HEADER, ctx.correlationId);
    if (ctx.traceparent) headers.set(TRACEPARENT, ctx.traceparent);
    if (ctx.authorization) headers.set(AUTHORIZATION_HEADER, ctx.authorization);
    let reply;
    try {
      reply = await deps.nc.request(controlSubject(workerId, "submit"), encodeJson(req), { timeout: (req.wait_ms ?? 0) + FORWARD_TIMEOUT_MS, headers });
    } catch (err) {
      if (err instanceof errors.RequestError && err.isNoResponders()) {
        deps.forgetWorker(workerId);
        continue;
      }
      throw new BosunError("unavailable", `supervisor ${workerId}, which serves "${req.type}", did not answer`, undefined, { cause: err });
    }
    return readReply<SubmitReply | JobResult>(reply);
  }
  throw nobodyServes(req, route.target);
}
