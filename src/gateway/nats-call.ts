/**
 * One HTTP call = one NATS request. This turns the reply (or the lack of
 * one) into an HTTP status and body using the contract's error table.
 */
import { headers as natsHeaders, type NatsConnection } from "@nats-io/nats-core";
import { BosunError, CORRELATION_HEADER, encodeJson } from "../contract/index.js";
import { readReply, requestFailure, SERVICE_ERROR_HEADER } from "../platform/nats.js";
import type { GatewayMetrics } from "../platform/metrics.js";
import { TRACEPARENT } from "../platform/tracing.js";

export interface NatsReply {
  status: number;
  body: unknown;
}

export async function natsCall(
  nc: NatsConnection,
  subject: string,
  body: unknown,
  opts: { timeoutMs: number; correlationId: string; traceparent?: string; metrics: GatewayMetrics },
): Promise<NatsReply> {
  const headers = natsHeaders();
  headers.set(CORRELATION_HEADER, opts.correlationId);
  if (opts.traceparent) headers.set(TRACEPARENT, opts.traceparent);
  const timer = opts.metrics.natsRequest.startTimer({ subject });
  let reply;
  try {
    reply = await nc.request(subject, encodeJson(body), { timeout: opts.timeoutMs, headers });
    timer({ outcome: reply.headers?.get(SERVICE_ERROR_HEADER) ? "error_reply" : "ok" });
  } catch (err) {
    timer({ outcome: "no_reply" });
    throw requestFailure(err, opts.timeoutMs);
  }
  try {
    return { status: 200, body: readReply(reply) };
  } catch (err) {
    if (err instanceof BosunError) return { status: err.status, body: err.toBody() };
    throw err;
  }
}
