/**
 * The gateway's Fastify app, built without listening (tests use inject()).
 * Every request/reply route is one NATS request to the `bosun` service; the
 * two event streams are NATS subscriptions. The gateway holds no job state.
 */
import Fastify, { type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import { fastifySSE } from "@fastify/sse";
import fastifySwagger from "@fastify/swagger";
import fastifySwaggerUi from "@fastify/swagger-ui";
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstreamManager } from "@nats-io/jetstream";
import { nuid } from "@nats-io/nats-core";
import type { Logger } from "pino";
import {
  api,
  BosunError,
  CORRELATION_HEADER,
  FINAL_STATES,
  headerCorrelationId,
  parseJson,
  parseWith,
  MAX_WAIT_MS,
  type JobState,
  type JobStatus,
} from "../contract/index.js";
import type { GatewayConfig } from "../platform/config.js";
import { TOPOLOGY_STREAMS } from "../platform/nats.js";
import { GatewayMetrics } from "../platform/metrics.js";
import type { OpsFlagsView } from "../platform/ops.js";
import { jobEvents, workerHeartbeats } from "./events.js";
import { fromFastify, inContractShape, send, sendError, serverOptions } from "./http-errors.js";
import { natsCall } from "./nats-call.js";
import { Revocations } from "./revocations.js";
import { buildOpenApi } from "./openapi.js";
import { httpRoutes, JobParams, operations, WaitQuery, type HttpRoute } from "../contract/index.js";

declare module "fastify" {
  interface FastifyRequest {
    correlationId: string;
  }
}

export interface GatewayDeps {
  nc: NatsConnection;
  config: GatewayConfig;
  log: Logger;
  ops: OpsFlagsView;
}

export async function buildGateway({ nc, config, log, ops }: GatewayDeps): Promise<FastifyInstance> {
  const app: FastifyInstance = Fastify({ loggerInstance: log as FastifyBaseLogger, ...serverOptions(config) });
  let closing = false;
  app.addHook("preClose", async () => {
    closing = true;
  });
  const metrics = new GatewayMetrics();
  const revocations = new Revocations(nc, log);
  app.addHook("onClose", async () => revocations.stop());
  const openApi = buildOpenApi();

  // Accept JSON whatever the content type says (curl -d sends form encoding), as one parser.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("*", { parseAs: "string" }, (_req, body, done) => {
    const text = String(body);
    if (text.trim() === "") return done(null, undefined);
    try {
      done(null, parseJson(text));
    } catch (err) {
      done(err as BosunError, undefined);
    }
  });

  app.decorateRequest("correlationId", "");
  app.addHook("onRequest", async (req, reply) => {
    req.correlationId = headerCorrelationId(req.headers[CORRELATION_HEADER]) ?? nuid.next();
    reply.header(CORRELATION_HEADER, req.correlationId);
    if (closing) throw new BosunError("unavailable", "this gateway is shutting down; retry on another");
    if (req.raw.httpVersion === "1.1" && !req.headers.host) throw new BosunError("validation_error", "an HTTP/1.1 request needs a Host header");
  });
  app.addHook("onSend", inContractShape);
  app.addHook("onResponse", async (req, reply) => {
    metrics.httpRequests.inc({ method: req.method, route: req.routeOptions.url ?? "unmatched", status: String(reply.statusCode) });
  });

  app.setErrorHandler((err: FastifyError | BosunError, req, reply) => sendError(reply, fromFastify(err), req.log));
  app.setNotFoundHandler((req, reply) => sendError(reply, new BosunError("not_found", `no route ${req.method} ${req.url}`), req.log));

  await app.register(fastifySSE, { heartbeatInterval: 15_000 });
  await app.register(fastifySwagger, { mode: "static", specification: { document: openApi as never } });
  await app.register(fastifySwaggerUi, { routePrefix: "/docs" });

  const call = (subject: string, body: unknown, req: FastifyRequest, extraMs = 0) =>
    natsCall(nc, subject, body, { timeoutMs: config.request_timeout_ms + extraMs, correlationId: req.correlationId, metrics, authorization: authorizationOf(req) });

  for (const route of httpRoutes) {
    if (route.operation === "jobs_submit" && route.url === "/api/jobs") registerSubmit(app, route, call, ops);
    else registerRoute(app, route, call);
  }

  app.get("/api/jobs/:job_id/events", { sse: { kind: "only", heartbeat: true } }, async (req, reply) => {
    const { job_id } = parseWith(JobParams, req.params);
    // Subscribed before the first read, so no change between the two is missed. That read,
    // made with the caller's key, is the supervisors' decision: another tenant's job is a 404.
    const events = await jobEvents(nc, job_id, revocations.follow(authorizationOf(req), closedSignal(req)), req.log as Logger);
    const first = await call(api.jobsGet, { job_id }, req);
    if (first.status !== 200 || req.method === "HEAD") {
      events.close();
      return first.status !== 200 ? send(reply, first.status, first.body) : headOfStream(reply);
    }
    await reply.sse.send(events.stream(first.body as JobStatus));
  });

  app.get("/api/platform/workers/stream", { sse: { kind: "only", heartbeat: true } }, async (req, reply) => {
    // The supervisors' decision for this caller, as for GET /api/platform/workers (the same operation).
    const allowed = await call(api.workersList, {}, req);
    if (allowed.status !== 200) return send(reply, allowed.status, allowed.body);
    if (req.method === "HEAD") return headOfStream(reply);
    await reply.sse.send(workerHeartbeats(nc, revocations.follow(authorizationOf(req), closedSignal(req)), req.log as Logger));
  });

  app.get("/openapi.json", async () => openApi);
  app.get("/metrics", async (_req, reply) => reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()));
  app.get("/healthz", async () => ({ status: "ok" }));
  // Ready when NATS answers and every stream and bucket Bosun uses is there (a bucket is a stream too).
  app.get("/readyz", async (req, reply) => {
    let jsm;
    try {
      jsm = await jetstreamManager(nc, { timeout: config.request_timeout_ms });
    } catch (err) {
      return sendError(reply, new BosunError("unavailable", "NATS is not reachable", undefined, { cause: err }), req.log);
    }
    const missing: string[] = [];
    await Promise.all(TOPOLOGY_STREAMS.map((name) => jsm.streams.info(name).catch(() => missing.push(name))));
    if (missing.length > 0) return sendError(reply, new BosunError("unavailable", `not ready: missing ${missing.sort().join(", ")}`, { missing }), req.log);
    return { status: "ready" };
  });

  return app;
}

type Call = (subject: string, body: unknown, req: FastifyRequest, extraMs?: number) => ReturnType<typeof natsCall>;

/**
 * A submit: `?wait_ms` (or `wait_ms` in the body, as over NATS) extends the
 * NATS timeout, and a job that finished within it answers 200. A body
 * wait_ms out of range is refused here, before any job is accepted.
 */
function registerSubmit(app: FastifyInstance, route: HttpRoute, call: Call, ops: OpsFlagsView): void {
  app.route({
    method: route.method,
    url: route.url,
    handler: async (req, reply) => {
      const body = req.body === undefined ? {} : req.body;
      const inBody = isPlainObject(body) ? body.wait_ms : undefined;
      if (inBody !== undefined && !(Number.isInteger(inBody) && (inBody as number) >= 0 && (inBody as number) <= MAX_WAIT_MS)) {
        throw new BosunError("validation_error", `wait_ms: must be an integer from 0 to ${MAX_WAIT_MS}`);
      }
      const wait_ms = parseWith(WaitQuery, req.query).wait_ms ?? (inBody as number | undefined);
      const queue = isPlainObject(body) && typeof body.queue === "string" ? body.queue : "default";
      // Paused here as well as in the supervisors: a paused queue costs no NATS round trip.
      if (ops.submissionsPaused(queue)) throw new BosunError("unavailable", `submissions to queue "${queue}" are paused by an operator`, { queue });
      const forwarded = wait_ms !== undefined && isPlainObject(body) ? { ...body, wait_ms } : body;
      const res = await call(operations[route.operation].subject, forwarded, req, wait_ms ?? 0);
      const state = (res.body as { state?: JobState } | null)?.state;
      const status = res.status === 200 ? (state && FINAL_STATES.has(state) ? 200 : (route.status ?? 200)) : res.status;
      return send(reply, status, res.body);
    },
  });
}

function registerRoute(app: FastifyInstance, route: HttpRoute, call: Call): void {
  app.route({
    method: route.method,
    url: route.url,
    handler: async (req, reply) => {
      const input = {
        params: route.params ? parseWith(route.params, req.params) : {},
        query: route.query ? parseWith(route.query, req.query) : {},
        body: route.body ? parseWith(route.body, req.body ?? {}) : undefined,
      };
      const request = route.toRequest ? route.toRequest(input) : { ...input.params, ...input.query, ...(isPlainObject(input.body) ? input.body : {}) };
      const res = await call(operations[route.operation].subject, request, req);
      if (res.status !== 200) return send(reply, res.status, res.body);
      return send(reply, route.status ?? 200, route.fromReply ? route.fromReply(res.body) : res.body);
    },
  });
}

/** Aborts when the client goes away, so a stream's NATS subscription ends with it. */
function closedSignal(req: FastifyRequest): AbortSignal {
  const abort = new AbortController();
  req.raw.once("close", () => abort.abort());
  return abort.signal;
}

/** The HTTP Authorization header, forwarded to the supervisors (one value: a repeated header is not a key). */
const authorizationOf = (req: FastifyRequest): string | undefined => {
  const value = req.headers.authorization;
  return typeof value === "string" && value !== "" ? value : undefined;
};

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/** HEAD of an event stream: its headers, no events (a HEAD request has no body to stream into). */
const headOfStream = (reply: FastifyReply): FastifyReply => reply.code(200).header("content-type", "text/event-stream").header("cache-control", "no-cache").send();
