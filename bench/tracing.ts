/**
 * The cost of tracing on noop throughput (issue 16): the same workload on
 * the same nats-server, alternating per round between
 *   baseline  this working tree's sources with src/platform/tracing.ts
 *             replaced by bench/tracing-absent.ts: no traceparent made, read or passed on,
 *   off       this build, no OpenTelemetry SDK (the API's no-op spans; the traceparent still travels),
 *   sdk       this build with a no-op SDK in every process (spans recorded, exported nowhere),
 *   sdk+als   the same plus the SDK's AsyncLocalStorage context manager (as NodeSDK registers it).
 * Each run: a fresh supervisor (pool 4) and gateway, a warm-up, then N noop
 * jobs with 64 submits outstanding, each submit waiting for its result
 * (wait_ms), over NATS and over HTTP; CPU per job in all and by process
 * (nats-server/supervisor/gateway in the round lines). Run under the heavy lock:
 *   flock /tmp/bosun-heavy.lock npm run bench:tracing
 * BENCH_TRACING_MODES=off,sdk runs only those (ratios are ÷ the first);
 * BENCH_CPU_PROF=dir profiles every process into dir/<mode>.
 */
import { execFileSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import http from "node:http";
import path from "node:path";
import { connect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstreamManager } from "@nats-io/jetstream";
import { api, streams } from "../src/contract/index.js";
import { freePort, profiling, Procs, waitUntil, type Proc } from "./procs.js";
import { CpuSampler, waitIdle } from "./proc-stats.js";
import { median, nowMs, pump } from "./stats.js";

const JOBS = Math.round(Number(process.env.BENCH_TRACING_JOBS ?? 6000));
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const INFLIGHT = 64;
const WAIT_MS = 30_000;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

const MODES = ["baseline", "off", "sdk", "sdk+als"] as const;
type Mode = (typeof MODES)[number];
type Via = "nats" | "http";

const procs = new Procs();

/** The baseline's dist/: these sources without tracing, built into a folder beside this build (node_modules shared). */
function buildBaseline(): string {
  const dir = path.join(procs.tmp, "baseline");
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  for (const entry of ["src", "package.json", "tsconfig.json", "tsconfig.build.json"]) cpSync(path.join(procs.root, entry), path.join(dir, entry), { recursive: true });
  const absent = readFileSync(path.join(procs.root, "bench", "tracing-absent.ts"), "utf8").replaceAll("../src/platform/", "./");
  writeFileSync(path.join(dir, "src", "platform", "tracing.ts"), absent);
  symlinkSync(path.join(procs.root, "node_modules"), path.join(dir, "node_modules"));
  execFileSync(path.join(procs.root, "node_modules", ".bin", "tsc"), ["-p", "tsconfig.build.json"], { cwd: dir, stdio: "inherit" });
  return path.join(dir, "dist", "cli", "main.js");
}

function start(mode: Mode, cli: string, natsUrl: string, queue: string, gatewayPort: number): Proc[] {
  const node = [...profiling(mode), ...(mode.startsWith("sdk") ? ["--import", path.join(procs.root, "bench", "tracing-noop-sdk.mjs")] : [])];
  const env = { NATS_URL: natsUrl, BOSUN_LOG_LEVEL: "warn", BENCH_TRACING_ALS: mode === "sdk+als" ? "1" : "0" };
  return [
    procs.spawn(`supervisor-${mode}`, process.execPath, [...node, cli, "supervisor", "--queues", queue, "--min", "4", "--max", "4"], { env }),
    procs.spawn(`gateway-${mode}`, process.execPath, [...node, cli, "gateway", "--host", "127.0.0.1", "--port", String(gatewayPort)], { env }),
  ];
}

async function submitNats(nc: NatsConnection, queue: string): Promise<void> {
  const msg = await nc.request(api.jobsSubmit, encoder.encode(JSON.stringify({ type: "noop", queue, wait_ms: WAIT_MS })), { timeout: WAIT_MS + 5000 });
  const reply = JSON.parse(decoder.decode(msg.data)) as { state?: string };
  if (reply.state !== "succeeded") throw new Error(`submit over NATS: ${decoder.decode(msg.data).slice(0, 300)}`);
}

const agent = new http.Agent({ keepAlive: true, maxSockets: INFLIGHT });
function submitHttp(port: number, queue: string): Promise<void> {
  const body = JSON.stringify({ type: "noop", queue });
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: "127.0.0.1", port, path: `/api/jobs?wait_ms=${WAIT_MS}`, method: "POST", agent, headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) } },
      (res) => {
        let text = "";
        res.setEncoding("utf8").on("data", (c: string) => (text += c));
        res.on("end", () => (res.statusCode === 200 ? resolve() : reject(new Error(`POST /api/jobs: ${res.statusCode} ${text.slice(0, 300)}`))));
      },
    );
    req.once("error", reject);
    req.end(body);
  });
}

const PARTS = ["nats-server", "supervisor", "gateway"] as const;

/**
 * One timed batch: jobs/s, and CPU µs per job of every process that served
 * it, in all and by part (the supervisor with its execution processes):
 * where tracing's cost goes.
 */
interface Figure {
  rate: number;
  cpuUs: number;
  partsUs: Record<(typeof PARTS)[number], number>;
}

async function run(mode: Mode, cli: string, nats: { url: string; proc: Proc }, nc: NatsConnection, round: number): Promise<Record<Via, Figure>> {
  const queue = `trace_${mode.replace("+", "_")}_${round}`;
  const port = await freePort();
  const started = start(mode, cli, nats.url, queue, port);
  try {
    await waitUntil(`${mode} gateway and supervisor`, async () => {
      try {
        await submitHttp(port, queue);
        return true;
      } catch {
        return false;
      }
    }, 30_000);
    await pump(500, INFLIGHT, () => submitNats(nc, queue));
    const figures = {} as Record<Via, Figure>;
    for (const via of ["nats", "http"] as const) {
      const [supervisor, gateway] = started as [Proc, Proc];
      const samplers = [nats.proc, supervisor, gateway].map((p) => new CpuSampler(() => [p.pid]));
      const t0 = nowMs();
      await pump(JOBS, INFLIGHT, () => (via === "nats" ? submitNats(nc, queue) : submitHttp(port, queue)));
      const rate = JOBS / ((nowMs() - t0) / 1000);
      const partsUs = Object.fromEntries(PARTS.map((part, i) => [part, (samplers[i]!.stop() * 1000) / JOBS])) as Figure["partsUs"];
      figures[via] = { rate, cpuUs: Object.values(partsUs).reduce((a, b) => a + b, 0), partsUs };
    }
    return figures;
  } finally {
    for (const p of started) await procs.stop(p, 5000);
    const jsm = await jetstreamManager(nc);
    for (const s of [streams.jobs, streams.results]) await jsm.streams.purge(s).catch(() => undefined);
    if (!(await waitIdle(nats.proc.pid))) console.log(`  (nats-server still busy 10 s after the ${mode} run)`);
  }
}

async function main(): Promise<void> {
  const asked = (process.env.BENCH_TRACING_MODES ?? MODES.join(",")).split(",");
  const modes = asked.filter((m): m is Mode => (MODES as readonly string[]).includes(m));
  if (modes.length !== asked.length) throw new Error(`BENCH_TRACING_MODES: ${asked.join(",")} (each one of ${MODES.join(", ")})`);
  const baselineCli = modes.includes("baseline") ? buildBaseline() : "";
  const cli = procs.cli;
  if (!existsSync(cli)) throw new Error("build first: npm run build");
  const nats = await procs.startNats();
  const nc = await connect({ servers: nats.url, noAsyncTraces: true });
  const results = Object.fromEntries(modes.map((m) => [m, { nats: [], http: [] }])) as unknown as Record<Mode, Record<Via, Figure[]>>;
  try {
    for (let round = 0; round < ROUNDS; round++) {
      // Rotate the order each round, so no mode always runs on a warmer (or busier) machine.
      for (const mode of [...modes.slice(round % modes.length), ...modes.slice(0, round % modes.length)]) {
        const f = await run(mode, mode === "baseline" ? baselineCli : cli, nats, nc, round);
        results[mode].nats.push(f.nats);
        results[mode].http.push(f.http);
        const shown = (v: Figure) => `${v.rate.toFixed(0)} jobs/s ${v.cpuUs.toFixed(0)} µs CPU/job (${PARTS.map((p) => v.partsUs[p].toFixed(0)).join("/")})`;
        console.log(`round ${round + 1} ${mode.padEnd(8)} nats ${shown(f.nats)}  http ${shown(f.http)}`);
      }
    }
  } finally {
    await nc.close();
    await procs.stopAll();
    procs.removeTmp();
  }
  // Against the first mode run, each mode's figures and per-round ratios (same round, same machine state).
  const reference = modes[0]!;
  console.log(`\nnoop, ${JOBS} jobs per run, ${INFLIGHT} submits with wait_ms outstanding, ${ROUNDS} rounds; median (ratio ÷ ${reference}: median, min–max of the rounds):`);
  for (const via of ["nats", "http"] as const) {
    const measures: [string, (f: Figure) => number][] = [
      ["jobs/s", (f) => f.rate],
      ["CPU µs/job", (f) => f.cpuUs],
      ...PARTS.map((part): [string, (f: Figure) => number] => [`  ${part}`, (f) => f.partsUs[part]]),
    ];
    for (const [what, of] of measures) {
      const line = modes.map((m) => {
        // Over NATS the gateway idles: its CPU (counted in clock ticks) reads 0 in some rounds, which give no ratio.
        const ratios = results[m][via].map((f, i) => of(f) / of(results[reference][via][i]!)).filter(Number.isFinite);
        const spread = ratios.length ? `${median(ratios).toFixed(3)}×, ${Math.min(...ratios).toFixed(3)}–${Math.max(...ratios).toFixed(3)}` : "no ratio";
        return `${m} ${median(results[m][via].map(of)).toFixed(0)} (${spread})`;
      });
      console.log(`  ${via.padEnd(4)} ${what.padEnd(13)}  ${line.join("  ")}`);
    }
  }
}

await main();
