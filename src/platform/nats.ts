/**
 * The NATS connection and the topology (streams, consumers, KV buckets),
 * created or updated idempotently so any number of supervisors can start
 * together. Only features nats-server 2.9 has are used.
 */
import { connect } from "@nats-io/transport-node";
import type { Msg, NatsConnection } from "@nats-io/nats-core";
import {
  AckPolicy,
  DiscardPolicy,
  RetentionPolicy,
  StorageType,
  jetstreamManager,
  type JetStreamManager,
  type StreamConfig,
  type ConsumerConfig,
} from "@nats-io/jetstream";
import { Kvm, type KV, type KvOptions } from "@nats-io/kv";
import { errors, nanos } from "@nats-io/nats-core";
import {
  BosunError,
  buckets,
  isErrorCode,
  type ErrorReply,
  DEAD_WILDCARD,
  HEARTBEATS_WILDCARD,
  SCHEDULED_WILDCARD,
  SCHEDULER_CONSUMER,
  encodeJson,
  JOBS_WILDCARD,
  laneConsumer,
  laneJobsFilter,
  MAX_HEARTBEAT_BYTES,
  MESSAGE_HEADROOM_BYTES,
  type JobEnvelope,
  parseJson,
  RESULTS_WILDCARD,
  streams,
} from "../contract/index.js";
import type { Logger } from "pino";
import { NoRespondersError, RequestTimeoutError } from "./request-mux.js";

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
 * checked before anything of the job is written (413).
 */
export function assertFitsJobMessage(nc: NatsConnection, envelope: JobEnvelope): void {
  const limit = (nc.info?.max_payload ?? DEFAULT_MAX_PAYLOAD) - MESSAGE_HEADROOM_BYTES;
  const size = encodeJson(envelope).byteLength;
  if (size > limit) {
    throw new BosunError("payload_too_large", `the job is ${size} bytes; at most ${limit} fit (the NATS server's max_payload less ${MESSAGE_HEADROOM_BYTES} kept for its record and errors)`);
  }
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

export async function connectNats(url: string, name: string, log: Logger): Promise<NatsConnection> {
  const nc = await connect({
    servers: url,
    name,
    // nats.js builds two Error objects per request for async stack traces otherwise.
    noAsyncTraces: true,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    timeout: 3000,
  });
  coalesceWrites(nc, log);
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === "disconnect" || s.type === "reconnect" || s.type === "error") log.warn({ nats: s.type }, "nats connection status");
    }
  })();
  return nc;
}

/**
 * nats.js writes its outbound buffer to the socket at the end of every task
 * that published anything, so a busy process makes one write() syscall per
 * incoming message or IPC event: a quarter of a supervisor's CPU went there.
 * Deferring the write to the end of the event-loop turn (setImmediate) sends
 * everything a turn produced in one syscall, for at most a turn's delay.
 * The hook is the connection's internal flushPending; when a nats.js release
 * renames it, this does nothing and says so.
 */
function coalesceWrites(nc: NatsConnection, log: Logger): void {
  const protocol = (nc as unknown as { protocol?: { flushPending?: () => void } }).protocol;
  const flushNow = protocol?.flushPending?.bind(protocol);
  if (!protocol || !flushNow) {
    log.warn("nats.js internals changed: socket writes are not coalesced");
    return;
  }
  let scheduled = false;
  protocol.flushPending = () => {
    if (scheduled) return;
    scheduled = true;
    setImmediate(() => {
      scheduled = false;
      flushNow();
    });
  };
}

export interface TopologyOptions {
  /** How long finished jobs are kept (results, dead letters). */
  retentionMs: number;
  idempotencyWindowMs: number;
}

const DUPLICATE_WINDOW_MS = 120_000;
/** JetStream refuses a duplicate window longer than max_age: it follows a short retention. */
const duplicateWindow = (maxAgeMs?: number): number => nanos(Math.min(DUPLICATE_WINDOW_MS, maxAgeMs ?? DUPLICATE_WINDOW_MS));
/**
 * Interim records are removed when their attempt ends; this only bounds
 * what a supervisor that died mid-attempt leaves (readers ignore such a
 * record anyway: a running job always has its message in BOSUN_JOBS).
 */
const INTERIM_MAX_AGE_MS = 48 * 3600 * 1000;
const HEARTBEAT_MAX_AGE_MS = 3_600_000;

type NamedStreamConfig = Partial<StreamConfig> & { name: string };

function streamConfigs(opts: TopologyOptions): NamedStreamConfig[] {
  return [
    {
      name: streams.jobs,
      subjects: [JOBS_WILDCARD],
      retention: RetentionPolicy.Workqueue,
      storage: StorageType.File,
      // A queued job's status is read from its message, by its literal subject.
      allow_direct: true,
      duplicate_window: duplicateWindow(),
    },
    {
      name: streams.results,
      subjects: [RESULTS_WILDCARD],
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      max_msgs_per_subject: 1,
      max_age: nanos(opts.retentionMs),
      allow_direct: true,
      duplicate_window: duplicateWindow(opts.retentionMs),
    },
    {
      name: streams.scheduled,
      subjects: [SCHEDULED_WILDCARD],
      retention: RetentionPolicy.Workqueue,
      storage: StorageType.File,
      allow_direct: true,
      duplicate_window: duplicateWindow(),
    },
    {
      name: streams.dead,
      subjects: [DEAD_WILDCARD],
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      max_msgs_per_subject: 1,
      max_age: nanos(opts.retentionMs),
      allow_direct: true,
      duplicate_window: duplicateWindow(opts.retentionMs),
    },
    {
      name: streams.heartbeats,
      subjects: [HEARTBEATS_WILDCARD],
      retention: RetentionPolicy.Limits,
      storage: StorageType.Memory,
      max_msgs_per_subject: 1,
      max_age: nanos(HEARTBEAT_MAX_AGE_MS),
      // The server refuses larger ones; readers ignore them anyway (heartbeat-reader.ts).
      max_msg_size: MAX_HEARTBEAT_BYTES,
      allow_direct: true,
      discard: DiscardPolicy.Old,
    },
  ];
}

export function laneConsumerConfig(lane: string, leaseMs: number): Partial<ConsumerConfig> {
  return {
    durable_name: laneConsumer(lane),
    filter_subject: laneJobsFilter(lane),
    ack_policy: AckPolicy.Explicit,
    // The ack deadline is the job's lease: a supervisor that dies loses its jobs after it.
    ack_wait: nanos(leaseMs),
    max_deliver: -1,
    // Supervisors bound their own in-flight work with pull credits.
    max_ack_pending: 100_000,
    max_waiting: 512,
  };
}

const schedulerConsumerConfig: Partial<ConsumerConfig> = {
  durable_name: SCHEDULER_CONSUMER,
  filter_subject: SCHEDULED_WILDCARD,
  ack_policy: AckPolicy.Explicit,
  ack_wait: nanos(10_000),
  max_deliver: -1,
  // Parked messages count as pending while they wait out their delay.
  max_ack_pending: 1_000_000,
  max_waiting: 512,
};

/** Retries a provisioning step that can lose a race with another supervisor. */
async function settle<T>(what: string, step: () => Promise<T>): Promise<T> {
  let lastError: unknown;
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      return await step();
    } catch (err) {
      lastError = err;
      await new Promise((r) => setTimeout(r, 50 * (attempt + 1)));
    }
  }
  throw new Error(`could not provision ${what}: ${(lastError as Error)?.message}`, { cause: lastError });
}

async function ensureStream(jsm: JetStreamManager, config: NamedStreamConfig): Promise<void> {
  await settle(`stream ${config.name}`, async () => {
    try {
      await jsm.streams.add(config);
    } catch (err) {
      // Exists with another config (an older Bosun, other limits): bring it to ours.
      if (!/already in use|exists/i.test((err as Error).message)) throw err;
      await jsm.streams.update(config.name, config);
    }
  });
}

export async function ensureConsumer(jsm: JetStreamManager, stream: string, config: Partial<ConsumerConfig>): Promise<void> {
  await settle(`consumer ${config.durable_name}`, async () => {
    try {
      await jsm.consumers.add(stream, config);
    } catch (err) {
      if (!/already|exists/i.test((err as Error).message)) throw err;
      await jsm.consumers.update(stream, config.durable_name!, config);
    }
  });
}

export interface Topology {
  jsm: JetStreamManager;
  jobsKv: KV;
  opsKv: KV;
  idempotencyKv: KV;
  cancelsKv: KV;
  lanesKv: KV;
}

/** Every stream and the stream of every bucket a supervisor uses: what /readyz checks. */
export const TOPOLOGY_STREAMS: readonly string[] = [
  ...Object.values(streams),
  ...Object.values(buckets).map((b) => `KV_${b}`),
];

export async function provisionTopology(nc: NatsConnection, opts: TopologyOptions): Promise<Topology> {
  const jsm = await jetstreamManager(nc);
  for (const config of streamConfigs(opts)) await ensureStream(jsm, config);
  await ensureConsumer(jsm, streams.scheduled, schedulerConsumerConfig);
  const kvm = new Kvm(nc);
  const bucket = (name: string, options: Partial<KvOptions>) => settle(`bucket ${name}`, () => kvm.create(name, { storage: StorageType.File, ...options }));
  return {
    jsm,
    jobsKv: await bucket(buckets.jobs, { history: 1, ttl: INTERIM_MAX_AGE_MS }),
    opsKv: await bucket(buckets.ops, { history: 5 }),
    idempotencyKv: await bucket(buckets.idempotency, { history: 1, ttl: opts.idempotencyWindowMs }),
    // No TTL: a cancel request lives until its job ends, however far its run_at.
    cancelsKv: await bucket(buckets.cancels, { history: 1 }),
    lanesKv: await bucket(buckets.lanes, { history: 1 }),
  };
}
