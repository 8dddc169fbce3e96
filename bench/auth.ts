/**
 * What auth costs (issue 11): noop throughput and sequential submit ->
 * result latency, over the NATS API and over HTTP, with auth off and on
 * (a tenant key, so every request is a key lookup, a constant-time hash
 * compare and the tenant scoping), alternating the two modes each round.
 *
 *   npm run build && tsc -p bench/tsconfig.json && flock /tmp/bosun-heavy.lock node dist/bench/bench/auth.js
 *   BENCH_AUTH_JOBS (5000), BENCH_AUTH_LATENCY_JOBS (1000), BENCH_ROUNDS (3)
 */
import http from "node:http";
import { connect } from "@nats-io/transport-node";
import { headers as natsHeaders, type NatsConnection } from "@nats-io/nats-core";
import { api, RESULTS_WILDCARD, SERVICE_NAME } from "../src/contract/index.js";
import { Procs, waitUntil, type Proc } from "./procs.js";
import { median, nowMs, pump, summarizeLatencies } from "./stats.js";

const JOBS = Number(process.env.BENCH_AUTH_JOBS ?? 5000);
const LATENCY_JOBS = Number(process.env.BENCH_AUTH_LATENCY_JOBS ?? 1000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const INFLIGHT = 64;
const ADMIN_KEY = "bench-admin-key-0123456789abcdef0123";
const encoder = new TextEncoder();
const decoder = new TextDecoder();
type Mode = "off" | "on";
type Via = "nats" | "http";

const procs = new Procs();
const agent = new http.Agent({ keepAlive: true, maxSockets: INFLIGHT });

function post(port: number, path: string, body: object, key: string | undefined): Promise<{ status: number; body: { job_id: string; key?: string; key_id?: string } }> {
  const data = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: "127.0.0.1",
        port,
        path,
        method: "POST",
        agent,
        headers: { "content-type": "application/json", "content-length": Buffer.byteLength(data), ...(key && { authorization: `Bearer ${key}` }) },
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8").on("data", (c: string) => (text += c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
      },
    );
    req.once("error", reject);
    req.end(data);
  });
}

async function submitNats(nc: NatsConnection, body: object, key: string | undefined): Promise<string> {
  const h = natsHeaders();
  if (key) h.set("Authorization", `Bearer ${key}`);
  const msg = await nc.request(api.jobsSubmit, encoder.encode(JSON.stringify(body)), { timeout: 30_000, headers: h });
  if (msg.headers?.get("Nats-Service-Error-Code")) throw new Error(`submit refused: ${decoder.decode(msg.data)}`);
  return (JSON.parse(decoder.decode(msg.data)) as { job_id: string }).job_id;
}

async function main(): Promise<void> {
  const nats = await procs.startNats();
  const nc = await connect({ servers: nats.url, noAsyncTraces: true });
  const gateway = await procs.startGateway(nats.url);
  const results: Record<string, number[]> = {};
  const record = (name: string, value: number) => (results[name] ??= []).push(value);

  for (let round = 0; round < ROUNDS; round++) {
    for (const mode of (round % 2 === 0 ? ["off", "on"] : ["on", "off"]) as Mode[]) {
      const queue = `auth_${mode}_${round}`;
      const sup: Proc = procs.spawn(`supervisor-${queue}`, process.execPath, [procs.cli, "supervisor", "--worker-id", queue, "--queues", queue, "--min", "4", "--max", "4"], {
        env: { NATS_URL: nats.url, BOSUN_LOG_LEVEL: "warn", ...(mode === "on" && { BOSUN_ADMIN_KEY: ADMIN_KEY }) },
      });
      await waitUntil(`supervisor ${queue}`, async () => {
        const replies = await nc.requestMany(`$SRV.PING.${SERVICE_NAME}`, undefined, { strategy: "timer", maxWait: 300 });
        for await (const m of replies) if (decoder.decode(m.data).includes(queue)) return true;
        return false;
      }, 30_000);
      let key: string | undefined;
      if (mode === "on") key = (await post(gateway.port, "/api/admin/keys", { tenant: "bench" }, ADMIN_KEY)).body.key;
      const submit = (via: Via, body: object) => (via === "nats" ? submitNats(nc, body, key) : post(gateway.port, "/api/jobs", body, key).then((r) => r.body.job_id));
      for (const via of ["nats", "http"] as Via[]) {
        // Throughput: submit JOBS noop jobs with INFLIGHT outstanding, until every result is in.
        let finished = 0;
        let done: () => void = () => undefined;
        const all = new Promise<void>((r) => (done = r));
        const sub = nc.subscribe(RESULTS_WILDCARD, {
          callback: () => {
            if (++finished >= JOBS) done();
          },
        });
        await nc.flush();
        await pump(200, INFLIGHT, async () => void (await submit(via, { type: "noop", queue })));
        finished -= 200;
        const t0 = nowMs();
        await pump(JOBS, INFLIGHT, async () => void (await submit(via, { type: "noop", queue })));
        await all;
        record(`${via} throughput auth ${mode} (jobs/s)`, JOBS / ((nowMs() - t0) / 1000));
        sub.unsubscribe();
        // Latency: sequential submit -> result with wait_ms.
        const samples: number[] = [];
        for (let i = 0; i < LATENCY_JOBS; i++) {
          const s = nowMs();
          if (via === "nats") await submitNats(nc, { type: "noop", queue, wait_ms: 10_000 }, key);
          else await post(gateway.port, "/api/jobs?wait_ms=10000", { type: "noop", queue }, key);
          samples.push(nowMs() - s);
        }
        const lat = summarizeLatencies(samples);
        record(`${via} latency auth ${mode} p50 (ms)`, lat.p50);
        record(`${via} latency auth ${mode} p99 (ms)`, lat.p99);
      }
      await procs.stop(sup);
      process.stdout.write(`bench auth: round ${round + 1} auth ${mode} done\n`);
    }
  }
  await nc.close();
  process.stdout.write("\n| figure | median | runs |\n| --- | --- | --- |\n");
  for (const [name, values] of Object.entries(results).sort()) {
    process.stdout.write(`| ${name} | ${median(values).toFixed(name.includes("ms") ? 2 : 0)} | ${values.map((v) => v.toFixed(name.includes("ms") ? 2 : 0)).join(", ")} |\n`);
  }
  for (const via of ["nats", "http"]) {
    const ratio = (what: string) => median(results[`${via} ${what.replace("MODE", "on")}`]!) / median(results[`${via} ${what.replace("MODE", "off")}`]!);
    process.stdout.write(
      `${via}: throughput on/off ${ratio("throughput auth MODE (jobs/s)").toFixed(3)}, p50 on/off ${ratio("latency auth MODE p50 (ms)").toFixed(3)}, p99 on/off ${ratio("latency auth MODE p99 (ms)").toFixed(3)}\n`,
    );
  }
}

main()
  .catch((err: unknown) => {
    process.stderr.write(`bench auth failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
  })
  .finally(async () => {
    agent.destroy();
    await procs.stopAll();
  });
