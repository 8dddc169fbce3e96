/**
 * The NATS connection every Bosun process opens, and reading the `bosun`
 * service's replies. The streams and buckets are in topology.ts.
 */
import { connect, type NodeConnectionOptions } from "@nats-io/transport-node";
import type { Msg, NatsConnection } from "@nats-io/nats-core";
import { errors } from "@nats-io/nats-core";
import {
  BosunError,
  encodeJson,
  isErrorCode,
  type ErrorReply,
  type JobEnvelope,
  MESSAGE_HEADROOM_BYTES,
  parseJson,
} from "../contract/index.js";
import type { Logger } from "pino";
import { NoRespondersError, RequestTimeoutError } from "./request-mux.js";
import { natsOptions } from "./nats-options.js";

export { natsOptions, natsServers } from "./nats-options.js";
// The gateway's /readyz checks these (their home is topology.ts).
export { TOPOLOGY_STREAMS } from "./topology.js";

export const SERVICE_ERROR_HEADER = "Nats-Service-Error-Code";
/** The error's message, one line (see errorReply). */
export const SERVICE_ERROR_TEXT_HEADER = "Nats-Service-Error";
const decoder = new TextDecoder();

/**
 * A reply of the `bosun` service: its JSON, or a BosunError when the
 * service error header says it failed (a body's own `error` field, as in a
 * dead job's result, is data, not a failure). An unreadable reply is a 503.
 */
export function readReply<T>(msg: Msg): T {
  let body: unknown = null;
  try {
    if (msg.data.length > 0) body = parseJson(decoder.decode(msg.data));
  } catch (err) {
    throw new BosunError("unavailable", "a supervisor sent an unreadable reply", undefined, { cause: err });
  }
  if (!msg.headers?.get(SERVICE_ERROR_HEADER)) return body as T;
  const error = (body as Partial<ErrorReply> | null)?.error;
  throw new BosunError(isErrorCode(error?.code) ? error.code : "internal_error", error?.message ?? "request failed", error?.details);
}

/** nats.js refuses, before sending, a message over the server's max_payload. */
export const isMaxPayloadError = (err: unknown): boolean =>
  err instanceof errors.InvalidArgumentError && /max_payload/.test(err.message);

export const tooLargeForNats = (err: unknown): BosunError =>
  new BosunError("payload_too_large", "message is larger than the NATS server's max_payload", undefined, { cause: err });

/** nats-server's default, for a connection that has not reported its own yet. */
const DEFAULT_MAX_PAYLOAD = 1024 * 1024;

/**
 * A job message must leave MESSAGE_HEADROOM_BYTES below the server's
 * max_payload, so its record, its errors and its dead letter fit later:
 * checked before anything of the job is written (413). The bytes checked
 * are the ones written: a submit encodes its job once.
 */
export function encodeJobMessage(nc: NatsConnection, envelope: JobEnvelope): Uint8Array {
  const limit = (nc.info?.max_payload ?? DEFAULT_MAX_PAYLOAD) - MESSAGE_HEADROOM_BYTES;
  const encoded = encodeJson(envelope);
  if (encoded.byteLength > limit) {
    throw new BosunError("payload_too_large", `the job is ${encoded.byteLength} bytes; at most ${limit} fit (the NATS server's max_payload less ${MESSAGE_HEADROOM_BYTES} kept for its record and errors)`);
  }
  return encoded;
}

/** A NATS request that got no reply (nats.js's request() or the RequestMux), in the contract's terms (the gateway's and the client's one mapping). */
export function requestFailure(err: unknown, timeoutMs: number): BosunError {
  if (isMaxPayloadError(err)) return tooLargeForNats(err);
  if ((err instanceof errors.RequestError && err.isNoResponders()) || err instanceof NoRespondersError) {
    return new BosunError("unavailable", "no supervisor is answering", undefined, { cause: err });
  }
  if (err instanceof errors.TimeoutError || err instanceof RequestTimeoutError) return new BosunError("unavailable", `no reply from a supervisor within ${timeoutMs} ms`, undefined, { cause: err });
  return new BosunError("unavailable", "NATS is unreachable", undefined, { cause: err });
}

/** A server process's connection (supervisor, gateway): nats.js's, with its socket writes coalesced. */
export async function openConnection(opts: NodeConnectionOptions, log: Logger): Promise<NatsConnection> {
  const nc = await connect(opts);
  coalesceWrites(nc, log);
  return nc;
}

export async function connectNats(url: string, name: string, log: Logger): Promise<NatsConnection> {
  const nc = await openConnection(natsOptions(url, name), log);
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === "disconnect" || s.type === "reconnect" || s.type === "error" || s.type === "staleConnection") {
        log.warn({ nats: s.type, server: "server" in s ? s.server : undefined }, "nats connection status");
      }
    }
  })();
  return nc;
}

/** How many turns of the event loop a publish's write waits for others to join it (see coalesceWrites). */
const FLUSH_AFTER_TURNS = 3;

/**
 * nats.js writes its outbound buffer to the socket at the end of every task
 * that published anything, so a busy process makes one write() syscall per
 * incoming message or IPC event: a quarter of a supervisor's CPU went there.
 * Deferring the write by FLUSH_AFTER_TURNS turns of the event loop sends
 * everything those turns produced in one syscall: under load each turn's
 * poll brings a few more requests, replies and acks whose writes join it;
 * idle, a turn takes microseconds. Measured against one turn in the
 * supervisors (bench, 3 alternating rounds, 2026-12-03): nats-server CPU
 * per job −12 %, the supervisor's −4 %, HTTP throughput +8 %, sequential
 * p50 unchanged. The gateway's connection, against none (6 alternating
 * HTTP runs, 2026-12-04): its CPU per job −19 %, nats-server's −20 %, HTTP
 * throughput +8 %. The hook is the connection's internal flushPending; when
 * a nats.js release renames it, this does nothing and says so.
 */
/** Logged when the hook below cannot be set (the tests look for it). */
export const UNCOALESCED_WARNING = "nats.js internals changed: socket writes are not coalesced";

function coalesceWrites(nc: NatsConnection, log: Logger): void {
  const protocol = (nc as unknown as { protocol?: { flushPending?: () => void } }).protocol;
  const flushNow = protocol?.flushPending?.bind(protocol);
  if (!protocol || !flushNow) {
    log.warn(UNCOALESCED_WARNING);
    return;
  }
  let scheduled = false;
  const flush = () => {
    scheduled = false;
    flushNow();
  };
  const afterTurns = (turns: number): void => void setImmediate(turns <= 1 ? flush : () => afterTurns(turns - 1));
  protocol.flushPending = () => {
    if (scheduled) return;
    scheduled = true;
    afterTurns(FLUSH_AFTER_TURNS);
  };
}
