/**
 * How the gateway answers what goes wrong, in the contract's shape: its
 * server's limits and timeouts, Fastify's and Node's own refusals (a bad
 * Content-Length, 431, 414, 406, a badly encoded URL, a request that did
 * not arrive in time), and every error reply, through errorReply.
 */
import { STATUS_CODES, type Server } from "node:http";
import type { Duplex } from "node:stream";
import type { FastifyBaseLogger, FastifyError, FastifyHttpOptions, FastifyReply, FastifyRequest } from "fastify";
import {
  BosunError,
  codeForStatus,
  ErrorReply,
  errorReply,
  HTTP_HEADERS_TIMEOUT_MS,
  HTTP_MAX_HEADER_BYTES,
  HTTP_MAX_PARAM_LENGTH,
  RETRY_AFTER_SECONDS,
  toBosunError,
} from "../contract/index.js";
import type { GatewayConfig } from "../platform/config.js";

/** The Fastify and Node HTTP server options that bound what a client can make the gateway hold. */
export function serverOptions(config: GatewayConfig): FastifyHttpOptions<Server> {
  return {
    bodyLimit: config.body_limit_bytes,
    // Fastify's own 503 while closing has another body shape; the gateway's onRequest hook answers instead.
    return503OnClosing: false,
    // A client that trickles its headers or body is cut off (408), not held open forever.
    requestTimeout: config.http_request_timeout_ms,
    routerOptions: { maxParamLength: HTTP_MAX_PARAM_LENGTH },
    http: {
      headersTimeout: Math.min(HTTP_HEADERS_TIMEOUT_MS, config.http_request_timeout_ms),
      maxHeaderSize: HTTP_MAX_HEADER_BYTES,
      // Node checks the two timeouts above this often (its default, 30 s, would let them run long).
      connectionsCheckingInterval: 1000,
      // Node answers a missing Host with an empty 400 of its own; the gateway's onRequest hook answers instead.
      requireHostHeader: false,
    },
    clientErrorHandler: clientError,
    frameworkErrors: (err, req, reply) => sendError(reply, fromFastify(err), req.log),
  };
}

export function send(reply: FastifyReply, status: number, body: unknown): FastifyReply {
  if (status === 503) reply.header("retry-after", String(RETRY_AFTER_SECONDS));
  return reply.code(status).send(body);
}

export function sendError(reply: FastifyReply, err: BosunError, log: FastifyBaseLogger): FastifyReply {
  if (err.status >= 500) log.warn({ err: err.cause ?? err, code: err.code }, err.message);
  const { status, body } = errorReply(err);
  return send(reply, status, body);
}


/** Fastify's own errors (body too large, bad JSON, bad URL, ...) in the contract's terms. */
export function fromFastify(err: FastifyError | BosunError): BosunError {
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

/** An onSend hook: whatever produced an error reply (a plugin's 406, a static file's 404), it leaves in the contract's shape. */
export async function inContractShape(_req: FastifyRequest, reply: FastifyReply, payload: unknown): Promise<unknown> {
  if (reply.statusCode < 400 || isContractError(payload)) return payload;
  const { status, body } = errorReply(new BosunError(codeForStatus(reply.statusCode), messageOf(payload) ?? `HTTP ${reply.statusCode}`));
  reply.code(status).type("application/json; charset=utf-8");
  return JSON.stringify(body);
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

