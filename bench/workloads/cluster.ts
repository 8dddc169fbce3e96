/**
 * Workload 6, scale-out you can see: `noop` throughput with 1, 2 and 3
 * supervisors on a three-node JetStream cluster (every stream and bucket
 * R3, as Bosun provisions it there), and the same on the single server of
 * the other workloads, with the CPU time every process used per job
 * (nats-servers, supervisors and their execution processes), so the curve
 * can be read against the cores: where it flattens, CPU per job says why.
 */
import { connect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/nats-core";
import { natsOptions } from "../../src/platform/nats-options.js";
import type { Ctx, Figures } from "../context.js";
import type { Proc } from "../procs.js";
import { CpuSampler } from "../proc-stats.js";
import { guarded, runBatch, startCluster, stopCluster } from "./bosun.js";

interface Target {
  url: string;
  nc: NatsConnection;
  servers: Proc[];
}

let cluster: Promise<Target> | undefined;

/** The cluster is started once per benchmark run, at the first cluster run, and stopped with everything else. */
function clusterTarget(ctx: Ctx): Promise<Target> {
  cluster ??= (async () => {
    const { url, procs } = await ctx.procs.startNatsCluster(3);
    return { url, nc: await connect(natsOptions(url, "bosun-bench")), servers: procs };
  })();
  return cluster;
}

export async function closeClusterTarget(): Promise<void> {
  const target = await cluster?.catch(() => undefined);
  await target?.nc.close().catch(() => undefined);
  cluster = undefined;
}

/** `supervisors` supervisors on the cluster (`on: "cluster"`) or on the single server, noop jobs, jobs/s and CPU ms per job. */
export async function bosunClusterScale(ctx: Ctx, on: "cluster" | "single", supervisors: number): Promise<Figures> {
  const target = on === "cluster" ? await clusterTarget(ctx) : undefined;
  // The same workload code, pointed at the cluster: its URL for the supervisors, a client connected to it.
  const here: Ctx = target ? { ...ctx, natsUrl: target.url, nc: target.nc } : ctx;
  const n = ctx.counts.clusterJobs;
  const group = await startCluster(here, `${on}${supervisors}`, supervisors, ctx.counts.pool);
  try {
    await guarded(here, group, runBatch(here, "nats", group.queue, ctx.counts.warmup, { type: "noop" }));
    const natsPids = target ? target.servers.map((p) => p.pid) : ctx.natsPids;
    const bosun = new CpuSampler(() => group.supervisors.map((p) => p.pid));
    const nats = new CpuSampler(() => natsPids);
    const timing = await guarded(here, group, runBatch(here, "nats", group.queue, n, { type: "noop" }));
    const bosunMs = bosun.stop();
    const natsMs = nats.stop();
    const key = `cluster.${on}_${supervisors}`;
    return {
      [key]: (n * 1000) / timing.finishedMs,
      [`${key}.cpu_per_job`]: (bosunMs + natsMs) / n,
      [`${key}.nats_cpu_per_job`]: natsMs / n,
    };
  } finally {
    await stopCluster(here, group);
  }
}
