/**
 * One HTTP call = one NATS request. This turns the reply (or the lack of
 * one) into an HTTP status and body using the contract's error table.
 */
import { headers as natsHeaders, type NatsConnection } from "@nats-io/nats-core";
import { errors } from "@nats-io/nats-core";
import { BosunError, CORRELATION_HEADER, encodeJson, errorCodes, isErrorCode } from "../contract/index.js";
import { isMaxPayloadError, SERVICE_ERROR_HEADER, tooLargeForNats } from "../platform/nats.js";
import type { GatewayMetrics } from "../platform/metrics.js";

export interface NatsReply {
  status: number;
  body: unknown;
}

const decoder = new TextDecoder();

export async function natsCall(
  nc: NatsConnection,
  subject: string,
  body: unknown,
  opts: { timeoutMs: number; correlationId: string; metrics: GatewayMetrics },
): Promise<NatsReply> {
  const headers = natsHeaders();
  headers.set(CORRELATION_HEADER, opts.correlationId);
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
  const parsed: unknown = reply.data.length > 0 ? JSON.parse(decoder.decode(reply.data)) : null;
  const serviceError = reply.headers?.get(SERVICE_ERROR_HEADER);
  if (!serviceError) return { status: 200, body: parsed };
  const code = (parsed as { error?: { code?: unknown } } | null)?.error?.code;
  return { status: isErrorCode(code) ? errorCodes[code] : Number(serviceError) || 502, body: parsed };
}
