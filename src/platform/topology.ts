/**
 * Everything Bosun stores in JetStream, in one table: streams, consumers,
 * KV buckets and object buckets. Provisioning creates or updates each entry
 * idempotently (any number of supervisors may start together) and gives
 * every stream and bucket the same replica count, so adding a stream or a
 * bucket is one entry here and it follows `--replicas` by construction.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import { nanos } from "@nats-io/nats-core";
import {
  AckPolicy,
  DiscardPolicy,
  RetentionPolicy,
  StorageType,
  jetstreamManager,
  type ConsumerConfig,
  type JetStreamManager,
  type StreamConfig,
  type StreamInfo,
} from "@nats-io/jetstream";
import { Kvm, type KV, type KvOptions } from "@nats-io/kv";
import { Objm, type ObjectStoreOptions } from "@nats-io/obj";
import type { Logger } from "pino";
import {
  buckets,
  DEAD_WILDCARD,
  HEARTBEATS_WILDCARD,
  JOBS_WILDCARD,
  laneConsumer,
  laneJobsFilter,
  MAX_ENROLL_TTL_MS,
  MAX_HEARTBEAT_BYTES,
  MAX_TIMEOUT_MS,
  objectBuckets,
  RESULTS_WILDCARD,
  SCHEDULED_WILDCARD,
  SCHEDULER_CONSUMER,
  streams,
} from "../contract/index.js";
import { unavailableOf } from "./nats-errors.js";
import { replicaPolicy, type ReplicaPolicy } from "./replicas.js";

export interface TopologyOptions {
  /** How long finished jobs are kept (results, dead letters). */
  retentionMs: number;
  idempotencyWindowMs: number;
  /** `--replicas`: undefined means 1 on a single server, 3 in a cluster of three or more. */
  replicas?: number;
}

type NamedStreamConfig = Partial<StreamConfig> & { name: string };

export type TopologyEntry =
  | { kind: "stream"; config: NamedStreamConfig }
  | { kind: "consumer"; stream: string; config: Partial<ConsumerConfig> & { durable_name: string } }
  | { kind: "kv"; name: string; options: Partial<KvOptions> }
  | { kind: "obj"; name: string; options: Partial<ObjectStoreOptions> };

// Entries never name a replica count: provisioning sets it on each.
const stream = (config: NamedStreamConfig): TopologyEntry => ({ kind: "stream", config });
const consumer = (streamName: string, config: Partial<ConsumerConfig> & { durable_name: string }): TopologyEntry => ({ kind: "consumer", stream: streamName, config });
const kv = (name: string, options: Partial<KvOptions>): TopologyEntry => ({ kind: "kv", name, options: { storage: StorageType.File, ...options } });
/** The JetStream stream that holds a KV or object bucket. */
export function kvStream(bucket: string): string {
  return `KV_${bucket}`;
}
export const objStream = (bucket: string): string => `OBJ_${bucket}`;
export const obj = (name: string, options: Partial<ObjectStoreOptions> = {}): TopologyEntry => ({ kind: "obj", name, options: { storage: StorageType.File, ...options } });

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

/**
 * The whole topology. Lane consumers (one per lane, D1) are not entries:
 * runners create them as lanes appear (`laneConsumerConfig`); like every
 * consumer they take their stream's replica count. Heartbeats are in memory
 * and replicated like the rest: they are a few messages a second, and an R1
 * heartbeats stream would make every supervisor's start-up (it reads the
 * stored heartbeats) depend on the one node that holds it.
 */
export function topologyEntries(opts: TopologyOptions): TopologyEntry[] {
  // Job files outlast their job's record by a run's longest: a file written while its job ran is kept as
  // long as the record, and every read of a file checks the record first (after it: 404).
  const filesMaxAgeMs = opts.retentionMs + MAX_TIMEOUT_MS;
  // A finished job's record (results) or dead letter: the latest per job, kept for the retention.
  const finished = (name: string, subjects: string) =>
    stream({
      name,
      subjects: [subjects],
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      max_msgs_per_subject: 1,
      max_age: nanos(opts.retentionMs),
      allow_direct: true,
      duplicate_window: duplicateWindow(opts.retentionMs),
    });
  return [
    stream({
      name: streams.jobs,
      subjects: [JOBS_WILDCARD],
      retention: RetentionPolicy.Workqueue,
      storage: StorageType.File,
      // A queued job's status is read from its message, by its literal subject.
      allow_direct: true,
      duplicate_window: duplicateWindow(),
    }),
    finished(streams.results, RESULTS_WILDCARD),
    stream({
      name: streams.scheduled,
      subjects: [SCHEDULED_WILDCARD],
      retention: RetentionPolicy.Workqueue,
      storage: StorageType.File,
      allow_direct: true,
      duplicate_window: duplicateWindow(),
    }),
    finished(streams.dead, DEAD_WILDCARD),
    stream({
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
    }),
    consumer(streams.scheduled, schedulerConsumerConfig),
    kv(buckets.jobs, { history: 1, ttl: INTERIM_MAX_AGE_MS }),
    kv(buckets.ops, { history: 5 }),
    kv(buckets.idempotency, { history: 1, ttl: opts.idempotencyWindowMs }),
    // No TTL: a cancel request lives until its job ends, however far its run_at.
    kv(buckets.cancels, { history: 1 }),
    kv(buckets.lanes, { history: 1 }),
    // API keys: only hashes of their secrets; a revoke purges the key.
    kv(buckets.keys, { history: 1 }),
    // No TTL: a schedule lives until deleted; each entry is its spec and its tick state.
    kv(buckets.schedules, { history: 1 }),
    // No TTL: a lease entry is removed when its lease ends; compare-and-set on every change.
    kv(buckets.leases, { history: 1 }),
    // Only hashes of credentials and tokens; a revoke deletes the server, a use deletes the token.
    kv(buckets.computeServers, { history: 1 }),
    kv(buckets.enrollTokens, { history: 1, ttl: MAX_ENROLL_TTL_MS }),
    // One object per file (`<job_id>/<name>`); the object store chunks what is over max_payload.
    obj(objectBuckets.files, { ttl: nanos(filesMaxAgeMs) }),
    // One list per job: a listing is one read, whatever the files stored.
    kv(buckets.fileLists, { history: 1, ttl: filesMaxAgeMs }),
  ];
}

/** Every stream and the stream of every bucket a supervisor uses: what /readyz checks. */
export const TOPOLOGY_STREAMS: readonly string[] = [
  ...Object.values(streams),
  ...Object.values(buckets).map((b) => kvStream(b)),
  ...Object.values(objectBuckets).map((b) => objStream(b)),
];

export function laneConsumerConfig(lane: string, leaseMs: number): Partial<ConsumerConfig> & { durable_name: string } {
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

const schedulerConsumerConfig: Partial<ConsumerConfig> & { durable_name: string } = {
  durable_name: SCHEDULER_CONSUMER,
  filter_subject: SCHEDULED_WILDCARD,
  ack_policy: AckPolicy.Explicit,
  ack_wait: nanos(10_000),
  max_deliver: -1,
  // Parked messages count as pending while they wait out their delay.
  max_ack_pending: 1_000_000,
  max_waiting: 512,
};


/** A stream or bucket stored with fewer replicas than asked. */
export interface UnderReplicated {
  kind: "stream" | "kv" | "obj";
  name: string;
  stream: string;
  replicas: number;
  wanted: number;
}

export interface Topology {
  jsm: JetStreamManager;
  policy: ReplicaPolicy;
  /** Found with fewer replicas than asked and kept (reported at start and by the doctor). */
  underReplicated: UnderReplicated[];
  kv: ReadonlyMap<string, KV>;
  jobsKv: KV;
  opsKv: KV;
  idempotencyKv: KV;
  cancelsKv: KV;
  lanesKv: KV;
  keysKv: KV;
  schedulesKv: KV;
  leasesKv: KV;
  computeServersKv: KV;
  enrollTokensKv: KV;
  fileListsKv: KV;
}

/** Retries the transient failures of a cluster (elections: up to ~10 s) and races with other supervisors. */
async function settle<T>(what: string, step: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + 30_000;
  let lastError: unknown;
  for (let attempt = 0; ; attempt++) {
    try {
      return await step();
    } catch (err) {
      lastError = err;
      const transient = unavailableOf(err) !== undefined;
      if ((!transient && attempt >= 4) || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, Math.min(1000, 50 * (attempt + 1))));
    }
  }
  throw new Error(`could not provision ${what}: ${(lastError as Error)?.message}`, { cause: lastError });
}

async function streamInfo(jsm: JetStreamManager, name: string): Promise<StreamInfo | undefined> {
  try {
    return await jsm.streams.info(name);
  } catch (err) {
    if (/stream not found/i.test((err as Error).message)) return undefined;
    throw err;
  }
}

/**
 * Creates a stream with the policy's replicas, or brings an existing one to
 * our config. Its replica count changes only when `--replicas` asked for one;
 * otherwise a lower count is kept and reported.
 */
async function ensureStream(jsm: JetStreamManager, config: NamedStreamConfig, policy: ReplicaPolicy): Promise<StreamInfo> {
  return settle(`stream ${config.name}`, async () => {
    const existing = await streamInfo(jsm, config.name);
    if (!existing) {
      try {
        return await jsm.streams.add({ ...config, num_replicas: policy.replicas });
      } catch (err) {
        // Another supervisor created it first: settle's next round updates it.
        if (/already in use|exists/i.test((err as Error).message)) throw Object.assign(new Error("created concurrently"), { cause: err });
        throw err;
      }
    }
    const replicas = policy.explicit ? policy.replicas : existing.config.num_replicas;
    return jsm.streams.update(config.name, { ...config, num_replicas: replicas });
  });
}

/**
 * A bucket is a stream its library creates (and shapes), and leaves as it
 * is once it exists: it is scaled like any stream when --replicas asks, and
 * its max age follows the bucket's TTL (the files buckets follow
 * --retention-ms) like a stream's config.
 */
async function alignBucketStream(jsm: JetStreamManager, streamName: string, policy: ReplicaPolicy, maxAgeNanos: number | undefined): Promise<StreamInfo> {
  return settle(`bucket stream ${streamName}`, async () => {
    const info = await jsm.streams.info(streamName);
    const change: Partial<StreamConfig> = {};
    if (policy.explicit && info.config.num_replicas !== policy.replicas) change.num_replicas = policy.replicas;
    if (maxAgeNanos !== undefined && info.config.max_age !== maxAgeNanos) {
      change.max_age = maxAgeNanos;
      // JetStream refuses a duplicate window longer than max_age.
      change.duplicate_window = Math.min(info.config.duplicate_window, maxAgeNanos);
    }
    return Object.keys(change).length > 0 ? jsm.streams.update(streamName, change) : info;
  });
}

export async function ensureConsumer(jsm: JetStreamManager, streamName: string, config: Partial<ConsumerConfig> & { durable_name: string }): Promise<void> {
  // Consumers take their stream's replica count (num_replicas 0) and follow it when it is scaled.
  await settle(`consumer ${config.durable_name}`, async () => {
    try {
      await jsm.consumers.add(streamName, config);
    } catch (err) {
      if (!/already|exists/i.test((err as Error).message)) throw err;
      await jsm.consumers.update(streamName, config.durable_name, config);
    }
  });
}

export async function provisionTopology(nc: NatsConnection, opts: TopologyOptions, log: Logger): Promise<Topology> {
  const jsm = await jetstreamManager(nc);
  const policy = replicaPolicy(nc, opts.replicas, log);
  const underReplicated: UnderReplicated[] = [];
  const check = (kind: UnderReplicated["kind"], name: string, info: StreamInfo) => {
    const replicas = info.config.num_replicas || 1;
    if (replicas < policy.replicas) underReplicated.push({ kind, name, stream: info.config.name, replicas, wanted: policy.replicas });
  };
  const kvs = new Map<string, KV>();
  const kvm = new Kvm(nc);
  const objm = new Objm(nc);
  for (const entry of topologyEntries(opts)) {
    switch (entry.kind) {
      case "stream":
        check("stream", entry.config.name, await ensureStream(jsm, entry.config, policy));
        break;
      case "consumer":
        await ensureConsumer(jsm, entry.stream, entry.config);
        break;
      case "kv": {
        const options = { ...entry.options, replicas: policy.replicas };
        kvs.set(entry.name, await settle(`bucket ${entry.name}`, () => kvm.create(entry.name, options)));
        check("kv", entry.name, await alignBucketStream(jsm, kvStream(entry.name), policy, entry.options.ttl ? nanos(entry.options.ttl) : undefined));
        break;
      }
      case "obj": {
        const options = { ...entry.options, replicas: policy.replicas };
        await settle(`object bucket ${entry.name}`, () => objm.create(entry.name, options));
        check("obj", entry.name, await alignBucketStream(jsm, objStream(entry.name), policy, entry.options.ttl || undefined));
        break;
      }
    }
  }
  reportReplicas(policy, underReplicated, log);
  const bucket = (name: string) => kvs.get(name)!;
  return {
    jsm,
    policy,
    underReplicated,
    kv: kvs,
    jobsKv: bucket(buckets.jobs),
    opsKv: bucket(buckets.ops),
    idempotencyKv: bucket(buckets.idempotency),
    cancelsKv: bucket(buckets.cancels),
    lanesKv: bucket(buckets.lanes),
    keysKv: bucket(buckets.keys),
    schedulesKv: bucket(buckets.schedules),
    leasesKv: bucket(buckets.leases),
    computeServersKv: bucket(buckets.computeServers),
    enrollTokensKv: bucket(buckets.enrollTokens),
    fileListsKv: bucket(buckets.fileLists),
  };
}

/** One line for the topology, and one warning per stream or bucket that keeps fewer replicas than asked. */
function reportReplicas(policy: ReplicaPolicy, under: UnderReplicated[], log: Logger): void {
  log.info({ replicas: policy.replicas, why: policy.why, under_replicated: under.length }, "topology provisioned");
  for (const u of under) {
    log.warn(
      { [u.kind === "stream" ? "stream" : "bucket"]: u.name, replicas: u.replicas, wanted: u.wanted, fix: fixFor(u) },
      `${u.kind === "stream" ? "stream" : "bucket"} ${u.name} has ${u.replicas} replica(s), ${u.wanted} asked: kept as it is`,
    );
  }
}

/** How to bring an under-replicated stream or bucket to the count asked for. */
export function fixFor(u: UnderReplicated): string {
  return `start one supervisor with --replicas ${u.wanted} (an explicit --replicas scales existing streams and buckets), or: nats stream edit ${u.stream} --replicas ${u.wanted}`;
}
