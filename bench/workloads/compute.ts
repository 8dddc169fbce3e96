/**
 * Workload 11 (BENCH_ONLY=compute, not in the default run): issue 14's
 * remote compute path against Bosun's own supervisor path, same run, same
 * pool size. Supervisor path: `noop` jobs on one supervisor (pool N). Remote
 * path: the same jobs on a queue only one `bosun compute-worker` (pool N)
 * serves, leased over HTTP through the gateway (lease long-poll, result;
 * no heartbeat for a run this short); the supervisor there only serves the
 * API. Both timed as workload 1 (first submit to last result), then
 * sequential submit → result (wait_ms) for p50 / p99.
 */
import path from "node:path";
import { cpuFigures, freshName, type Ctx, type Figures } from "../context.js";
import { waitUntil } from "../procs.js";
import { CpuMeter } from "../proc-stats.js";
import { summarizeLatencies } from "../stats.js";
import { ensureGateway, guarded, perSecond, runBatch, sequentialNoops, startCluster, stopCluster } from "./bosun.js";

async function post<T>(port: number, route: string, body: unknown): Promise<T> {
  const res = await fetch(`http://127.0.0.1:${port}${route}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  if (!res.ok) throw new Error(`${route}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

export async function bosunCompute(ctx: Ctx, path_: "supervisor" | "remote"): Promise<Figures> {
  const { fairnessJobs: n, warmup, pool, latency, latencyWarmup } = ctx.counts;
  await ensureGateway(ctx);
  const cluster = await startCluster(ctx, `cmp_${path_}`, 1, pool);
  const queue = path_ === "supervisor" ? cluster.queue : freshName("remote");
  const key = `compute.${path_}`;
  const worker =
    path_ === "remote"
      ? ctx.procs.startComputeWorker("compute-worker", [
          "--gateway",
          `http://127.0.0.1:${ctx.gatewayPort}`,
          "--enroll-token",
          (await post<{ token: string }>(ctx.gatewayPort, "/api/compute/enroll-tokens", { queues: [queue] })).token,
          "--name",
          queue,
          "--credential-file",
          path.join(ctx.procs.tmp, `${queue}.json`),
          "--min",
          String(pool),
          "--max",
          String(pool),
          "--wait-ms",
          "5000",
        ])
      : undefined;
  try {
    if (worker) {
      await waitUntil("the compute worker enrolled", async () => {
        const res = await fetch(`http://127.0.0.1:${ctx.gatewayPort}/api/compute/servers`);
        return res.ok && ((await res.json()) as { servers: { name: string }[] }).servers.some((s) => s.name === queue);
      });
    }
    await guarded(ctx, cluster, runBatch(ctx, "nats", queue, warmup, { type: "noop" }));
    const supervisor = cluster.supervisors[0]!;
    // Execution processes are the worker's children on the remote path, the supervisor's on its own.
    const cpu = new CpuMeter({ supervisor: supervisor.pid, nats: ctx.natsPids[0]!, gateway: ctx.gateway.pid, ...(worker && { worker: worker.pid }) }, (worker ?? supervisor).pid);
    let timing;
    let used;
    try {
      timing = await guarded(ctx, cluster, runBatch(ctx, "nats", queue, n, { type: "noop" }));
    } finally {
      used = cpu.stop();
    }
    const s = summarizeLatencies(await guarded(ctx, cluster, sequentialNoops(ctx, "nats", queue, latency, latencyWarmup)));
    return { [key]: perSecond(n, timing.finishedMs), [`${key}.p50`]: s.p50, [`${key}.p99`]: s.p99, ...cpuFigures(key, used, n) };
  } finally {
    if (worker) await ctx.procs.stop(worker);
    await stopCluster(ctx, cluster);
  }
}
