/**
 * One HTTP call = one NATS request, over the gateway's request multiplexer.
 * This turns the reply (or the lack of one) into an HTTP status and body
 * using the contract's error table.
 */
import { headers as natsHeaders } from "@nats-io/nats-core";
import { BosunError, CORRELATION_HEADER } from "../contract/index.js";
import { isMaxPayloadError, readReply, SERVICE_ERROR_HEADER, tooLargeForNats } from "../platform/nats.js";
import type { GatewayMetrics } from "../platform/metrics.js";
import { NoRespondersError, RequestTimeoutError, type RequestMux } from "../platform/request-mux.js";

export interface NatsReply {
  status: number;
  body: unknown;
}

export async function natsCall(
  mux: RequestMux,
  subject: string,
  data: Uint8Array,
  opts: { timeoutMs: number; correlationId: string; metrics: GatewayMetrics },
): Promise<NatsReply> {
  const headers = natsHeaders();
  headers.set(CORRELATION_HEADER, opts.correlationId);
  const started = performance.now();
  let reply;
  try {
    reply = await mux.request(subject, data, { timeoutMs: opts.timeoutMs, headers });
    opts.metrics.observeNatsRequest(subject, reply.headers?.get(SERVICE_ERROR_HEADER) ? "error_reply" : "ok", started);
  } catch (err) {
    opts.metrics.observeNatsRequest(subject, "no_reply", started);
    if (isMaxPayloadError(err)) throw tooLargeForNats(err);
    if (err instanceof NoRespondersError) throw new BosunError("unavailable", "no supervisor is answering", undefined, { cause: err });
    if (err instanceof RequestTimeoutError) {
      throw new BosunError("unavailable", `no reply from a supervisor within ${opts.timeoutMs} ms`, undefined, { cause: err });
    }
    throw new BosunError("unavailable", "NATS is unreachable", undefined, { cause: err });
  }
  try {
    return { status: 200, body: readReply(reply) };
  } catch (err) {
    if (err instanceof BosunError) return { status: err.status, body: err.toBody() };
    throw err;
  }
}
