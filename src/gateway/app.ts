/**
 * The gateway's Fastify app, built without listening (tests use inject()).
 * Every request/reply route is one NATS request to the `bosun` service; the
 * two event streams are NATS subscriptions. The gateway holds no job state.
 */
import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import { fastifySSE } from "@fastify/sse";
import fastifySwagger from "@fastify/swagger";
import fastifySwaggerUi from "@fastify/swagger-ui";
import { jetstreamManager } from "@nats-io/jetstream";
import { nuid, type NatsConnection } from "@nats-io/nats-core";
import type { Logger } from "pino";
import {
  api,
  BosunError,
  CORRELATION_HEADER,
  encodeJson,
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
import { RequestMux } from "../platform/request-mux.js";
import { hop, SpanKind, TRACEPARENT, type Hop } from "../platform/tracing.js";
import { registerDashboard } from "./dashboard.js";
import { jobEvents, workerHeartbeats } from "./events.js";
import { fromFastify, inContractShape, send, sendError, serverOptions } from "./http-errors.js";
import { lazyChildLogger } from "./lazy-logger.js";
import { natsCall } from "./nats-call.js";
import type { NatsLink } from "./nats-link.js";
import { Revocations } from "./revocations.js";
import { buildOpenApi } from "./openapi.js";
import { registerFileRoutes } from "./files.js";
import { handBackIfOrphaned } from "./orphaned-lease.js";
import { httpRoutes, JobParams, operations, WaitQuery, type HttpRoute } from "../contract/index.js";

declare module "fastify" {
  interface FastifyRequest {
    correlationId: string;
    /** The request's hop of its trace (API routes): its traceparent goes on to the supervisors. */
    trace: Hop | undefined;
    /** The body's bytes as received, when it parsed as JSON: forwarded as they are instead of re-encoded. */
    rawJson: Buffer | undefined;
  }
}

export interface GatewayDeps {
  nats: NatsLink;
  config: GatewayConfig;
  log: Logger;
  ops: OpsFlagsView;
}

export async function buildGateway({ nats, config, log, ops }: GatewayDeps): Promise<FastifyInstance> {
  const app: FastifyInstance = Fastify({
    loggerInstance: log as FastifyBaseLogger,
    // req.log is made only if a request logs at an enabled level: most log nothing.
    childLoggerFactory: lazyChildLogger,
    // Fastify's two multi-line lines per request become one line at debug (onResponse below).
    logController: new LogController({ disableRequestLogging: true }),
    ...serverOptions(config),
  });
  let closing = false;
  app.addHook("preClose", async () => {
    closing = true;
  });
  const metrics = new GatewayMetrics();
  const revocations = new Revocations(log);
  app.addHook("onClose", async () => revocations.stop());
  const openApi = buildOpenApi();

  // Accept JSON whatever the content type says (curl -d sends form encoding), as one parser.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("*", { parseAs: "buffer" }, (req, body, done) => {
    const text = body.toString("utf8");
    if (text.trim() === "") return done(null, undefined);
    try {
      const parsed: unknown = parseJson(text);
      req.rawJson = body as Buffer;
      done(null, parsed);
    } catch (err) {
      done(err as BosunError, undefined);
    }
  });

  app.decorateRequest("correlationId", "");
  app.decorateRequest("trace", undefined);
  app.decorateRequest("rawJson", undefined);
  app.addHook("onRequest", async (req, reply) => {
    req.correlationId = headerCorrelationId(req.headers[CORRELATION_HEADER]) ?? nuid.next();
    reply.header(CORRELATION_HEADER, req.correlationId);
    const route = req.routeOptions.url;
    if (route?.startsWith("/api/")) {
      const incoming = req.headers[TRACEPARENT];
      req.trace = hop(`${req.method} ${route}`, SpanKind.SERVER, typeof incoming === "string" ? incoming : undefined, {
        attributes: () => ({ "http.request.method": req.method, "http.route": route, "bosun.correlation_id": req.correlationId }),
      });
    }
    if (closing) throw new BosunError("unavailable", "this gateway is shutting down; retry on another");
    if (req.raw.httpVersion === "1.1" && !req.headers.host) throw new BosunError("validation_error", "an HTTP/1.1 request needs a Host header");
  });
  app.addHook("onSend", inContractShape);
  app.addHook("onResponse", async (req, reply) => {
    metrics.countHttpRequest(req.method, req.routeOptions.url ?? "unmatched", reply.statusCode);
    req.log.debug(
      { method: req.method, url: req.url, status: reply.statusCode, ms: Math.round(reply.elapsedTime), correlation_id: req.correlationId },
      "request",
    );
    if (req.trace) {
      req.trace.setAttribute("http.response.status_code", reply.statusCode);
      req.trace.end(reply.statusCode >= 500 ? { code: String(reply.statusCode), message: `HTTP ${reply.statusCode}` } : undefined);
    }
  });

  app.setErrorHandler((err: FastifyError | BosunError, req, reply) => sendError(reply, fromFastify(err), req.log));
  app.setNotFoundHandler((req, reply) => sendError(reply, new BosunError("not_found", `no route ${req.method} ${req.url}`), req.log));

  await app.register(fastifySSE, { heartbeatInterval: 15_000 });
  await app.register(fastifySwagger, { mode: "static", specification: { document: openApi as never } });
  await app.register(fastifySwaggerUi, { routePrefix: "/docs", theme: { title: "Bosun API", favicon: [BOSUN_ICON] }, logo: BOSUN_LOGO });
  await registerDashboard(app);

  // One request multiplexer per connection (NatsLink keeps one connection across reconnects).
  let muxed: { nc: NatsConnection; mux: RequestMux } | undefined;
  const muxFor = (nc: NatsConnection): RequestMux => {
    if (muxed?.nc !== nc) muxed = { nc, mux: new RequestMux(nc, log) };
    return muxed.mux;
  };
  app.addHook("onClose", async () => muxed?.mux.close());
  const call: Call = (subject, body, req, extraMs = 0) =>
    natsCall(muxFor(nats.get()), subject, body instanceof Uint8Array ? body : encodeJson(body), {
      timeoutMs: config.request_timeout_ms + extraMs,
      correlationId: req.correlationId,
      traceparent: req.trace?.traceparent,
      metrics,
      authorization: authorizationOf(req),
    });

  for (const route of httpRoutes) {
    if (route.operation === "jobs_submit" && route.url === "/api/jobs") registerSubmit(app, route, call, ops, metrics);
    else registerRoute(app, route, call);
  }
  await registerFileRoutes(app, call, nats, config.request_timeout_ms, log);

  app.get("/api/jobs/:job_id/events", { sse: { kind: "only", heartbeat: true } }, async (req, reply) => {
    const { job_id } = parseWith(JobParams, req.params);
    // Subscribed before the first read, so no change between the two is missed. That read,
    // made with the caller's key, is the supervisors' decision: another tenant's job is a 404.
    const nc = nats.get();
    const events = await jobEvents(nc, job_id, revocations.follow(nc, authorizationOf(req), closedSignal(req)), req.log as Logger);
    // No stream starts unless the read answers: its subscriptions end here on every other way out (a 503 throws).
    const first = await call(api.jobsGet, { job_id }, req).catch((err: unknown) => {
      events.close();
      throw err;
    });
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
    const nc = nats.get();
    await reply.sse.send(workerHeartbeats(nc, revocations.follow(nc, authorizationOf(req), closedSignal(req)), req.log as Logger));
  });

  app.get("/openapi.json", async () => openApi);
  app.get("/metrics", async (_req, reply) => reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()));
  app.get("/healthz", async () => ({ status: "ok" }));
  // Ready when NATS answers and every stream and bucket Bosun uses is there (a bucket is a stream too).
  app.get("/readyz", async (req, reply) => {
    let jsm;
    try {
      jsm = await jetstreamManager(nats.get(), { timeout: config.request_timeout_ms });
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

/** The /docs top bar and tab show Bosun, not the UI library's own logo. */
const BOSUN_LOGO = {
  type: "image/svg+xml",
  content:
    '<svg xmlns="http://www.w3.org/2000/svg" width="150" height="40" viewBox="0 0 150 40">' +
    '<text x="0" y="29" font-family="Helvetica, Arial, sans-serif" font-size="26" font-weight="700" fill="#ffffff">Bosun API</text></svg>',
};
const BOSUN_ICON = {
  filename: "bosun.svg",
  rel: "icon",
  type: "image/svg+xml",
  sizes: "any",
  content:
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="6" fill="#1f3a5f"/>' +
    '<text x="16" y="23" text-anchor="middle" font-family="Helvetica, Arial, sans-serif" font-size="20" font-weight="700" fill="#ffffff">B</text></svg>',
};

/** A NATS request for an HTTP call: bytes go as they are, anything else as its JSON. */
export type Call = (subject: string, body: unknown, req: FastifyRequest, extraMs?: number) => ReturnType<typeof natsCall>;

/**
 * A submit: `?wait_ms` (or `wait_ms` in the body, as over NATS) extends the
 * NATS timeout, and a job that finished within it answers 200. A body
 * wait_ms out of range is refused here, before any job is accepted.
 */
function registerSubmit(app: FastifyInstance, route: HttpRoute, call: Call, ops: OpsFlagsView, metrics: GatewayMetrics): void {
  app.route({
    method: route.method,
    url: route.url,
    handler: async (req, reply) => {
      try {
        const res = await submit(req);
        metrics.submits.inc({ outcome: res.status === 200 ? "finished" : res.status === 202 ? "accepted" : errorCodeOf(res.body) });
        return send(reply, res.status, res.body);
      } catch (err) {
        metrics.submits.inc({ outcome: err instanceof BosunError ? err.code : "internal_error" });
        throw err;
      }
    },
  });

  async function submit(req: FastifyRequest): Promise<{ status: number; body: unknown }> {
    const body = req.body === undefined ? {} : req.body;
    const inBody = isPlainObject(body) ? body.wait_ms : undefined;
    if (inBody !== undefined && !(Number.isInteger(inBody) && (inBody as number) >= 0 && (inBody as number) <= MAX_WAIT_MS)) {
      throw new BosunError("validation_error", `wait_ms: must be an integer from 0 to ${MAX_WAIT_MS}`);
    }
    const inQuery = parseWith(WaitQuery, req.query).wait_ms;
    const wait_ms = inQuery ?? (inBody as number | undefined);
    const queue = isPlainObject(body) && typeof body.queue === "string" ? body.queue : "default";
    // Paused here as well as in the supervisors: a paused queue costs no NATS round trip.
    if (ops.submissionsPaused(queue)) throw new BosunError("unavailable", `submissions to queue "${queue}" are paused by an operator`, { queue });
    // The client's bytes go on as they came; a ?wait_ms is added to them (a body's own wait_ms is in them already).
    const forwarded = inQuery === undefined ? (req.rawJson ?? body) : isPlainObject(body) ? withWaitMs(body, req.rawJson, inQuery) : body;
    const res = await call(operations[route.operation].subject, forwarded, req, wait_ms ?? 0);
    const state = (res.body as { state?: JobState } | null)?.state;
    const status = res.status === 200 ? (state && FINAL_STATES.has(state) ? 200 : (route.status ?? 200)) : res.status;
    return { status, body: res.body };
  }
}

const errorCodeOf = (body: unknown): string => (body as { error?: { code?: string } } | null)?.error?.code ?? "unknown";

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
      // A long poll (a compute lease's wait_ms) waits that much longer than a plain request.
      const waitMs = isPlainObject(request) && typeof request.wait_ms === "number" ? request.wait_ms : 0;
      const res = await call(operations[route.operation].subject, request, req, waitMs);
      if (res.status !== 200) return send(reply, res.status, res.body);
      // Nobody to answer: 204 to a closed socket writes nothing.
      if (route.operation === "compute_lease" && (await handBackIfOrphaned(call, req, res.body))) return reply.code(204).send();
      if (route.noContent?.(res.body)) return reply.code(204).send();
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

/**
 * The submit body with `wait_ms` added, without re-encoding what the client
 * sent: the field goes in before the object's closing brace (a repeated key
 * reads as its last value, so it wins over one the body had).
 */
function withWaitMs(body: Record<string, unknown>, raw: Buffer | undefined, waitMs: number): Uint8Array | Record<string, unknown> {
  if (!raw) return { ...body, wait_ms: waitMs };
  const end = raw.lastIndexOf(0x7d); // "}"
  const field = `${Object.keys(body).length > 0 ? "," : ""}"wait_ms":${waitMs}}`;
  return Buffer.concat([raw.subarray(0, end), Buffer.from(field)]);
}

/** HEAD of an event stream: its headers, no events (a HEAD request has no body to stream into). */
const headOfStream = (reply: FastifyReply): FastifyReply => reply.code(200).header("content-type", "text/event-stream").header("cache-control", "no-cache").send();
