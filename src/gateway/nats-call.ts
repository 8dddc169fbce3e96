/**
 * One HTTP call = one NATS request. This turns the reply (or the lack of
 * one) into an HTTP status and body using the contract's error table.
 */
import { errors, headers as natsHeaders, type NatsConnection } from "@nats-io/nats-core";
import { BosunError, CORRELATION_HEADER, encodeJson, errorReply } from "../contract/index.js";
import { isMaxPayloadError, readReply, SERVICE_ERROR_HEADER, tooLargeForNats } from "../platform/nats.js";
import type { GatewayMetrics } from "../platform/metrics.js";
import { AUTHORIZATION_HEADER } from "../auth/index.js";

export interface NatsReply {
  status: number;
  body: unknown;
}

export async function natsCall(
  nc: NatsConnection,
  subject: string,
  body: unknown,
  opts: { timeoutMs: number; correlationId: string; metrics: GatewayMetrics; authorization?: string },
): Promise<NatsReply> {
  const headers = natsHeaders();
  headers.set(CORRELATION_HEADER, opts.correlationId);
  // Supervisors decide who may do what: the caller's key travels with the request, as is.
  if (opts.authorization) headers.set(AUTHORIZATION_HEADER, opts.authorization);
  const timer = opts.metrics.natsRequest.startTimer({ subject });
  let reply;
  try {
    reply = await nc.request(subject, encodeJson(body), { timeout: opts.timeoutMs, headers });
    timer({ outcome: reply.headers?.get(SERVICE_ERROR_HEADER) ? "error_reply" : "ok" });
  } catch (err) {
    timer({ outcome: "no_reply" });
    if (isMaxPayloadError(err)) throw tooLargeForNats(err);
    if (err instanceof errors.RequestError && err.isNoResponders()) {
      throw new BosunError("unavailable", "no supervisor is answering", undefined, { cause: err });
    }
    if (err instanceof errors.TimeoutError) {
      throw new BosunError("unavailable", `no reply from a supervisor within ${opts.timeoutMs} ms`, undefined, { cause: err });
    }
    throw new BosunError("unavailable", "NATS is unreachable", undefined, { cause: err });
  }
  try {
    return { status: 200, body: readReply(reply) };
  } catch (err) {
    if (err instanceof BosunError) return errorReply(err);
    throw err;
  }
}
