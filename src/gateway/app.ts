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
import { STATUS_CODES } from "node:http";
import type { Duplex } from "node:stream";
import {
  api,
  BosunError,
  codeForStatus,
  CORRELATION_HEADER,
  ErrorReply,
  errorReply,
  FINAL_STATES,
  headerCorrelationId,
  HTTP_HEADERS_TIMEOUT_MS,
  HTTP_MAX_HEADER_BYTES,
  HTTP_MAX_PARAM_LENGTH,
  parseJson,
  parseWith,
  RETRY_AFTER_SECONDS,
  streams,
  toBosunError,
  type JobState,
} from "../contract/index.js";
import type { GatewayConfig } from "../platform/config.js";
import { GatewayMetrics } from "../platform/metrics.js";
import type { OpsFlagsView } from "../platform/ops.js";
import { jobEvents, workerHeartbeats } from "./events.js";
import { natsCall } from "./nats-call.js";
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
  const app: FastifyInstance = Fastify({
    loggerInstance: log as FastifyBaseLogger,
    bodyLimit: config.body_limit_bytes,
    // Fastify's own 503 while closing has another body shape; the onRequest hook answers instead.
    return503OnClosing: false,
    // A client that trickles its headers or body is cut off (408), not held open forever.
    requestTimeout: config.http_request_timeout_ms,
    routerOptions: { maxParamLength: HTTP_MAX_PARAM_LENGTH },
    http: {
      headersTimeout: Math.min(HTTP_HEADERS_TIMEOUT_MS, config.http_request_timeout_ms),
      maxHeaderSize: HTTP_MAX_HEADER_BYTES,
      // Node checks the two timeouts above this often (its default, 30 s, would let them run long).
      connectionsCheckingInterval: 1000,
      // Node answers a missing Host with an empty 400 of its own; the onRequest hook answers instead.
      requireHostHeader: false,
    },
    clientErrorHandler: clientError,
    frameworkErrors: (err, req, reply) => sendError(reply, fromFastify(err), req.log),
  });
  let closing = false;
  app.addHook("preClose", async () => {
    closing = true;
  });
  const metrics = new GatewayMetrics();
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
  // Whatever produced an error reply (a plugin's 406, a static file's 404), it leaves in the contract's shape.
  app.addHook("onSend", async (_req, reply, payload) => {
    if (reply.statusCode < 400 || isContractError(payload)) return payload;
    const { status, body } = errorReply(new BosunError(codeForStatus(reply.statusCode), messageOf(payload) ?? `HTTP ${reply.statusCode}`));
    reply.code(status).type("application/json; charset=utf-8");
    return JSON.stringify(body);
  });
  app.addHook("onResponse", async (req, reply) => {
    metrics.httpRequests.inc({ method: req.method, route: req.routeOptions.url ?? "unmatched", status: String(reply.statusCode) });
  });

  app.setErrorHandler((err: FastifyError | BosunError, req, reply) => sendError(reply, fromFastify(err), req.log));
  app.setNotFoundHandler((req, reply) => sendError(reply, new BosunError("not_found", `no route ${req.method} ${req.url}`), req.log));

  await app.register(fastifySSE, { heartbeatInterval: 15_000 });
  await app.register(fastifySwagger, { mode: "static", specification: { document: openApi as never } });
  await app.register(fastifySwaggerUi, { routePrefix: "/docs" });

  const call = (subject: string, body: unknown, req: FastifyRequest, extraMs = 0) =>
    natsCall(nc, subject, body, { timeoutMs: config.request_timeout_ms + extraMs, correlationId: req.correlationId, metrics });

  for (const route of httpRoutes) {
    if (route.operation === "jobs_submit" && route.url === "/api/jobs") registerSubmit(app, route, call, ops);
    else registerRoute(app, route, call);
  }

  app.get("/api/jobs/:job_id/events", { sse: { kind: "only", heartbeat: true } }, async (req, reply) => {
    const { job_id } = parseWith(JobParams, req.params);
    const first = await call(api.jobsGet, { job_id }, req);
    if (first.status !== 200) return send(reply, first.status, first.body);
    if (req.method === "HEAD") return headOfStream(reply);
    await reply.sse.send(jobEvents(nc, job_id, closedSignal(req), req.log as Logger));
  });

  app.get("/api/platform/workers/stream", { sse: { kind: "only", heartbeat: true } }, async (req, reply) => {
    if (req.method === "HEAD") return headOfStream(reply);
    await reply.sse.send(workerHeartbeats(nc, closedSignal(req), req.log as Logger));
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

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

function send(reply: FastifyReply, status: number, body: unknown): FastifyReply {
  if (status === 503) reply.header("retry-after", String(RETRY_AFTER_SECONDS));
  return reply.code(status).send(body);
}

function sendError(reply: FastifyReply, err: BosunError, log: FastifyBaseLogger): FastifyReply {
  if (err.status >= 500) log.warn({ err: err.cause ?? err, code: err.code }, err.message);
  const { status, body } = errorReply(err);
  return send(reply, status, body);
}

/** HEAD of an event stream: its headers, no events (a HEAD request has no body to stream into). */
const headOfStream = (reply: FastifyReply): FastifyReply => reply.code(200).header("content-type", "text/event-stream").header("cache-control", "no-cache").send();

/** Fastify's own errors (body too large, bad JSON, bad URL, ...) in the contract's terms. */
function fromFastify(err: FastifyError | BosunError): BosunError {
  if (err instanceof BosunError) return err;
  switch (err.code) {
    case "FST_ERR_CTP_BODY_TOO_LARGE":
      return new BosunError("payload_too_large", "request body is larger than the limit");
    case "FST_ERR_CTP_INVALID_CONTENT_LENGTH":
    case "FST_ERR_CTP_EMPTY_JSON_BODY":
      return new BosunError("invalid_json", err.message);
    case "FST_ERR_BAD_URL":
      return new BosunError("validation_error", "the URL is not validly encoded");
    case "FST_ERR_MAX_PARAM_LENGTH":
      return new BosunError("uri_too_long", `a path parameter is longer than ${HTTP_MAX_PARAM_LENGTH} characters`);
  }
  if (err.statusCode && err.statusCode >= 400 && err.statusCode < 500) return new BosunError(codeForStatus(err.statusCode), err.message);
  return toBosunError(err);
}

/**
 * Errors Node's HTTP parser raises before Fastify sees a request (a bad
 * Content-Length, headers over the limit, a request that did not arrive in
 * time): written straight to the socket, in the contract's shape.
 */
function clientError(err: Error & { code?: string }, socket: Duplex): void {
  if (err.code === "ECONNRESET" || socket.destroyed) return;
  const error =
    err.code === "ERR_HTTP_REQUEST_TIMEOUT"
      ? new BosunError("request_timeout", "the request did not arrive in time")
      : err.code === "HPE_HEADER_OVERFLOW"
        ? new BosunError("headers_too_large", `request headers are larger than ${HTTP_MAX_HEADER_BYTES} bytes`)
        : new BosunError("validation_error", "malformed HTTP request");
  const { status, body } = errorReply(error);
  const text = JSON.stringify(body);
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n${text}`,
    );
  }
  socket.destroy();
}

function isContractError(payload: unknown): boolean {
  const text = typeof payload === "string" ? payload : Buffer.isBuffer(payload) ? payload.toString("utf8") : undefined;
  if (text === undefined) return false;
  try {
    return ErrorReply.safeParse(JSON.parse(text)).success;
  } catch {
    return false;
  }
}

/** The `message` of a plugin's own error body, if it has one. */
function messageOf(payload: unknown): string | undefined {
  try {
    const message = (JSON.parse(String(payload)) as { message?: unknown }).message;
    return typeof message === "string" ? message : undefined;
  } catch {
    return undefined;
  }
}

