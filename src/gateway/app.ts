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
import { httpRoutes, JobParams, operations, WaitQuery, type HttpRoute } from "../contract/index.js";

declare module "fastify" {
  interface FastifyRequest {
    correlationId: string;
    /** The body's bytes as received, when it parsed as JSON: forwarded as they are instead of re-encoded. */
    rawJson: Buffer | undefined;
  }
}

export interface GatewayDeps {
  nc: NatsConnection;
  config: GatewayConfig;
  log: Logger;
  ops: OpsFlagsView;
}

export async function buildGateway({ nc, config, log, ops }: GatewayDeps): Promise<FastifyInstance> {
  // Fastify's own 503 while closing has another body shape; the onRequest hook answers instead.
  const app: FastifyInstance = Fastify({
    loggerInstance: log as FastifyBaseLogger,
    // req.log is made only if a request logs at an enabled level: most log nothing.
    childLoggerFactory: lazyChildLogger,
    bodyLimit: config.body_limit_bytes,
    return503OnClosing: false,
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
  app.decorateRequest("rawJson", undefined);
  app.addHook("onRequest", async (req, reply) => {
    const given = req.headers[CORRELATION_HEADER];
    req.correlationId = (typeof given === "string" && given.length > 0 && given.length <= 128 ? given : undefined) ?? nuid.next();
    reply.header(CORRELATION_HEADER, req.correlationId);
    if (closing) throw new BosunError("unavailable", "this gateway is shutting down; retry on another");
  });
  app.addHook("onResponse", async (req, reply) => {
    metrics.countHttpRequest(req.method, req.routeOptions.url ?? "unmatched", reply.statusCode);
  });

  app.setErrorHandler((err: FastifyError | BosunError, req, reply) => sendError(reply, fromFastify(err), req.log));
  app.setNotFoundHandler((req, reply) => sendError(reply, new BosunError("not_found", `no route ${req.method} ${req.url}`), req.log));

  await app.register(fastifySSE, { heartbeatInterval: 15_000 });
  await app.register(fastifySwagger, { mode: "static", specification: { document: openApi as never } });
  await app.register(fastifySwaggerUi, { routePrefix: "/docs" });

  const mux = new RequestMux(nc);
  app.addHook("onClose", async () => mux.close());
  const call: Call = (subject, body, req, extraMs = 0) =>
    natsCall(mux, subject, body instanceof Uint8Array ? body : encodeJson(body), { timeoutMs: config.request_timeout_ms + extraMs, correlationId: req.correlationId, metrics });

  for (const route of httpRoutes) {
    if (route.operation === "jobs_submit" && route.url === "/api/jobs") registerSubmit(app, route, call, ops);
    else registerRoute(app, route, call);
  }

  app.get("/api/jobs/:job_id/events", { sse: { kind: "only", heartbeat: true } }, async (req, reply) => {
    const { job_id } = parseWith(JobParams, req.params);
    const first = await call(api.jobsGet, { job_id }, req);
    if (first.status !== 200) return send(reply, first.status, first.body);
    await reply.sse.send(jobEvents(nc, job_id, closedSignal(req)));
  });

  app.get("/api/platform/workers/stream", { sse: { kind: "only", heartbeat: true } }, async (req, reply) => {
    await reply.sse.send(workerHeartbeats(nc, closedSignal(req)));
  });

  app.get("/openapi.json", async () => openApi);
  app.get("/metrics", async (_req, reply) => reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()));
  app.get("/healthz", async () => ({ status: "ok" }));
  app.get("/readyz", async (req, reply) => {
    try {
      const jsm = await jetstreamManager(nc, { timeout: config.request_timeout_ms });
      await jsm.streams.info(streams.jobs);
      return { status: "ready" };
    } catch (err) {
      return sendError(reply, new BosunError("unavailable", "NATS or the jobs stream is not reachable", undefined, { cause: err }), req.log);
    }
  });

  return app;
}

/** A NATS request for an HTTP call: bytes go as they are, anything else as its JSON. */
type Call = (subject: string, body: unknown, req: FastifyRequest, extraMs?: number) => ReturnType<typeof natsCall>;

/** A submit: `?wait_ms` extends the NATS timeout, and a job that finished within it answers 200. */
function registerSubmit(app: FastifyInstance, route: HttpRoute, call: Call, ops: OpsFlagsView): void {
  app.route({
    method: route.method,
    url: route.url,
    handler: async (req, reply) => {
      const { wait_ms } = parseWith(WaitQuery, req.query);
      const body = req.body === undefined ? {} : req.body;
      const queue = isPlainObject(body) && typeof body.queue === "string" ? body.queue : "default";
      // Paused here as well as in the supervisors: a paused queue costs no NATS round trip.
      if (ops.submissionsPaused(queue)) throw new BosunError("unavailable", `submissions to queue "${queue}" are paused by an operator`, { queue });
      const forwarded = wait_ms === undefined ? (req.rawJson ?? body) : isPlainObject(body) ? withWaitMs(body, req.rawJson, wait_ms) : body;
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

