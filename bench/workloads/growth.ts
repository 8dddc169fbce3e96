/**
 * Workload 6 (BENCH_ONLY=growth, not in the default run): what reads cost as
 * finished jobs pile up. One supervisor; noop jobs submitted in batches of
 * 1,000 until 1,000, 100,000 and 1,000,000 (BENCH_GROWTH_MAX caps it) have
 * finished and are kept; at each size the median time of a list page, a
 * dead-letter page, a status read and the queue status, the store bytes per
 * job and the supervisor's RSS.
 */
import http from "node:http";
import { jetstreamManager } from "@nats-io/jetstream";
import { api, streams } from "../../src/contract/index.js";
import type { Ctx, Figures } from "../context.js";
import { statusKb } from "../proc-stats.js";
import { nowMs } from "../stats.js";
import { startCluster, stopCluster } from "./bosun.js";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const BATCH = 1000;
const BATCHES_IN_FLIGHT = 4;
const SAMPLES = 21;

export const growthSizes = (scale: number, max: number): number[] =>
  [1000, 100_000, 1_000_000].map((n) => Math.max(100, Math.round(n * scale))).filter((n) => n <= max);

function get(ctx: Ctx, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port: ctx.gatewayPort, path, method: "GET", agent: ctx.http, timeout: 30_000 }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      res.on("error", reject);
    });
    req.once("timeout", () => req.destroy(new Error(`GET ${path} timed out`)));
    req.once("error", reject);
    req.end();
  });
}

async function medianMs(ctx: Ctx, path: () => string): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < SAMPLES; i++) {
    const t0 = nowMs();
    const res = await get(ctx, path());
    times.push(nowMs() - t0);
    if (res.status !== 200) throw new Error(`GET ${path()} answered ${res.status}: ${res.body.slice(0, 200)}`);
  }
  return times.sort((a, b) => a - b)[Math.floor(SAMPLES / 2)]!;
}

export async function bosunGrowth(ctx: Ctx): Promise<Figures> {
  const sizes = ctx.counts.growthSizes;
  const cluster = await startCluster(ctx, "growth", 1, ctx.counts.pool);
  const figures: Figures = {};
  const sample: string[] = [];
  const jsm = await jetstreamManager(ctx.nc);
  try {
    let kept = 0;
    for (const size of sizes) {
      const t0 = nowMs();
      let next = kept;
      const worker = async () => {
        while (next < size) {
          const n = Math.min(BATCH, size - next);
          next += n;
          const body = { jobs: Array.from({ length: n }, () => ({ type: "noop", queue: cluster.queue })) };
          const msg = await ctx.nc.request(api.jobsSubmitBatch, encoder.encode(JSON.stringify(body)), { timeout: 60_000 });
          const reply = JSON.parse(decoder.decode(msg.data)) as { jobs: { job_id?: string }[] };
          const id = reply.jobs.find((j) => j.job_id)?.job_id;
          if (id && sample.length < 1000) sample.push(id);
        }
      };
      await Promise.all(Array.from({ length: BATCHES_IN_FLIGHT }, worker));
      // Until every one has finished: nothing pending or running on the queue.
      for (;;) {
        const res = await get(ctx, "/api/platform/queue");
        const q = (JSON.parse(res.body) as { queues: { queue: string; pending: number; running: number }[] }).queues.find((x) => x.queue === cluster.queue);
        if (q && q.pending === 0 && q.running === 0) break;
        await new Promise((r) => setTimeout(r, 500));
      }
      kept = size;
      const label = size >= 1_000_000 ? `${size / 1_000_000}m` : size >= 1000 ? `${size / 1000}k` : String(size);
      process.stdout.write(`bench: growth: ${size.toLocaleString("en")} kept after ${((nowMs() - t0) / 1000).toFixed(1)} s\n`);
      figures[`growth.${label}.list`] = await medianMs(ctx, () => "/api/jobs?limit=20");
      figures[`growth.${label}.dead`] = await medianMs(ctx, () => "/api/jobs?state=dead&limit=20");
      figures[`growth.${label}.status`] = await medianMs(ctx, () => `/api/jobs/${sample[Math.floor(Math.random() * sample.length)]}`);
      figures[`growth.${label}.queue`] = await medianMs(ctx, () => "/api/platform/queue");
      let bytes = 0;
      for (const name of Object.values(streams)) if (name !== streams.heartbeats) bytes += (await jsm.streams.info(name)).state.bytes;
      figures[`growth.${label}.bytes`] = bytes / size;
      figures[`growth.${label}.rss`] = (statusKb(cluster.supervisors[0]!.pid, "VmRSS") ?? 0) / 1024;
    }
    return figures;
  } finally {
    await stopCluster(ctx, cluster);
  }
}
