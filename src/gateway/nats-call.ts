/**
 * One HTTP call = one NATS request, over the gateway's request multiplexer.
 * This turns the reply (or the lack of one) into an HTTP status and body
 * using the contract's error table.
 */
import { headers as natsHeaders } from "@nats-io/nats-core";
import { BosunError, CORRELATION_HEADER, errorReply } from "../contract/index.js";
import { readReply, requestFailure, SERVICE_ERROR_HEADER } from "../platform/nats.js";
import type { GatewayMetrics } from "../platform/metrics.js";
import type { RequestMux } from "../platform/request-mux.js";
import { TRACEPARENT } from "../platform/tracing.js";
import { AUTHORIZATION_HEADER } from "../auth/index.js";

export interface NatsReply {
  status: number;
  body: unknown;
}

export async function natsCall(
  mux: RequestMux,
  subject: string,
  data: Uint8Array,
  opts: { timeoutMs: number; correlationId: string; traceparent?: string; metrics: GatewayMetrics; authorization?: string },
): Promise<NatsReply> {
  const headers = natsHeaders();
  headers.set(CORRELATION_HEADER, opts.correlationId);
  if (opts.traceparent) headers.set(TRACEPARENT, opts.traceparent);
  // Supervisors decide who may do what: the caller's key travels with the request, as is.
  if (opts.authorization) headers.set(AUTHORIZATION_HEADER, opts.authorization);
  const started = performance.now();
  let reply;
  try {
    reply = await mux.request(subject, data, { timeoutMs: opts.timeoutMs, headers });
    opts.metrics.observeNatsRequest(subject, reply.headers?.get(SERVICE_ERROR_HEADER) ? "error_reply" : "ok", started);
  } catch (err) {
    opts.metrics.observeNatsRequest(subject, "no_reply", started);
    throw requestFailure(err, opts.timeoutMs);
  }
  try {
    return { status: 200, body: readReply(reply) };
  } catch (err) {
    if (err instanceof BosunError) return errorReply(err);
    throw err;
  }
}
