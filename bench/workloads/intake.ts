/**
 * Workload 12 (issue 17, items 5 and 6): what intake costs execution.
 *
 * Batch submit: `n` noop jobs in batches of BATCH_SIZE, BATCHES_IN_FLIGHT
 * batches outstanding, over `bosun.api.jobs.submit_batch` and
 * `POST /api/jobs/batch`, against BullMQ's `addBulk` with the same batches
 * (bullmq.ts). Each side's worker runs meanwhile, as it would in use; the
 * aim is on the accepted rate, the finished rate is beside it.
 *
 * Sustained submits: first the queue's drain rate, a backlog held with
 * `max_concurrency: 0` and then released with no submit beside it; then
 * single submits with `inflight` outstanding for a fixed time, counting the
 * completions inside that window. The ratio is those completions per
 * second ÷ the drain rate. Once more with `max_pending` set: a
 * refused submit (503) waits BACKOFF_MS and is tried again, and the backlog
 * must stay near the limit.
 */
import { api } from "../../src/contract/index.js";
import { finishTimeoutMs, payloadOf, type Ctx, type Figures } from "../context.js";
import { nowMs } from "../stats.js";
import { ensureGateway, guarded, perSecond, postJson, requestNats, ResultTracker, runBatch, startCluster, stopCluster, type Cluster } from "./bosun.js";

export const BATCH_SIZE = 1000;
export const BATCHES_IN_FLIGHT = 4;
const BACKOFF_MS = 20;
const MAX_PENDING = 2000;

interface BatchReply {
  jobs: ({ job_id: string } | { error: { code: string; message: string } })[];
}

/** Batch entries from, as BullMQ's get the same payloads. */
const noops = (queue: string, from: number, n: number) => ({ jobs: Array.from({ length: n }, (_, i) => ({ type: "noop", queue, payload: payloadOf(from + i) })) });

/** Submits `n` noop jobs in batches, `BATCHES_IN_FLIGHT` outstanding, each accepted job's id given to the tracker. */
async function submitBatches(ctx: Ctx, via: "nats" | "http", queue: string, n: number, tracker: ResultTracker): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < n) {
      const from = next;
      const size = Math.min(BATCH_SIZE, n - from);
      next += size;
      const body = noops(queue, from, size);
      const reply = via === "nats" ? await requestNats<BatchReply>(ctx.nc, api.jobsSubmitBatch, body, 60_000) : await postJson<BatchReply>(ctx, "/api/jobs/batch", body, 60_000);
      if (reply === "unavailable") throw new Error("a batch was refused: 503");
      for (const entry of reply.jobs) {
        if (!("job_id" in entry)) throw new Error(`a batch entry was refused: ${JSON.stringify(entry.error)}`);
        tracker.expect(entry.job_id);
      }
    }
  };
  await Promise.all(Array.from({ length: BATCHES_IN_FLIGHT }, lane));
}

/** Batch submit for Bosun: accepted and finished rates of `throughput` noop jobs. */
export async function bosunBatch(ctx: Ctx, via: "nats" | "http"): Promise<Figures> {
  const n = ctx.counts.throughput;
  if (via === "http") await ensureGateway(ctx);
  const cluster = await startCluster(ctx, `batch_${via}`, 1, ctx.counts.pool);
  try {
    await guarded(ctx, cluster, runBatch(ctx, "nats", cluster.queue, ctx.counts.warmup, { type: "noop" }));
    const tracker = new ResultTracker(ctx.nc);
    try {
      await ctx.nc.flush();
      const t0 = nowMs();
      await guarded(ctx, cluster, submitBatches(ctx, via, cluster.queue, n, tracker), via);
      const accepted = nowMs() - t0;
      await guarded(ctx, cluster, tracker.waitFor(n, finishTimeoutMs(n)), via);
      const finished = nowMs() - t0;
      if (tracker.failed > 0) throw new Error(`${tracker.failed} of ${n} jobs did not succeed`);
      return { [`batch.bosun_${via}`]: perSecond(n, accepted), [`batch.bosun_${via}.finished`]: perSecond(n, finished) };
    } finally {
      tracker.close();
    }
  } finally {
    await stopCluster(ctx, cluster);
  }
}

async function setLimits(ctx: Ctx, queue: string, limits: Record<string, number | null>): Promise<void> {
  const reply = await requestNats(ctx.nc, api.opsSet, { queues: { [queue]: limits } });
  if (reply === "unavailable") throw new Error("ops.set refused: 503");
}

/** Completions per second of a backlog released at once, with no submit beside it. */
async function drainRate(ctx: Ctx, cluster: Cluster, n: number): Promise<number> {
  const tracker = new ResultTracker(ctx.nc);
  try {
    await setLimits(ctx, cluster.queue, { max_concurrency: 0 });
    await ctx.nc.flush();
    await submitBatches(ctx, "nats", cluster.queue, n, tracker);
    if (tracker.finished > 0) throw new Error(`${tracker.finished} jobs ran while the queue was held`);
    const t0 = nowMs();
    await setLimits(ctx, cluster.queue, { max_concurrency: null });
    await guarded(ctx, cluster, tracker.waitFor(n, finishTimeoutMs(n)));
    return perSecond(n, nowMs() - t0);
  } finally {
    tracker.close();
  }
}

interface Sustained {
  accepted: number;
  refused: number;
  /** Results inside the submit window. */
  completedInWindow: number;
  /** Accepted minus finished, at its highest (sampled every 100 ms). */
  maxBacklog: number;
}

/** Single submits, `inflight` outstanding, for `windowMs`; a 503 waits BACKOFF_MS and tries again. */
async function sustainedSubmits(ctx: Ctx, cluster: Cluster, windowMs: number): Promise<Sustained> {
  const tracker = new ResultTracker(ctx.nc);
  const out: Sustained = { accepted: 0, refused: 0, completedInWindow: 0, maxBacklog: 0 };
  const sampler = setInterval(() => (out.maxBacklog = Math.max(out.maxBacklog, out.accepted - tracker.finished)), 100);
  try {
    await ctx.nc.flush();
    const end = nowMs() + windowMs;
    let i = 0;
    const lane = async () => {
      while (nowMs() < end) {
        const reply = await requestNats<{ job_id: string }>(ctx.nc, api.jobsSubmit, { type: "noop", queue: cluster.queue, payload: payloadOf(i++) });
        if (reply === "unavailable") {
          out.refused++;
          await new Promise((r) => setTimeout(r, BACKOFF_MS));
          continue;
        }
        out.accepted++;
        tracker.expect(reply.job_id);
      }
    };
    const windowEnd = new Promise<void>((resolve) => setTimeout(() => ((out.completedInWindow = tracker.finished), resolve()), windowMs));
    await guarded(ctx, cluster, Promise.all([...Array.from({ length: ctx.counts.inflight }, lane), windowEnd]));
    // What was accepted still runs to its end before the next run starts.
    await guarded(ctx, cluster, tracker.waitFor(out.accepted, finishTimeoutMs(out.accepted)));
    if (tracker.failed > 0) throw new Error(`${tracker.failed} of ${out.accepted} jobs did not succeed`);
    return out;
  } finally {
    clearInterval(sampler);
    tracker.close();
  }
}

/** Sustained submits on one supervisor, without limit ("free") or with max_pending ("bounded"). */
export async function bosunSustained(ctx: Ctx, mode: "free" | "bounded"): Promise<Figures> {
  const { sustainedMs, throughput } = ctx.counts;
  const cluster = await startCluster(ctx, `sustained_${mode}`, 1, ctx.counts.pool);
  const key = mode === "free" ? "sustained" : "sustained.bounded";
  try {
    await guarded(ctx, cluster, runBatch(ctx, "nats", cluster.queue, ctx.counts.warmup, { type: "noop" }));
    const drain = await drainRate(ctx, cluster, Math.round(throughput / 2));
    if (mode === "bounded") await setLimits(ctx, cluster.queue, { max_pending: MAX_PENDING });
    const s = await sustainedSubmits(ctx, cluster, sustainedMs);
    const completions = perSecond(s.completedInWindow, sustainedMs);
    const acceptedRate = perSecond(s.accepted, sustainedMs);
    return {
      [`${key}.completion_ratio`]: completions / drain,
      [`${key}.drain`]: drain,
      [`${key}.completions`]: completions,
      [`${key}.accepted`]: acceptedRate,
      [`${key}.max_backlog`]: s.maxBacklog,
      ...(mode === "bounded" && { [`${key}.refused`]: perSecond(s.refused, sustainedMs) }),
    };
  } finally {
    await stopCluster(ctx, cluster);
  }
}
