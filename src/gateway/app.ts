/**
 * The gateway's Fastify app, built without listening (tests use inject()).
 * Every route is one NATS request to the `bosun` service; the gateway holds
 * no job state of its own.
 */
import Fastify, { type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyReply } from "fastify";
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstreamManager } from "@nats-io/jetstream";
import { nuid } from "@nats-io/nats-core";
import type { Logger } from "pino";
import { z } from "zod";
import {
  api,
  BosunError,
  CORRELATION_HEADER,
  FINAL_STATES,
  ListJobsRequest,
  MAX_WAIT_MS,
  parseWith,
  RETRY_AFTER_SECONDS,
  streams,
  toBosunError,
  type JobState,
} from "../contract/index.js";
import type { GatewayConfig } from "../platform/config.js";
import { natsCall } from "./nats-call.js";

const WaitQuery = z.object({ wait_ms: z.coerce.number().int().min(0).max(MAX_WAIT_MS).optional() }).strict();
const JobParams = z.object({ job_id: z.string().min(1).max(64) });

declare module "fastify" {
  interface FastifyRequest {
    correlationId: string;
  }
}

export function buildGateway(nc: NatsConnection, config: GatewayConfig, log: Logger): FastifyInstance {
  const app: FastifyInstance = Fastify({ loggerInstance: log as FastifyBaseLogger, bodyLimit: config.body_limit_bytes });

  // Accept JSON whatever the content type says (curl -d sends form encoding), as one parser.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("*", { parseAs: "string" }, (_req, body, done) => {
    const text = String(body);
    if (text.trim() === "") return done(null, undefined);
    try {
      done(null, JSON.parse(text));
    } catch {
      done(new BosunError("invalid_json", "body is not valid JSON"), undefined);
    }
  });

  app.decorateRequest("correlationId", "");
  app.addHook("onRequest", async (req, reply) => {
    const given = req.headers[CORRELATION_HEADER];
    req.correlationId = (typeof given === "string" && given.length > 0 && given.length <= 128 ? given : undefined) ?? nuid.next();
    reply.header(CORRELATION_HEADER, req.correlationId);
  });

  app.setErrorHandler((err: FastifyError | BosunError, req, reply) => sendError(reply, fromFastify(err), req.log));
  app.setNotFoundHandler((req, reply) => sendError(reply, new BosunError("not_found", `no route ${req.method} ${req.url}`), req.log));

  const call = (subject: string, body: unknown, correlationId: string, extraMs = 0) =>
    natsCall(nc, subject, body, { timeoutMs: config.request_timeout_ms + extraMs, correlationId });

  app.post("/api/jobs", async (req, reply) => {
    const { wait_ms } = parseWith(WaitQuery, req.query);
    const body = req.body === undefined ? {} : req.body;
    const forwarded = wait_ms !== undefined && isPlainObject(body) ? { ...body, wait_ms } : body;
    const res = await call(api.jobsSubmit, forwarded, req.correlationId, wait_ms ?? 0);
    const state = (res.body as { state?: JobState } | null)?.state;
    const status = res.status === 200 ? (state && FINAL_STATES.has(state) ? 200 : 202) : res.status;
    return send(reply, status, res.body);
  });

  app.get("/api/jobs/:job_id", async (req, reply) => {
    const { job_id } = parseWith(JobParams, req.params);
    const res = await call(api.jobsGet, { job_id }, req.correlationId);
    return send(reply, res.status, res.body);
  });

  app.get("/api/jobs/:job_id/result", async (req, reply) => {
    const { job_id } = parseWith(JobParams, req.params);
    const res = await call(api.jobsResult, { job_id }, req.correlationId);
    return send(reply, res.status, res.body);
  });

  app.get("/api/jobs", async (req, reply) => {
    const filter = parseWith(ListJobsRequest, req.query);
    const res = await call(api.jobsList, filter, req.correlationId);
    return send(reply, res.status, res.body);
  });

  app.post("/api/jobs/:job_id/cancel", async (req, reply) => {
    const { job_id } = parseWith(JobParams, req.params);
    const res = await call(api.jobsCancel, { job_id }, req.correlationId);
    return send(reply, res.status === 200 ? 202 : res.status, res.body);
  });

  app.post("/api/jobs/:job_id/retry", async (req, reply) => {
    const { job_id } = parseWith(JobParams, req.params);
    const res = await call(api.jobsRetry, { job_id }, req.correlationId);
    return send(reply, res.status === 200 ? 202 : res.status, res.body);
  });

  app.get("/healthz", async () => ({ status: "ok" }));

  app.get("/readyz", async (_req, reply) => {
    try {
      if (nc.isClosed() || nc.status === undefined) throw new Error("closed");
      const jsm = await jetstreamManager(nc, { timeout: config.request_timeout_ms });
      await jsm.streams.info(streams.jobs);
      return { status: "ready" };
    } catch (err) {
      return sendError(reply, new BosunError("unavailable", "NATS or the jobs stream is not reachable", undefined, { cause: err }), _req.log);
    }
  });

  return app;
}

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

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
