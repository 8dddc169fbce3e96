/**
 * Bosun's side of workloads 1, 2, 4, 5 and 6. Each run starts its own
 * supervisors on a fresh queue, warms them up, measures, stops them, and
 * empties Bosun's streams so that every run starts from the same state.
 */
import http from "node:http";
import type { Msg, NatsConnection, Subscription } from "@nats-io/nats-core";
import { jetstreamManager } from "@nats-io/jetstream";
import { api, buckets, jobIdOfSubject, LANE_CONSUMER_PREFIX, RESULTS_WILDCARD, SERVICE_NAME, streams } from "../../src/contract/index.js";
import { cpuFigures, finishTimeoutMs, freshName, payloadFor, payloadOf, type Ctx, type Figures, type JobShape } from "../context.js";
import { waitUntil, type Proc } from "../procs.js";
import { CpuMeter, MemorySampler } from "../proc-stats.js";
import { nowMs, pump, summarizeLatencies } from "../stats.js";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const REQUEST_TIMEOUT_MS = 30_000;
const LATENCY_WAIT_MS = 10_000;

type Via = "nats" | "http";
export type Isolation = "process" | "thread";

interface SubmitReply {
  job_id: string;
  state: string;
}

/** A request to one of Bosun's NATS API subjects; "unavailable" for a 503 (backpressure, a paused queue), else the reply or a throw. */
export async function requestNats<T>(nc: NatsConnection, subject: string, body: object, timeoutMs = REQUEST_TIMEOUT_MS): Promise<T | "unavailable"> {
  const msg = await nc.request(subject, encoder.encode(JSON.stringify(body)), { timeout: timeoutMs });
  const code = msg.headers?.get("Nats-Service-Error-Code");
  if (code === "503") return "unavailable";
  const reply = JSON.parse(decoder.decode(msg.data)) as T & { error?: { code: string; message: string } };
  if (reply.error || code) throw new Error(`${subject} refused: ${JSON.stringify(reply.error ?? reply)}`);
  return reply;
}

async function submitNats(nc: NatsConnection, body: object): Promise<SubmitReply> {
  const reply = await requestNats<SubmitReply>(nc, api.jobsSubmit, body);
  if (reply === "unavailable") throw new Error("submit refused: 503 unavailable");
  return reply;
}

/** POSTs JSON to the gateway: the parsed reply of a 200 or 202, else a throw. */
export function postJson<T>(ctx: Ctx, path: string, body: object, timeoutMs = REQUEST_TIMEOUT_MS): Promise<T> {
  const data = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: "127.0.0.1",
        port: ctx.gatewayPort,
        path,
        method: "POST",
        agent: ctx.http,
        headers: { "content-type": "application/json", "content-length": Buffer.byteLength(data) },
        timeout: timeoutMs,
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => (text += chunk));
        res.on("end", () => {
          if (res.statusCode !== 200 && res.statusCode !== 202) reject(new Error(`POST ${path} answered ${res.statusCode}: ${text.slice(0, 300)}`));
          else resolve(JSON.parse(text) as T);
        });
        res.on("error", reject);
      },
    );
    req.once("timeout", () => req.destroy(new Error(`POST ${path} timed out`)));
    req.once("error", reject);
    req.end(data);
  });
}

const submitHttp = (ctx: Ctx, body: object, waitMs?: number): Promise<SubmitReply> =>
  postJson<SubmitReply>(ctx, waitMs === undefined ? "/api/jobs" : `/api/jobs?wait_ms=${waitMs}`, body, REQUEST_TIMEOUT_MS + (waitMs ?? 0));

const submit = (ctx: Ctx, via: Via, body: object): Promise<SubmitReply> => (via === "nats" ? submitNats(ctx.nc, body) : submitHttp(ctx, body));

/**
 * Counts results on `bosun.results.>` (a core subscription sees each one as
 * it is stored) for the job ids this run submitted; a result may arrive
 * before its submit reply, so early ones are kept until their id is known.
 */
export class ResultTracker {
  readonly #sub: Subscription;
  readonly #pending = new Set<string>();
  readonly #early = new Map<string, boolean>();
  #finished = 0;
  #failed = 0;
  #target = Number.POSITIVE_INFINITY;
  #reached: (() => void) | undefined;

  constructor(nc: NatsConnection) {
    this.#sub = nc.subscribe(RESULTS_WILDCARD, { callback: (_err, msg) => this.#onResult(msg) });
  }

  get failed(): number {
    return this.#failed;
  }

  /** Results counted so far (of expected jobs). */
  get finished(): number {
    return this.#finished;
  }

  #onResult(msg: Msg): void {
    const id = jobIdOfSubject(msg.subject);
    const ok = (JSON.parse(decoder.decode(msg.data)) as { state?: string }).state === "succeeded";
    if (this.#pending.delete(id)) this.#count(ok);
    else this.#early.set(id, ok);
  }

  expect(jobId: string): void {
    const ok = this.#early.get(jobId);
    if (ok === undefined) this.#pending.add(jobId);
    else {
      this.#early.delete(jobId);
      this.#count(ok);
    }
  }

  #count(ok: boolean): void {
    this.#finished++;
    if (!ok) this.#failed++;
    if (this.#finished >= this.#target) this.#reached?.();
  }

  async waitFor(target: number, timeoutMs: number): Promise<void> {
    if (this.#finished >= target) return;
    this.#target = target;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`only ${this.#finished} of ${target} results within ${timeoutMs} ms`)), timeoutMs);
      this.#reached = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  close(): void {
    this.#sub.unsubscribe();
  }
}

interface BatchTiming {
  /** From the first submit to the last submit reply. */
  acceptedMs: number;
  /** From the first submit to the last result. */
  finishedMs: number;
}

/**
 * Submits `n` jobs with `inflight` submits outstanding, until every result
 * has arrived. `fields(i)` adds to the i-th submit's body (priority, tenant).
 */
export async function runBatch(ctx: Ctx, via: Via, queue: string, n: number, job: JobShape, fields?: (i: number) => object): Promise<BatchTiming> {
  const tracker = new ResultTracker(ctx.nc);
  try {
    await ctx.nc.flush(); // the subscription is on the server before the first job can finish
    const t0 = nowMs();
    await pump(n, ctx.counts.inflight, async (i) => {
      const reply = await submit(ctx, via, { type: job.type, queue, payload: payloadFor(job, i), ...fields?.(i) });
      tracker.expect(reply.job_id);
    });
    const accepted = nowMs();
    await tracker.waitFor(n, finishTimeoutMs(n, (job.ms ?? 5) * 2));
    const finished = nowMs();
    if (tracker.failed > 0) throw new Error(`${tracker.failed} of ${n} jobs did not succeed`);
    return { acceptedMs: accepted - t0, finishedMs: finished - t0 };
  } finally {
    tracker.close();
  }
}

export interface Cluster {
  queue: string;
  supervisors: Proc[];
}

/** Starts supervisors serving a fresh queue and waits until each one answers as a `bosun` service. */
export async function startCluster(ctx: Ctx, label: string, supervisors: number, pool: number, isolation: Isolation = "process"): Promise<Cluster> {
  const queue = freshName(label);
  const ids = Array.from({ length: supervisors }, (_, i) => `${queue}-s${i + 1}`);
  const procs = ids.map((workerId) => ctx.procs.startSupervisor(ctx.natsUrl, { workerId, queue, pool, isolation }));
  const cluster = { queue, supervisors: procs };
  try {
    const died = Promise.race(procs.map((p) => p.exited.then(() => p)));
    const ready = waitUntil(`supervisors ${ids.join(", ")}`, async () => {
      const seen = await pingWorkerIds(ctx.nc);
      return ids.every((id) => seen.has(id));
    }, 30_000);
    const winner = await Promise.race([ready.then(() => undefined), died]);
    if (winner) throw new Error(`supervisor ${winner.name} exited during start-up ${ctx.procs.logTail(winner)}`);
  } catch (err) {
    await stopCluster(ctx, cluster);
    throw err;
  }
  return cluster;
}

async function pingWorkerIds(nc: NatsConnection): Promise<Set<string>> {
  const seen = new Set<string>();
  const replies = await nc.requestMany(`$SRV.PING.${SERVICE_NAME}`, undefined, { strategy: "timer", maxWait: 300 });
  for await (const msg of replies) {
    const id = (JSON.parse(decoder.decode(msg.data)) as { metadata?: { worker_id?: string } }).metadata?.worker_id;
    if (id) seen.add(id);
  }
  return seen;
}

/** Stops the supervisors (graceful drain), then removes what the run left in JetStream. */
export async function stopCluster(ctx: Ctx, cluster: Cluster): Promise<void> {
  await Promise.all(cluster.supervisors.map((p) => ctx.procs.stop(p)));
  const jsm = await jetstreamManager(ctx.nc);
  for await (const c of jsm.consumers.list(streams.jobs)) {
    if (c.name.startsWith(LANE_CONSUMER_PREFIX)) await jsm.consumers.delete(streams.jobs, c.name).catch(() => undefined);
  }
  for (const stream of [streams.jobs, streams.results, `KV_${buckets.jobs}`, `KV_${buckets.lanes}`]) await jsm.streams.purge(stream).catch(() => undefined);
}

/** Fails fast if a supervisor (or, over HTTP, the gateway) dies mid-run instead of waiting for the run's timeout. */
export async function guarded<T>(ctx: Ctx, cluster: Cluster, work: Promise<T>, via: Via = "nats"): Promise<T> {
  const watched = via === "http" ? [...cluster.supervisors, ctx.gateway] : cluster.supervisors;
  const died = Promise.race(watched.map((p) => p.exited.then(() => p)));
  const result = await Promise.race([work.then((value) => ({ value })), died]);
  if ("value" in result) return result.value;
  throw new Error(`${result.name} exited mid-run ${ctx.procs.logTail(result)}`);
}

/** Before an HTTP run: a gateway that has died (something else stopped it) is replaced, and that is noted. */
export async function ensureGateway(ctx: Ctx): Promise<void> {
  const old = ctx.gateway;
  if (old.child.exitCode === null && old.child.signalCode === null) return;
  const note = `the gateway had exited before an HTTP run ${ctx.procs.logTail(old, 5)}; a new one was started`;
  ctx.notes.push(note);
  process.stdout.write(`bench: ${note}\n`);
  const fresh = await ctx.procs.startGateway(ctx.natsUrl);
  ctx.http.destroy();
  ctx.gateway = fresh.proc;
  ctx.gatewayPort = fresh.port;
}

interface BosunRun {
  /** Figure key: `<key>` jobs/s, `<key>.accept`, and `us.<key>.*` CPU per job. */
  key: string;
  via: Via;
  isolation: Isolation;
  n: number;
  pool: number;
  job: JobShape;
  /** Peak RSS figures too (workload 5). */
  memory?: boolean;
}

/**
 * One timed batch on a fresh supervisor, after a warm-up, with the CPU each
 * process used during it: the supervisor (with thread isolation, its
 * execution threads too), its execution processes ("children"), nats-server,
 * the gateway (HTTP runs) and this harness (the client).
 */
async function bosunRun(ctx: Ctx, run: BosunRun): Promise<Figures> {
  const { warmup } = ctx.counts;
  const { via, n } = run;
  if (via === "http") await ensureGateway(ctx);
  const cluster = await startCluster(ctx, run.key.replaceAll(".", "_"), 1, run.pool, run.isolation);
  try {
    await guarded(ctx, cluster, runBatch(ctx, via, cluster.queue, warmup, { type: "noop" }), via);
    const supervisor = cluster.supervisors[0]!;
    const sampler = new MemorySampler(supervisor.pid);
    const cpu = new CpuMeter({ supervisor: supervisor.pid, nats: ctx.natsPids[0]!, ...(via === "http" && { gateway: ctx.gateway.pid }) }, supervisor.pid);
    let mem;
    let used;
    let timing;
    try {
      timing = await guarded(ctx, cluster, runBatch(ctx, via, cluster.queue, n, run.job), via);
    } finally {
      mem = sampler.stop();
      used = cpu.stop();
    }
    const figures: Figures = {
      [run.key]: perSecond(n, timing.finishedMs),
      [`${run.key}.accept`]: perSecond(n, timing.acceptedMs),
      ...cpuFigures(run.key, run.isolation === "thread" ? { supervisor: used.supervisor!, nats: used.nats!, harness: used.harness! } : used, n),
    };
    if (run.memory) {
      figures[run.isolation === "thread" ? "mem.supervisor_threads" : "mem.supervisor"] = mem.root;
      if (mem.children.length > 0) figures["mem.execution"] = Math.max(...mem.children);
    }
    return figures;
  } finally {
    await stopCluster(ctx, cluster);
  }
}

export const perSecond = (jobs: number, ms: number): number => (jobs * 1000) / ms;

/** Workload 1 (and 5): noop throughput over NATS or HTTP, with process or thread isolation. */
export function bosunThroughput(ctx: Ctx, via: Via, isolation: Isolation = "process"): Promise<Figures> {
  const key = `tp.bosun_${via}${isolation === "thread" ? "_thread" : ""}`;
  return bosunRun(ctx, { key, via, isolation, n: ctx.counts.throughput, pool: ctx.counts.pool, job: { type: "noop" }, memory: via === "nats" });
}

/** Workload 6: 10 ms sleeps on a pool of 16, or 5 ms of CPU on a pool of 2, over NATS. */
export function bosunRealistic(ctx: Ctx, isolation: Isolation, kind: "sleep" | "cpu"): Promise<Figures> {
  const c = ctx.counts;
  return kind === "sleep"
    ? bosunRun(ctx, { key: `sleep.bosun_${isolation}`, via: "nats", isolation, n: c.sleepJobs, pool: c.sleepPool, job: { type: "sleep", ms: c.sleepMs } })
    : bosunRun(ctx, { key: `cpu5.bosun_${isolation}`, via: "nats", isolation, n: c.cpuShortJobs, pool: c.cpuShortPool, job: { type: "cpu", ms: c.cpuShortMs } });
}

/** Submit → result in hand (wait_ms) of `n` noop jobs one after another, after `warmup` untimed: each one's ms. */
export async function sequentialNoops(ctx: Ctx, via: Via, queue: string, n: number, warmup: number): Promise<number[]> {
  const one = async (i: number): Promise<number> => {
    const body = { type: "noop", queue, payload: payloadOf(i) };
    const t0 = nowMs();
    const reply = via === "nats" ? await submitNats(ctx.nc, { ...body, wait_ms: LATENCY_WAIT_MS }) : await submitHttp(ctx, body, LATENCY_WAIT_MS);
    const elapsed = nowMs() - t0;
    if (reply.state !== "succeeded") throw new Error(`job ${reply.job_id} came back ${reply.state}, not succeeded`);
    return elapsed;
  };
  for (let i = 0; i < warmup; i++) await one(i);
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(await one(i));
  return out;
}

/** Workload 2: sequential submit → result in hand (wait_ms), p50 and p99. */
export async function bosunLatency(ctx: Ctx, via: Via, isolation: Isolation = "process"): Promise<Figures> {
  const { latency: n, latencyWarmup, pool } = ctx.counts;
  if (via === "http") await ensureGateway(ctx);
  const cluster = await startCluster(ctx, `lat_${via}`, 1, pool, isolation);
  const key = `lat.bosun_${via}${isolation === "thread" ? "_thread" : ""}`;
  try {
    const samples = await guarded(ctx, cluster, sequentialNoops(ctx, via, cluster.queue, n, latencyWarmup), via);
    const s = summarizeLatencies(samples);
    return { [`${key}.p50`]: s.p50, [`${key}.p99`]: s.p99, [`${key}.mean`]: s.mean };
  } finally {
    await stopCluster(ctx, cluster);
  }
}

/** Workload 4a: noop throughput over NATS with 1 or 2 supervisors (each with the full pool). */
export async function bosunScaleOut(ctx: Ctx, supervisors: number): Promise<Figures> {
  const { throughput: n, warmup, pool } = ctx.counts;
  const cluster = await startCluster(ctx, `scale${supervisors}`, supervisors, pool);
  try {
    await guarded(ctx, cluster, runBatch(ctx, "nats", cluster.queue, warmup, { type: "noop" }));
    const timing = await guarded(ctx, cluster, runBatch(ctx, "nats", cluster.queue, n, { type: "noop" }));
    return { [`scale.supervisors_${supervisors}`]: perSecond(n, timing.finishedMs) };
  } finally {
    await stopCluster(ctx, cluster);
  }
}

/** Workload 4b: `cpu` jobs (busy loop of cpuMs) with a pool of `pool` processes. */
export async function bosunCpu(ctx: Ctx, pool: number): Promise<Figures> {
  const { cpuJobs: n, cpuMs, warmup } = ctx.counts;
  const cluster = await startCluster(ctx, `cpu${pool}`, 1, pool);
  try {
    await guarded(ctx, cluster, runBatch(ctx, "nats", cluster.queue, Math.min(warmup, 64), { type: "noop" }));
    const timing = await guarded(ctx, cluster, runBatch(ctx, "nats", cluster.queue, n, { type: "cpu", ms: cpuMs }));
    return { [`cpu.pool_${pool}`]: perSecond(n, timing.finishedMs) };
  } finally {
    await stopCluster(ctx, cluster);
  }
}
