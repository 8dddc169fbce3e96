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
  JOBS_WILDCARD,
  jobSubject,
  queueConsumer,
  RESULTS_WILDCARD,
  streams,
} from "../contract/index.js";
import type { Logger } from "pino";
import { NoRespondersError, RequestTimeoutError } from "./request-mux.js";

export const SERVICE_ERROR_HEADER = "Nats-Service-Error-Code";
const decoder = new TextDecoder();

/**
 * A reply of the `bosun` service: its JSON, or a BosunError when the
 * service error header says it failed (a body's own `error` field, as in a
 * dead job's result, is data, not a failure).
 */
export function readReply<T>(msg: Msg): T {
  const body: unknown = msg.data.length > 0 ? JSON.parse(decoder.decode(msg.data)) : null;
  if (!msg.headers?.get(SERVICE_ERROR_HEADER)) return body as T;
  const error = (body as Partial<ErrorReply> | null)?.error;
  throw new BosunError(isErrorCode(error?.code) ? error.code : "internal_error", error?.message ?? "request failed", error?.details);
}

/** nats.js refuses, before sending, a message over the server's max_payload. */
export const isMaxPayloadError = (err: unknown): boolean =>
  err instanceof errors.InvalidArgumentError && /max_payload/.test(err.message);

export const tooLargeForNats = (err: unknown): BosunError =>
  new BosunError("payload_too_large", "message is larger than the NATS server's max_payload", undefined, { cause: err });

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
  queues: readonly string[];
  leaseMs: number;
  resultsTtlMs: number;
  idempotencyWindowMs: number;
}

const DUPLICATE_WINDOW_MS = 120_000;
const HEARTBEAT_MAX_AGE_MS = 3_600_000;

type NamedStreamConfig = Partial<StreamConfig> & { name: string };

function streamConfigs(opts: TopologyOptions): NamedStreamConfig[] {
  return [
    {
      name: streams.jobs,
      subjects: [JOBS_WILDCARD],
      retention: RetentionPolicy.Workqueue,
      storage: StorageType.File,
      duplicate_window: nanos(DUPLICATE_WINDOW_MS),
    },
    {
      name: streams.results,
      subjects: [RESULTS_WILDCARD],
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      max_msgs_per_subject: 1,
      max_age: nanos(opts.resultsTtlMs),
      allow_direct: true,
      duplicate_window: nanos(DUPLICATE_WINDOW_MS),
    },
    {
      name: streams.scheduled,
      subjects: [SCHEDULED_WILDCARD],
      retention: RetentionPolicy.Workqueue,
      storage: StorageType.File,
      duplicate_window: nanos(DUPLICATE_WINDOW_MS),
    },
    {
      name: streams.dead,
      subjects: [DEAD_WILDCARD],
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      max_msgs_per_subject: 1,
      allow_direct: true,
      duplicate_window: nanos(DUPLICATE_WINDOW_MS),
    },
    {
      name: streams.heartbeats,
      subjects: [HEARTBEATS_WILDCARD],
      retention: RetentionPolicy.Limits,
      storage: StorageType.Memory,
      max_msgs_per_subject: 1,
      max_age: nanos(HEARTBEAT_MAX_AGE_MS),
      allow_direct: true,
      discard: DiscardPolicy.Old,
    },
  ];
}

export function queueConsumerConfig(queue: string, leaseMs: number): Partial<ConsumerConfig> {
  return {
    durable_name: queueConsumer(queue),
    filter_subject: jobSubject(queue),
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

async function ensureConsumer(jsm: JetStreamManager, stream: string, config: Partial<ConsumerConfig>): Promise<void> {
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
}

export async function provisionTopology(nc: NatsConnection, opts: TopologyOptions): Promise<Topology> {
  const jsm = await jetstreamManager(nc);
  for (const config of streamConfigs(opts)) await ensureStream(jsm, config);
  for (const queue of opts.queues) await ensureConsumer(jsm, streams.jobs, queueConsumerConfig(queue, opts.leaseMs));
  await ensureConsumer(jsm, streams.scheduled, schedulerConsumerConfig);
  const kvm = new Kvm(nc);
  const bucket = (name: string, options: Partial<KvOptions>) => settle(`bucket ${name}`, () => kvm.create(name, { storage: StorageType.File, ...options }));
  return {
    jsm,
    jobsKv: await bucket(buckets.jobs, { history: 1 }),
    opsKv: await bucket(buckets.ops, { history: 5 }),
    idempotencyKv: await bucket(buckets.idempotency, { history: 1, ttl: opts.idempotencyWindowMs }),
    cancelsKv: await bucket(buckets.cancels, { history: 1, ttl: opts.resultsTtlMs }),
  };
}
