/**
 * `import { connect } from "bosun/client"`: the typed client over NATS, and
 * `connectHttp` over a gateway for callers without NATS. Both answer the same
 * methods with the same typed errors.
 */
import { connect as connectNats, type NodeConnectionOptions } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/nats-core";
import { DEFAULT_NATS_URL, natsOptions } from "../platform/nats-options.js";
import { traceHeaders } from "../platform/tracing.js";
import { createClient, type BosunClient } from "./client.js";
import { HttpTransport, type HttpOptions } from "./http.js";
import { NatsTransport, type NatsTransportOptions } from "./nats.js";
import { routeTable } from "./routes.js";

export interface ConnectOptions extends Omit<NatsTransportOptions, "ownsConnection"> {
  /** NATS server URL(s); default NATS_URL, else nats://127.0.0.1:4222. Ignored when `nc` is given. */
  servers?: string | string[];
  /** An open connection to use (not closed by the client's close()). */
  nc?: NatsConnection;
  /** More options for the connection the client opens. */
  nats?: NodeConnectionOptions;
}

/**
 * A client over NATS. Requests carry the active OpenTelemetry context as a
 * W3C traceparent, so a traced caller's trace continues through Bosun.
 */
export async function connect(opts: ConnectOptions = {}): Promise<BosunClient> {
  const { servers, nc: given, nats, ...transport } = opts;
  const nc =
    given ??
    (await connectNats({ ...natsOptions(serverList(servers), "bosun-client"), ...nats }));
  return createClient(new NatsTransport(nc, { ...transport, headers: withTrace(transport.headers), ownsConnection: !given }));
}

/** The servers given, else NATS_URL (comma-separated), else the local default. */
function serverList(servers: string | string[] | undefined): string {
  return (Array.isArray(servers) ? servers.join(",") : servers) ?? process.env.NATS_URL ?? DEFAULT_NATS_URL;
}

/** A client over a gateway's HTTP API (same methods, same errors). */
export function connectHttp(opts: HttpOptions | string): BosunClient {
  const options = typeof opts === "string" ? { url: opts } : opts;
  return createClient(new HttpTransport(routeTable(), { ...options, headers: withTrace(options.headers) }));
}

const withTrace =
  (extra: (() => Record<string, string>) | undefined) =>
  (): Record<string, string> => ({ ...traceHeaders(), ...extra?.() });

export { createClient, methodName } from "./client.js";
export type { BosunClient, BosunClientExtras, CallOptions, GeneratedMethods, ListFilter, Transport } from "./client.js";
export * from "./errors.js";
export { HttpTransport, type HttpOptions } from "./http.js";
export { ComputeClient, type LeasedRun, type LeaseEnd } from "./compute.js";
export { NatsTransport, type NatsTransportOptions } from "./nats.js";
export type { JobEvent, JobResult, JobStatus, SubmitReply, SubmitRequest, WorkerInfo, QueueStatus, OpsFlags } from "../contract/index.js";
