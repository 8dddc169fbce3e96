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
  parseWith,
  RETRY_AFTER_SECONDS,
  streams,
  toBosunError,
  type JobState,
} from "../contract/index.js";
import type { GatewayConfig } from "../platform/config.js";
import { GatewayMetrics } from "../platform/metrics.js";
import type { OpsFlagsView } from "../platform/ops.js";
import { RequestMux } from "../platform/request-mux.js";
import { jobEvents, workerHeartbeats } from "./events.js";
import { lazyChildLogger } from "./lazy-logger.js";
import { natsCall } from "./nats-call.js";
import { buildOpenApi } from "./openapi.js";
import type { NatsLink } from "./nats-link.js";
import { registerDashboard } from "./dashboard.js";
import { hop, SpanKind, TRACEPARENT, type Hop } from "../platform/tracing.js";
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
  // Fastify's own 503 while closing has another body shape; the onRequest hook answers instead.
  // Fastify's two multi-line lines per request become one line at debug (onResponse below).
  const app: FastifyInstance = Fastify({
    loggerInstance: log as FastifyBaseLogger,
    // req.log is made only if a request logs at an enabled level: most log nothing.
    childLoggerFactory: lazyChildLogger,
    bodyLimit: config.body_limit_bytes,
    return503OnClosing: false,
    logController: new LogController({ disableRequestLogging: true }),
  });
  let closing = false;
  app.addHook("preClose", async () => {
    closing = true;
  });
  const metrics = new GatewayMetrics();
  const openApi = buildOpenApi();

  // Accept JSON whatever the content type says (curl -d sends form encoding), as one parser.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("*", { parseAs: "buffer" }, (req, body, done) => {
    const text = body.toString("utf8");
    if (text.trim() === "") return done(null, undefined);
    try {
      const parsed: unknown = JSON.parse(text);
      req.rawJson = body as Buffer;
      done(null, parsed);
    } catch {
      done(new BosunError("invalid_json", "body is not valid JSON"), undefined);
    }
  });

  app.decorateRequest("correlationId", "");
  app.decorateRequest("trace", undefined);
  app.decorateRequest("rawJson", undefined);
  app.addHook("onRequest", async (req, reply) => {
    const given = req.headers[CORRELATION_HEADER];
    req.correlationId = (typeof given === "string" && given.length > 0 && given.length <= 128 ? given : undefined) ?? nuid.next();
    reply.header(CORRELATION_HEADER, req.correlationId);
    const route = req.routeOptions.url;
    if (route?.startsWith("/api/")) {
      const incoming = req.headers[TRACEPARENT];
      req.trace = hop(`${req.method} ${route}`, SpanKind.SERVER, typeof incoming === "string" ? incoming : undefined, {
        start: true,
        attributes: () => ({ "http.request.method": req.method, "http.route": route, "bosun.correlation_id": req.correlationId }),
      });
    }
    if (closing) throw new BosunError("unavailable", "this gateway is shutting down; retry on another");
  });
  app.addHook("onResponse", async (req, reply) => {
    const route = req.routeOptions.url ?? "unmatched";
    metrics.countHttpRequest(req.method, route, reply.statusCode);
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
    if (muxed?.nc !== nc) muxed = { nc, mux: new RequestMux(nc) };
    return muxed.mux;
  };
  app.addHook("onClose", async () => muxed?.mux.close());
  const call: Call = (subject, body, req, extraMs = 0) =>
    natsCall(muxFor(nats.get()), subject, body instanceof Uint8Array ? body : encodeJson(body), {
      timeoutMs: config.request_timeout_ms + extraMs,
      correlationId: req.correlationId,
      traceparent: req.trace?.traceparent,
      metrics,
    });

  for (const route of httpRoutes) {
    if (route.operation === "jobs_submit" && route.url === "/api/jobs") registerSubmit(app, route, call, ops, metrics);
    else registerRoute(app, route, call);
  }

  app.get("/api/jobs/:job_id/events", { sse: { kind: "only", heartbeat: true } }, async (req, reply) => {
    const { job_id } = parseWith(JobParams, req.params);
    const first = await call(api.jobsGet, { job_id }, req);
    if (first.status !== 200) return send(reply, first.status, first.body);
    await reply.sse.send(jobEvents(nats.get(), job_id, closedSignal(req)));
  });

  app.get("/api/platform/workers/stream", { sse: { kind: "only", heartbeat: true } }, async (req, reply) => {
    await reply.sse.send(workerHeartbeats(nats.get(), closedSignal(req)));
  });

  app.get("/openapi.json", async () => openApi);
  app.get("/metrics", async (_req, reply) => reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()));
  app.get("/healthz", async () => ({ status: "ok" }));
  app.get("/readyz", async (req, reply) => {
    try {
      const jsm = await jetstreamManager(nats.get(), { timeout: config.request_timeout_ms });
      await jsm.streams.info(streams.jobs);
      return { status: "ready" };
    } catch (err) {
      return sendError(reply, new BosunError("unavailable", "NATS or the jobs stream is not reachable", undefined, { cause: err }), req.log);
    }
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
type Call = (subject: string, body: unknown, req: FastifyRequest, extraMs?: number) => ReturnType<typeof natsCall>;

/** A submit: `?wait_ms` extends the NATS timeout, and a job that finished within it answers 200. */
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
    const { wait_ms } = parseWith(WaitQuery, req.query);
    const body = req.body === undefined ? {} : req.body;
    const queue = isPlainObject(body) && typeof body.queue === "string" ? body.queue : "default";
    // Paused here as well as in the supervisors: a paused queue costs no NATS round trip.
    if (ops.submissionsPaused(queue)) throw new BosunError("unavailable", `submissions to queue "${queue}" are paused by an operator`, { queue });
    const forwarded = wait_ms === undefined ? (req.rawJson ?? body) : isPlainObject(body) ? withWaitMs(body, req.rawJson, wait_ms) : body;
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

function send(reply: FastifyReply, status: number, body: unknown): FastifyReply {
  if (status === 503) reply.header("retry-after", String(RETRY_AFTER_SECONDS));
  return reply.code(status).send(body);
}

function sendError(reply: FastifyReply, err: BosunError, log: FastifyBaseLogger): FastifyReply {
  if (err.status >= 500) log.warn({ err: err.cause ?? err, code: err.code }, err.message);
  return send(reply, err.status, err.toBody());
}

/** Fastify's own errors (body too large, bad JSON, ...) in the contract's terms. */
function fromFastify(err: FastifyError | BosunError): BosunError {
  if (err instanceof BosunError) return err;
  switch (err.code) {
    case "FST_ERR_CTP_BODY_TOO_LARGE":
      return new BosunError("payload_too_large", "request body is larger than the limit");
    case "FST_ERR_CTP_INVALID_CONTENT_LENGTH":
    case "FST_ERR_CTP_EMPTY_JSON_BODY":
      return new BosunError("invalid_json", err.message);
  }
  if (err.statusCode === 413) return new BosunError("payload_too_large", "request body is larger than the limit");
  if (err.statusCode && err.statusCode >= 400 && err.statusCode < 500) return new BosunError("validation_error", err.message);
  return toBosunError(err);
}

