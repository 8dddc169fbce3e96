/** What every workload gets: the running servers, shared clients and the counts of this run. */
import type http from "node:http";
import type { NatsConnection } from "@nats-io/nats-core";
import type { Redis } from "ioredis";
import type { Proc, Procs } from "./procs.js";

export interface Counts {
  /** Workload 6: 10 ms `sleep` jobs per run, and the pool (Bosun) / concurrency (BullMQ) they get. */
  sleepJobs: number;
  sleepMs: number;
  sleepPool: number;
  /** Workload 6: 5 ms `cpu` jobs per run, and their pool / concurrency. */
  cpuShortJobs: number;
  cpuShortMs: number;
  cpuShortPool: number;
  /** Workload 1 and the noop part of 4: jobs per run. */
  throughput: number;
  /** Workload 2: sequential jobs per run. */
  latency: number;
  /** Workload 4: `cpu` jobs per run, and how long each one spins. */
  cpuJobs: number;
  cpuMs: number;
  /** Outstanding submits at a time. */
  inflight: number;
  /** Bosun's execution processes per supervisor; BullMQ's concurrency. */
  pool: number;
  /** Untimed jobs before each timed phase (process start-up, JIT, connections). */
  warmup: number;
  latencyWarmup: number;
  /** Workload 6: finished jobs kept at each measuring point. */
  growthSizes: number[];
  /** Workload 7: noop jobs per cluster / single-server scale-out run. */
  clusterJobs: number;
  /** Workload 10: noop jobs per run, one band and tenant vs three bands × three tenants. */
  fairnessJobs: number;
  /** Workload 10: ticks of the schedule timed, and its every_ms. */
  scheduleTicks: number;
  scheduleEveryMs: number;
  /** Workload 12: how long single submits are kept up. */
  sustainedMs: number;
}

export interface Ctx {
  procs: Procs;
  natsUrl: string;
  /** The nats-servers' pids (CPU accounting). */
  natsPids: number[];
  redisPid: number;
  /** The harness's own NATS client (noAsyncTraces on, like Bosun's processes). */
  nc: NatsConnection;
  /** The gateway in use; replaced (and the incident noted) if it is found dead before an HTTP run. */
  gateway: Proc;
  gatewayPort: number;
  /** Keep-alive agent for the gateway, one socket per outstanding request. */
  http: http.Agent;
  redisPort: number;
  /** Admin client: FLUSHALL between BullMQ runs. */
  redis: Redis;
  counts: Counts;
  /** Incidents worth a line in the report (not failures of a run). */
  notes: string[];
}

/** Figures of one run, by metric key (see report.ts for what each key is). */
export type Figures = Record<string, number>;

/** A queue or stream name no other run uses. */
export const freshName = (prefix: string): string => `${prefix}_${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;

/** What one run's jobs are: a built-in type of Bosun's, the processor's case of the same name for BullMQ. */
export interface JobShape {
  type: "noop" | "sleep" | "cpu";
  /** sleep and cpu: how long each job takes. */
  ms?: number;
}

/** The payload a job of this shape carries: `{ms}`, or for noop the small payload. */
export const payloadFor = (shape: JobShape, i: number): unknown => (shape.ms === undefined ? payloadOf(i) : { ms: shape.ms });

/** CPU seconds by process over a timed phase -> µs per job, as figures `us.<key>.<process>`. */
export function cpuFigures(key: string, cpuSeconds: Record<string, number>, jobs: number): Figures {
  return Object.fromEntries(Object.entries(cpuSeconds).map(([proc, s]) => [`us.${key}.${proc}`, (s * 1e6) / jobs]));
}

/** A small JSON payload, the same for every system. */
export const payloadOf = (i: number): { i: number; tag: string } => ({ i, tag: "bench" });

/** How long to wait for all of a run's jobs before calling it failed. */
export const finishTimeoutMs = (jobs: number, msPerJob = 5): number => 120_000 + jobs * msPerJob;
