/** A plain NATS client for tests, closed when the test ends. */
import { connect } from "@nats-io/transport-node";
import { headers as natsHeaders, type Msg, type NatsConnection } from "@nats-io/nats-core";
import type { TeardownHost } from "./teardown.js";
import { natsOptions } from "../../src/platform/nats-options.js";

/** Connects as Bosun's own processes do (comma-separated servers, 2 s pings, reconnecting forever). */
export async function connectClient(t: TeardownHost, url: string): Promise<NatsConnection> {
  const nc = await connect(natsOptions(url, "bosun-test"));
  t.teardown(async () => {
    await nc.close().catch(() => undefined);
  });
  return nc;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export interface JsonReply<T = unknown> {
  msg: Msg;
  body: T;
  /** The Nats-Service-Error-Code header, when the service answered with an error. */
  errorCode: string | undefined;
  errorText: string | undefined;
}

/** A request with a JSON (or raw string) body, its reply parsed as JSON. */
export async function requestJson<T = unknown>(
  nc: NatsConnection,
  subject: string,
  body: unknown,
  opts: { timeoutMs?: number; headers?: Record<string, string>; raw?: boolean } = {},
): Promise<JsonReply<T>> {
  const data = opts.raw ? encoder.encode(String(body)) : encoder.encode(JSON.stringify(body));
  const h = natsHeaders();
  for (const [k, v] of Object.entries(opts.headers ?? {})) h.set(k, v);
  const msg = await nc.request(subject, data, { timeout: opts.timeoutMs ?? 10_000, headers: opts.headers ? h : undefined });
  const text = decoder.decode(msg.data);
  return {
    msg,
    body: (text.length > 0 ? JSON.parse(text) : null) as T,
    errorCode: msg.headers?.get("Nats-Service-Error-Code") || undefined,
    errorText: msg.headers?.get("Nats-Service-Error") || undefined,
  };
}
