/**
 * BullMQ, the peer, for workloads 1, 2 and 6. The producer (Queue, QueueEvents)
 * is in the harness process, as Bosun's client is; the Worker runs in its
 * own process (peers/bullmq-worker.ts), as a Bosun supervisor does. Each run
 * uses a fresh queue, and Redis is flushed after it.
 */
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Queue, QueueEvents } from "bullmq";
import { cpuFigures, finishTimeoutMs, freshName, payloadFor, payloadOf, type Ctx, type Figures, type JobShape } from "../context.js";
import { withTimeout, type Proc } from "../procs.js";
import { CpuMeter, MemorySampler } from "../proc-stats.js";
import { nowMs, pump, summarizeLatencies } from "../stats.js";

export type BullMode = "inprocess" | "sandboxed";

const WORKER_ENTRY = fileURLToPath(new URL("../peers/bullmq-worker.js", import.meta.url));
const LATENCY_WAIT_MS = 10_000;

const connectionOf = (ctx: Ctx) => ({ host: "127.0.0.1", port: ctx.redisPort, maxRetriesPerRequest: null });

interface WorkerHost {
  proc: Proc;
  /** Resolves once `count` jobs have completed or failed; rejects if any failed or the host died. */
  reached(count: number, timeoutMs: number): Promise<void>;
}

type HostMessage = { t: "ready" } | { t: "reached"; at: number; completed: number; failed: number };

async function startWorkerHost(ctx: Ctx, queue: string, mode: BullMode, concurrency = ctx.counts.pool): Promise<WorkerHost> {
  const proc = ctx.procs.spawn(`bullmq-${mode}`, process.execPath, [WORKER_ENTRY], {
    ipc: true,
    env: {
      BENCH_REDIS_PORT: String(ctx.redisPort),
      BENCH_QUEUE: queue,
      BENCH_MODE: mode,
      BENCH_CONCURRENCY: String(concurrency),
      BENCH_PROCESSOR: path.join(ctx.procs.root, "bench", "peers", "processor.cjs"),
    },
  });
  const waiters = new Map<number, { resolve(): void; reject(err: Error): void }>();
  let readyResolve!: () => void;
  const ready = new Promise<void>((resolve) => (readyResolve = resolve));
  proc.child.on("message", (msg: HostMessage) => {
    if (msg.t === "ready") readyResolve();
    else {
      const waiter = waiters.get(msg.at);
      waiters.delete(msg.at);
      if (msg.failed > 0) waiter?.reject(new Error(`${msg.failed} BullMQ jobs failed`));
      else waiter?.resolve();
    }
  });
  const died = proc.exited.then(() => {
    throw new Error(`BullMQ worker host exited ${ctx.procs.logTail(proc)}`);
  });
  died.catch(() => undefined);
  try {
    await withTimeout(Promise.race([ready, died]), 30_000, "BullMQ worker host ready");
  } catch (err) {
    await ctx.procs.stop(proc, 1000);
    throw err;
  }
  return {
    proc,
    reached: (count, timeoutMs) => {
      const done = new Promise<void>((resolve, reject) => waiters.set(count, { resolve, reject }));
      proc.child.send({ t: "notify", at: count });
      return withTimeout(Promise.race([done, died]), timeoutMs, `BullMQ: ${count} jobs finished`);
    },
  };
}

async function stopWorkerHost(ctx: Ctx, host: WorkerHost): Promise<void> {
  if (host.proc.child.connected) host.proc.child.send({ t: "stop" });
  await ctx.procs.stop(host.proc, 10_000);
}

async function addMany(queue: Queue, n: number, inflight: number, shape: JobShape = { type: "noop" }): Promise<void> {
  await pump(n, inflight, async (i) => {
    await queue.add(shape.type, payloadFor(shape, i));
  });
}

export interface BullRun {
  /** Figure key: `<key>` jobs/s, `<key>.accept`, and `us.<key>.*` CPU per job. */
  key: string;
  n: number;
  concurrency: number;
  job: JobShape;
  /** Peak RSS figures too (workload 1). */
  memory?: boolean;
}

/** `n` jobs added with `inflight` adds outstanding, until the Worker has completed all. */
export async function bullRun(ctx: Ctx, mode: BullMode, run: BullRun): Promise<Figures> {
  const { warmup, inflight } = ctx.counts;
  const { n, job } = run;
  const name = freshName(run.key.replaceAll(".", "_"));
  const host = await startWorkerHost(ctx, name, mode, run.concurrency);
  const queue = new Queue(name, { connection: connectionOf(ctx) });
  try {
    await queue.waitUntilReady();
    await addMany(queue, warmup, inflight);
    await host.reached(warmup, finishTimeoutMs(warmup));
    const sampler = new MemorySampler(host.proc.pid);
    const cpu = new CpuMeter({ worker: host.proc.pid, redis: ctx.redisPid }, host.proc.pid);
    let mem;
    let finished;
    let accepted;
    let used;
    const t0 = nowMs();
    try {
      await addMany(queue, n, inflight, job);
      accepted = nowMs() - t0;
      await host.reached(warmup + n, finishTimeoutMs(n, (job.ms ?? 5) * 2));
      finished = nowMs() - t0;
    } finally {
      mem = sampler.stop();
      used = cpu.stop();
    }
    const figures: Figures = {
      [run.key]: (n * 1000) / finished,
      [`${run.key}.accept`]: (n * 1000) / accepted,
      ...cpuFigures(run.key, used, n),
    };
    if (run.memory) {
      figures[`mem.bullmq_${mode}_host`] = mem.root;
      if (mode === "sandboxed" && mem.children.length > 0) figures["mem.bullmq_sandbox_child"] = Math.max(...mem.children);
    }
    return figures;
  } finally {
    await queue.close().catch(() => undefined);
    await stopWorkerHost(ctx, host);
    await ctx.redis.flushall();
  }
}

/**
 * Workload 12 for BullMQ: `throughput` noop jobs added with `addBulk` in
 * batches of `batchSize`, `inFlight` outstanding, while the Worker runs:
 * the added and finished rates ("batch.bullmq" is the sandboxed one).
 */
export async function bullBatch(ctx: Ctx, mode: BullMode, batchSize: number, inFlight: number): Promise<Figures> {
  const { warmup, inflight, throughput: n, pool } = ctx.counts;
  const name = freshName(`batch_bullmq_${mode}`);
  const host = await startWorkerHost(ctx, name, mode, pool);
  const queue = new Queue(name, { connection: connectionOf(ctx) });
  const key = mode === "sandboxed" ? "batch.bullmq" : "batch.bullmq_inprocess";
  try {
    await queue.waitUntilReady();
    await addMany(queue, warmup, inflight);
    await host.reached(warmup, finishTimeoutMs(warmup));
    const t0 = nowMs();
    await pump(Math.ceil(n / batchSize), inFlight, async (b) => {
      const size = Math.min(batchSize, n - b * batchSize);
      await queue.addBulk(Array.from({ length: size }, (_, i) => ({ name: "noop", data: payloadOf(b * batchSize + i) })));
    });
    const accepted = nowMs() - t0;
    await host.reached(warmup + n, finishTimeoutMs(n));
    const finished = nowMs() - t0;
    return { [key]: (n * 1000) / accepted, [`${key}.finished`]: (n * 1000) / finished };
  } finally {
    await queue.close().catch(() => undefined);
    await stopWorkerHost(ctx, host);
    await ctx.redis.flushall();
  }
}

/** Workload 1 for BullMQ: noop jobs, concurrency = Bosun's pool size. */
export const bullThroughput = (ctx: Ctx, mode: BullMode): Promise<Figures> =>
  bullRun(ctx, mode, { key: `tp.bullmq_${mode}`, n: ctx.counts.throughput, concurrency: ctx.counts.pool, job: { type: "noop" }, memory: true });

/** Workload 6 for BullMQ: 10 ms sleeps with concurrency 16, or 5 ms of CPU with concurrency 2. */
export function bullRealistic(ctx: Ctx, mode: BullMode, kind: "sleep" | "cpu"): Promise<Figures> {
  const c = ctx.counts;
  return kind === "sleep"
    ? bullRun(ctx, mode, { key: `sleep.bullmq_${mode}`, n: c.sleepJobs, concurrency: c.sleepPool, job: { type: "sleep", ms: c.sleepMs } })
    : bullRun(ctx, mode, { key: `cpu5.bullmq_${mode}`, n: c.cpuShortJobs, concurrency: c.cpuShortPool, job: { type: "cpu", ms: c.cpuShortMs } });
}

/** Workload 2 for BullMQ: sequential add → job.waitUntilFinished(queueEvents), in-process Worker. */
export async function bullLatency(ctx: Ctx): Promise<Figures> {
  const { latency: n, latencyWarmup } = ctx.counts;
  const name = freshName("lat_bullmq");
  const host = await startWorkerHost(ctx, name, "inprocess");
  const queue = new Queue(name, { connection: connectionOf(ctx) });
  const events = new QueueEvents(name, { connection: connectionOf(ctx) });
  try {
    await Promise.all([queue.waitUntilReady(), events.waitUntilReady()]);
    const one = async (i: number): Promise<number> => {
      const t0 = nowMs();
      const job = await queue.add("noop", payloadOf(i));
      await job.waitUntilFinished(events, LATENCY_WAIT_MS);
      return nowMs() - t0;
    };
    for (let i = 0; i < latencyWarmup; i++) await one(i);
    const samples: number[] = [];
    for (let i = 0; i < n; i++) samples.push(await one(i));
    const s = summarizeLatencies(samples);
    return { "lat.bullmq.p50": s.p50, "lat.bullmq.p99": s.p99, "lat.bullmq.mean": s.mean };
  } finally {
    await events.close().catch(() => undefined);
    await queue.close().catch(() => undefined);
    await stopWorkerHost(ctx, host);
    await ctx.redis.flushall();
  }
}
