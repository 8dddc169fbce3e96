/**
 * `npm run bench`: starts nats-server, redis-server and a Bosun gateway,
 * runs every workload for Bosun and its peers (alternating, BENCH_ROUNDS
 * rounds), writes bench/RESULTS.md and prints a summary. Every process it
 * started is stopped at the end, on error and on Ctrl-C.
 *
 *   BENCH_SCALE=0.05   scale the job counts down (a quick check of the harness)
 *   BENCH_ROUNDS=3     rounds per workload
 *   BENCH_ONLY=throughput,latency,realistic,limit,scale,intake,cluster   run only these workloads (growth, fairness, compute: only when named)
 *   BENCH_GROWTH_MAX=1000000   the largest size the growth workload keeps
 *   BENCH_RUNS=a,b     within those, only runs whose name contains one of these (for profiling)
 *   BENCH_CPU_PROF=dir supervisors and the gateway run with node --cpu-prof into dir
 *   BENCH_CLI=path     run another build's CLI entry, dist/cli/main.js (A/B comparisons; the report says so)
 *   BENCH_OUT=path     where to write the report (default bench/RESULTS.md)
 *   BENCH_KEEP_TMP=1   keep the temp dir (server data, every process's log)
 */
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { connect } from "@nats-io/transport-node";
import { Redis } from "ioredis";
import type { Counts, Ctx, Figures } from "./context.js";
import { Procs } from "./procs.js";
import { peakRssMb } from "./proc-stats.js";
import { describeEnvironment, evaluate, formatOutcome, renderReport, type Environment } from "./report.js";
import { bosunCpu, bosunLatency, bosunRealistic, bosunScaleOut, bosunThroughput } from "./workloads/bosun.js";
import { bullBatch, bullLatency, bullRealistic, bullThroughput } from "./workloads/bullmq.js";
import { rawJetStream } from "./workloads/jetstream.js";
import { bosunGrowth, growthSizes } from "./workloads/growth.js";
import { bosunClusterScale, closeClusterTarget } from "./workloads/cluster.js";
import { bosunFairness, bosunTicks } from "./workloads/fairness.js";
import { bosunCompute } from "./workloads/compute.js";
import { BATCH_SIZE, BATCHES_IN_FLIGHT, bosunBatch, bosunSustained } from "./workloads/intake.js";

interface RunDef {
  name: string;
  run(ctx: Ctx): Promise<Figures>;
}

interface Workload {
  name: string;
  runs: RunDef[];
  /** Only with BENCH_ONLY naming it (too long for the default run). */
  optIn?: boolean;
}

const workloads: Workload[] = [
  {
    name: "throughput",
    runs: [
      { name: "Bosun NATS API", run: (ctx) => bosunThroughput(ctx, "nats") },
      { name: "Bosun NATS API, thread isolation", run: (ctx) => bosunThroughput(ctx, "nats", "thread") },
      { name: "Bosun HTTP", run: (ctx) => bosunThroughput(ctx, "http") },
      { name: "BullMQ in-process", run: (ctx) => bullThroughput(ctx, "inprocess") },
      { name: "BullMQ sandboxed", run: (ctx) => bullThroughput(ctx, "sandboxed") },
    ],
  },
  {
    name: "latency",
    runs: [
      { name: "Bosun NATS API", run: (ctx) => bosunLatency(ctx, "nats") },
      { name: "Bosun NATS API, thread isolation", run: (ctx) => bosunLatency(ctx, "nats", "thread") },
      { name: "Bosun HTTP", run: (ctx) => bosunLatency(ctx, "http") },
      { name: "BullMQ", run: (ctx) => bullLatency(ctx) },
    ],
  },
  {
    name: "realistic",
    runs: [
      { name: "sleep 10 ms: Bosun, process isolation", run: (ctx) => bosunRealistic(ctx, "process", "sleep") },
      { name: "sleep 10 ms: Bosun, thread isolation", run: (ctx) => bosunRealistic(ctx, "thread", "sleep") },
      { name: "sleep 10 ms: BullMQ sandboxed", run: (ctx) => bullRealistic(ctx, "sandboxed", "sleep") },
      { name: "sleep 10 ms: BullMQ in-process", run: (ctx) => bullRealistic(ctx, "inprocess", "sleep") },
      { name: "cpu 5 ms: Bosun, process isolation", run: (ctx) => bosunRealistic(ctx, "process", "cpu") },
      { name: "cpu 5 ms: Bosun, thread isolation", run: (ctx) => bosunRealistic(ctx, "thread", "cpu") },
      { name: "cpu 5 ms: BullMQ sandboxed", run: (ctx) => bullRealistic(ctx, "sandboxed", "cpu") },
      { name: "cpu 5 ms: BullMQ in-process", run: (ctx) => bullRealistic(ctx, "inprocess", "cpu") },
    ],
  },
  { name: "limit", runs: [{ name: "raw JetStream", run: (ctx) => rawJetStream(ctx) }] },
  {
    name: "scale",
    runs: [
      { name: "Bosun 1 supervisor", run: (ctx) => bosunScaleOut(ctx, 1) },
      { name: "Bosun 2 supervisors", run: (ctx) => bosunScaleOut(ctx, 2) },
      { name: "Bosun cpu pool 1", run: (ctx) => bosunCpu(ctx, 1) },
      { name: "Bosun cpu pool 2", run: (ctx) => bosunCpu(ctx, 2) },
      { name: "Bosun cpu pool 4", run: (ctx) => bosunCpu(ctx, 4) },
    ],
  },
  { name: "growth", optIn: true, runs: [{ name: "Bosun records kept", run: (ctx) => bosunGrowth(ctx) }] },
  {
    name: "fairness",
    optIn: true,
    runs: [
      { name: "noop, one band, no tenant", run: (ctx) => bosunFairness(ctx, "one") },
      { name: "noop, 3 bands × 3 tenants", run: (ctx) => bosunFairness(ctx, "spread") },
      { name: "noop, 3 bands, no tenant", run: (ctx) => bosunFairness(ctx, "bands") },
      { name: "noop, one band, 3 tenants", run: (ctx) => bosunFairness(ctx, "tenants") },
      { name: "schedule every_ms 100, tick lateness", run: (ctx) => bosunTicks(ctx) },
    ],
  },
  {
    name: "compute",
    optIn: true,
    runs: [
      { name: "noop, supervisor path", run: (ctx) => bosunCompute(ctx, "supervisor") },
      { name: "noop, remote compute worker over HTTP", run: (ctx) => bosunCompute(ctx, "remote") },
    ],
  },
  {
    name: "intake",
    runs: [
      { name: "batch submit: Bosun NATS API", run: (ctx) => bosunBatch(ctx, "nats") },
      { name: "batch submit: Bosun HTTP", run: (ctx) => bosunBatch(ctx, "http") },
      { name: "batch submit: BullMQ addBulk, sandboxed", run: (ctx) => bullBatch(ctx, "sandboxed", BATCH_SIZE, BATCHES_IN_FLIGHT) },
      { name: "batch submit: BullMQ addBulk, in-process", run: (ctx) => bullBatch(ctx, "inprocess", BATCH_SIZE, BATCHES_IN_FLIGHT) },
      { name: "sustained submits", run: (ctx) => bosunSustained(ctx, "free") },
      { name: "sustained submits, max_pending", run: (ctx) => bosunSustained(ctx, "bounded") },
    ],
  },
  {
    name: "cluster",
    runs: [1, 2, 3].flatMap((n) => [
      { name: `Bosun ${n} supervisor(s), single server`, run: (ctx: Ctx) => bosunClusterScale(ctx, "single", n) },
      { name: `Bosun ${n} supervisor(s), 3-node cluster R3`, run: (ctx: Ctx) => bosunClusterScale(ctx, "cluster", n) },
    ]),
  },
];

function numberEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name} must be a positive number, not "${raw}"`);
  return value;
}

const say = (line: string) => process.stdout.write(`${line}\n`);
const rotate = <T>(items: T[], by: number): T[] => items.map((_, i) => items[(i + by) % items.length]!);
const short = (v: number) => (Math.abs(v) >= 100 ? Math.round(v).toLocaleString("en") : v.toFixed(2));

async function main(): Promise<number> {
  const scale = numberEnv("BENCH_SCALE", 1);
  const rounds = Math.round(numberEnv("BENCH_ROUNDS", 3));
  const only = process.env.BENCH_ONLY?.split(",").map((s) => s.trim()).filter(Boolean);
  const unknown = only?.filter((o) => !workloads.some((w) => w.name === o)) ?? [];
  if (unknown.length > 0) throw new Error(`BENCH_ONLY: unknown workload(s) ${unknown.join(", ")}; known: ${workloads.map((w) => w.name).join(", ")}`);
  const selected = workloads.filter((w) => (only ? only.includes(w.name) : !w.optIn));
  const runFilter = process.env.BENCH_RUNS?.split(",").map((s) => s.trim()).filter(Boolean);
  const counts: Counts = {
    throughput: Math.max(100, Math.round(20_000 * scale)),
    latency: Math.max(20, Math.round(2_000 * scale)),
    cpuJobs: Math.max(10, Math.round(500 * scale)),
    cpuMs: 20,
    sleepJobs: Math.max(100, Math.round(8_000 * scale)),
    sleepMs: 10,
    sleepPool: 16,
    cpuShortJobs: Math.max(20, Math.round(2_000 * scale)),
    cpuShortMs: 5,
    cpuShortPool: 2,
    inflight: 64,
    pool: 4,
    warmup: 256,
    latencyWarmup: 50,
    growthSizes: growthSizes(scale, numberEnv("BENCH_GROWTH_MAX", 1_000_000)),
    clusterJobs: Math.max(100, Math.round(5_000 * scale)),
    fairnessJobs: Math.max(100, Math.round(10_000 * scale)),
    scheduleTicks: Math.max(20, Math.round(200 * scale)),
    scheduleEveryMs: 100,
    sustainedMs: Math.max(2000, Math.round(10_000 * scale)),
  };
  const partial =
    scale !== 1 || rounds !== 3 || selected.length !== workloads.filter((w) => !w.optIn).length || runFilter !== undefined || process.env.BENCH_CLI !== undefined;

  const procs = new Procs();
  const loadAtStart = os.loadavg();
  let env: Environment | undefined;
  const startedAt = new Date();
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) process.exit(130);
    stopping = true;
    say(`\nbench: ${signal}: stopping every process it started`);
    void procs.stopAll().finally(() => {
      if (!process.env.BENCH_KEEP_TMP) procs.removeTmp();
      process.exit(130);
    });
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  say(`bench: scale ${scale}, ${rounds} round(s), workloads: ${selected.map((w) => w.name).join(", ")}`);
  if (loadAtStart[0]! > os.cpus().length * 0.75) say(`bench: WARNING: the machine is busy (load average ${loadAtStart[0]!.toFixed(1)} on ${os.cpus().length} cores); figures will not be trustworthy`);
  say(`bench: ${counts.throughput} jobs per throughput run, ${counts.latency} per latency run, ${counts.cpuJobs} cpu jobs; temp dir ${procs.tmp}`);

  const values = new Map<string, number[]>();
  const errors: string[] = [];
  const notes: string[] = [];
  const once: [string, string][] = [];
  let ctx: Ctx | undefined;
  try {
    const nats = await procs.startNats();
    const redisServer = await procs.startRedis();
    const gateway = await procs.startGateway(nats.url);
    env = describeEnvironment(procs.root, loadAtStart); // after the servers, which may have just been installed
    say(`bench: nats-server ${nats.url}, redis-server :${redisServer.port}, gateway :${gateway.port}`);
    ctx = {
      procs,
      natsUrl: nats.url,
      natsPids: [nats.proc.pid],
      redisPid: redisServer.proc.pid,
      nc: await connect({ servers: nats.url, name: "bosun-bench", noAsyncTraces: true }),
      gateway: gateway.proc,
      gatewayPort: gateway.port,
      http: new http.Agent({ keepAlive: true, maxSockets: counts.inflight }),
      redisPort: redisServer.port,
      redis: new Redis({ host: "127.0.0.1", port: redisServer.port, maxRetriesPerRequest: null }),
      counts,
      notes,
    };

    for (let round = 1; round <= rounds; round++) {
      for (const workload of selected) {
        for (const def of rotate(workload.runs, round - 1).filter((r) => !runFilter || runFilter.some((f) => r.name.includes(f)))) {
          if (stopping) return 130;
          const label = `round ${round}/${rounds} ${workload.name}: ${def.name}`;
          const t0 = Date.now();
          try {
            const figures = await def.run(ctx);
            for (const [key, value] of Object.entries(figures)) values.set(key, [...(values.get(key) ?? []), value]);
            const shown = Object.entries(figures)
              .filter(([k]) => !k.endsWith(".accept") && !k.endsWith(".mean") && !k.startsWith("us."))
              .map(([k, v]) => `${k}=${short(v)}`);
            const cpu = Object.entries(figures).filter(([k]) => k.startsWith("us."));
            if (cpu.length > 0) shown.push(`(CPU µs/job: ${cpu.map(([k, v]) => `${k.split(".").at(-1)} ${Math.round(v)}`).join(", ")})`);
            say(`${label} (${((Date.now() - t0) / 1000).toFixed(1)} s): ${shown.join("  ")}`);
          } catch (err) {
            const message = `${label}: ${(err as Error).stack ?? String(err)}`;
            errors.push(message);
            say(`FAILED ${message}`);
          }
        }
      }
    }
    for (const [label, proc] of [
      ["nats-server", nats.proc],
      ["redis-server", redisServer.proc],
      ["gateway", ctx.gateway],
    ] as const) {
      const mb = peakRssMb(proc.pid);
      if (mb !== undefined) once.push([`${label} peak RSS over the whole run`, `${mb.toFixed(1)} MiB`]);
    }
  } finally {
    ctx?.http.destroy();
    ctx?.redis.disconnect();
    await ctx?.nc.close().catch(() => undefined);
    await closeClusterTarget();
    await procs.stopAll();
    // Members of a killed group may take a moment to be gone.
    let left = procs.leftovers();
    for (let i = 0; i < 30 && left.length > 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
      left = procs.leftovers();
    }
    if (left.length > 0) say(`bench: WARNING: process groups ${left.join(", ")} still have live members`);
    else say("bench: every process it started has exited");
    if (process.env.BENCH_KEEP_TMP) say(`bench: kept ${procs.tmp}`);
    else procs.removeTmp();
  }

  if (!env) throw new Error("the servers did not start");
  // Written by hand from profiles, kept across runs.
  const analysisFile = path.join(procs.root, "bench", "ANALYSIS.md");
  const report = renderReport({
    analysis: existsSync(analysisFile) ? readFileSync(analysisFile, "utf8").trim() : undefined,
    counts,
    rounds,
    partial: partial ? { scale, rounds, only: selected.length !== workloads.length ? selected.map((w) => w.name) : undefined } : undefined,
    env,
    values,
    once,
    loadAtStart,
    loadAtEnd: os.loadavg(),
    errors,
    notes,
    startedAt,
    durationS: (Date.now() - startedAt.getTime()) / 1000,
  });
  const out = process.env.BENCH_OUT ?? path.join(procs.root, "bench", "RESULTS.md");
  writeFileSync(out, report);

  say("");
  say(partial ? "Summary (NOT A FULL RUN: see the banner in the report):" : "Summary:");
  for (const o of evaluate(values)) {
    const target = o.op === "info" ? "" : ` (aim ${o.op === ">=" ? "≥" : "≤"} ${o.unit ? `${o.target} ${o.unit}` : `${o.target}×`}) ${o.verdict}`;
    const spread = o.spread ? ` [${formatOutcome(o, o.spread[0])} – ${formatOutcome(o, o.spread[1])}]` : "";
    say(`  ${o.label}: ${formatOutcome(o, o.ratio)}${spread}${target}`);
  }
  say(`bench: wrote ${path.relative(process.cwd(), out) || out}${errors.length > 0 ? `; ${errors.length} run(s) failed` : ""}`);
  return errors.length > 0 ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
