/**
 * Seeded fuzzing of every way into Bosun: HTTP requests over every route of
 * the operations table (and some no client library would send), NATS
 * requests to every API and control subject, junk published into every
 * subject Bosun reads, and `bosun` command lines. Asserts: no 5xx but 503s,
 * every error in the contract's shape, no hang, every CLI failure one line
 * and a documented exit code, the same processes at the end, no error
 * boundary or unhandled rejection ever hit, and a normal job still runs.
 *
 * FUZZ_SEED repeats a run; FUZZ_HTTP, FUZZ_NATS, FUZZ_JUNK and FUZZ_CLI set
 * the counts (`npm run fuzz` runs 10,000 of the first three).
 */
import t from "tap";
import { headers as natsHeaders, type MsgHdrs } from "@nats-io/nats-core";
import { jetstreamManager } from "@nats-io/jetstream";
import { runCli, startGateway, startSupervisor } from "./helpers/bosun.js";
import { http, type JobResult } from "./helpers/http.js";
import { cliCases, httpCases, junkCases, natsCases, type HttpCase } from "./helpers/fuzz.js";
import { contractError, heartbeatSubject } from "./helpers/hostile.js";
import { connectClient } from "./helpers/nats-client.js";
import { NatsServer } from "./helpers/nats-server.js";
import { rawHttp } from "./helpers/raw-http.js";
import { uniqueName } from "./helpers/wait.js";

const seed = Number(process.env.FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
const counts = {
  http: Number(process.env.FUZZ_HTTP ?? 2000),
  nats: Number(process.env.FUZZ_NATS ?? 1000),
  junk: Number(process.env.FUZZ_JUNK ?? 600),
  // Each is a node process start: a few dozen cover the commands.
  cli: Number(process.env.FUZZ_CLI ?? 24),
};
t.comment(`fuzz seed ${seed} (repeat with FUZZ_SEED=${seed}); ${counts.http} HTTP, ${counts.nats} NATS, ${counts.junk} junk, ${counts.cli} CLI`);
/** No request may take longer: the gateway's NATS timeout (5 s) plus the largest wait_ms generated (3 s), with room. */
const DEADLINE_MS = 15_000;
const CONCURRENCY = 8;

const server = await NatsServer.start(t);
const nc = await connectClient(t, server.url);
const queue = uniqueName("fq");
const workerId = uniqueName("fw");
// One queue: a supervisor of several shares its pull credits out in turns, and an idle
// queue's share waits out its pull expiry, so a burst of junk jobs would drain at a few
// per second and say nothing about the input boundary.
const supervisor = await startSupervisor(t, server.url, { queues: [queue], workerId, args: ["--min", "1", "--max", "3", "--heartbeat-ms", "1000"] });
const gateway = await startGateway(t, server.url, { env: { BOSUN_HTTP_REQUEST_TIMEOUT_MS: "5000" } });
const gw = gateway.baseUrl;
const pids = { nats: server.process!.pid, supervisor: supervisor.pid, gateway: gateway.proc.pid };

/** Runs `work` over `items`, CONCURRENCY at a time. */
async function pool<T>(items: T[], work: (item: T, i: number) => Promise<void>, concurrency = CONCURRENCY): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < items.length) {
        const i = next++;
        await work(items[i]!, i);
      }
    }),
  );
}

interface Failure {
  what: string;
  case: unknown;
}

function summarize(statuses: Map<string, number>): string {
  return [...statuses.entries()]
    .sort()
    .map(([k, v]) => `${k}:${v}`)
    .join(" ");
}

t.test("HTTP requests over every route", async (t) => {
  const cases = httpCases(seed, counts.http, queue, workerId);
  const failures: Failure[] = [];
  const statuses = new Map<string, number>();
  let slowest = 0;
  await pool(cases, async (c) => {
    const started = Date.now();
    let status: number;
    let body: string;
    try {
      ({ status, body } = c.raw ? await viaSocket(c) : await viaFetch(c));
    } catch (err) {
      // fetch() refuses some requests before sending (it validates header values): nothing reached Bosun.
      if (err instanceof TypeError && !/fetch failed/.test(err.message)) return;
      failures.push({ what: `no answer: ${(err as Error).message}`, case: c });
      return;
    }
    slowest = Math.max(slowest, Date.now() - started);
    statuses.set(String(status), (statuses.get(String(status)) ?? 0) + 1);
    if (status >= 500 && status !== 503) failures.push({ what: `status ${status}: ${body.slice(0, 200)}`, case: c });
    if (status >= 400 && c.method !== "HEAD" && !contractError(body)) failures.push({ what: `error body not in the contract's shape (${status}): ${body.slice(0, 200)}`, case: c });
  });
  t.comment(`statuses ${summarize(statuses)}; slowest ${slowest} ms`);
  t.same(failures.slice(0, 10), [], `no 5xx but 503, every error in the contract's shape, every request answered (${failures.length} failures)`);
});

async function viaFetch(c: HttpCase): Promise<{ status: number; body: string }> {
  const res = await fetch(`${gw}${c.path}`, { method: c.method, headers: c.headers, body: c.body, signal: AbortSignal.timeout(DEADLINE_MS) });
  if ((res.headers.get("content-type") ?? "").startsWith("text/event-stream")) {
    // An open event stream is the right answer; its head is all that is checked.
    await res.body?.cancel();
    return { status: res.status, body: "" };
  }
  return { status: res.status, body: await res.text() };
}

async function viaSocket(c: HttpCase): Promise<{ status: number; body: string }> {
  const r = await rawHttp(gateway.port, c.raw!, { timeoutMs: DEADLINE_MS });
  if (!r.finished) throw new Error(`no complete response within ${DEADLINE_MS} ms`);
  return r;
}

t.test("NATS requests to every API and control subject", async (t) => {
  const cases = natsCases(seed, counts.nats, queue, workerId);
  const failures: Failure[] = [];
  const codes = new Map<string, number>();
  await pool(cases, async (c) => {
    let reply;
    try {
      reply = await nc.request(c.subject, c.data, { timeout: DEADLINE_MS, headers: toHeaders(c.headers) });
    } catch (err) {
      failures.push({ what: `no reply: ${(err as Error).message}`, case: { ...c, data: new TextDecoder().decode(c.data).slice(0, 200) } });
      return;
    }
    const code = reply.headers?.get("Nats-Service-Error-Code") || "ok";
    codes.set(code, (codes.get(code) ?? 0) + 1);
    const text = new TextDecoder().decode(reply.data);
    if (code === "ok") {
      try {
        JSON.parse(text);
      } catch {
        failures.push({ what: `a success reply that is not JSON: ${text.slice(0, 100)}`, case: c.subject });
      }
      return;
    }
    if (Number(code) >= 500 && code !== "503") failures.push({ what: `error ${code}: ${text.slice(0, 200)}`, case: c.subject });
    if (!contractError(text)) failures.push({ what: `error body not in the contract's shape: ${text.slice(0, 200)}`, case: c.subject });
    if (!reply.headers?.get("Nats-Service-Error")) failures.push({ what: "an error reply without Nats-Service-Error", case: c.subject });
  });
  t.comment(`replies ${summarize(codes)}`);
  t.same(failures.slice(0, 10), [], `every request answered, no 5xx but 503, errors in the contract's shape (${failures.length} failures)`);
});

t.test("bosun command lines", async (t) => {
  const cases = cliCases(seed, counts.cli, queue);
  const failures: Failure[] = [];
  const exits = new Map<string, number>();
  await pool(
    cases,
    async (argv) => {
      const r = await runCli(argv, { env: { NATS_URL: server.url }, timeoutMs: DEADLINE_MS });
      const exit = r.signal ? `signal ${r.signal}` : String(r.code);
      exits.set(exit, (exits.get(exit) ?? 0) + 1);
      if (r.signal || ![0, 1, 2, 3].includes(r.code ?? -1)) failures.push({ what: `ended with ${exit}: ${r.stderr.slice(0, 200)}`, case: argv });
      else if (/^\s+at /m.test(r.stderr)) failures.push({ what: `a stack trace: ${r.stderr.slice(0, 300)}`, case: argv });
      else if (r.code !== 0 && r.stderr.trim().split("\n").length !== 1) failures.push({ what: `not one line: ${r.stderr.slice(0, 300)}`, case: argv });
    },
    4,
  );
  t.comment(`exit codes ${summarize(exits)}`);
  t.same(failures.slice(0, 10), [], `every command ended with a documented exit code, a failure as one line, no stack (${failures.length} failures)`);
});

t.test("junk published into every subject Bosun reads", async (t) => {
  const jsm = await jetstreamManager(nc);
  const stored = await jsm.direct.getMessage("BOSUN_HEARTBEATS", { last_by_subj: heartbeatSubject(workerId) });
  const heartbeat = JSON.parse(new TextDecoder().decode(stored!.data)) as Record<string, unknown>;
  const cases = junkCases(seed, counts.junk, queue, heartbeat);
  for (const [i, c] of cases.entries()) {
    nc.publish(c.subject, c.data, { headers: toHeaders(c.headers) });
    if (i % 100 === 99) await nc.flush();
  }
  await nc.flush();
  // Let every reader take its share (job messages are pulled, run or dropped).
  await new Promise((resolve) => setTimeout(resolve, 2000));
  t.pass(`${cases.length} junk messages published`);
});

t.test("afterwards: same processes, no error boundary hit, and a normal job succeeds", async (t) => {
  t.equal(server.process?.pid, pids.nats, "same nats-server");
  t.ok(server.running, "nats-server running");
  t.equal(supervisor.pid, pids.supervisor, "same supervisor");
  t.ok(supervisor.proc.running, "supervisor running");
  t.equal(gateway.proc.pid, pids.gateway, "same gateway");
  t.ok(gateway.proc.running, "gateway running");
  // Reset anything the fuzz set that a normal job would trip over.
  await http(gw, "PATCH", "/api/admin/ops", { body: { submissions_paused: false, queues: { [queue]: { submissions_paused: false } } } });
  const ready = await http(gw, "GET", "/readyz");
  t.equal(ready.status, 200, "/readyz 200", { body: ready.text });
  const res = await http<JobResult>(gw, "POST", "/api/jobs?wait_ms=15000", { body: { type: "echo", queue, payload: { after: "fuzz" } }, timeoutMs: 20_000 });
  t.equal(res.status, 200, "a normal job succeeds", { body: res.text.slice(0, 300), queues: (await http(gw, "GET", "/api/platform/queue")).text });
  t.same(res.body.result, { after: "fuzz" });
  const logs = [...supervisor.proc.logs, ...gateway.proc.logs];
  const boundaries = logs.filter((l) => typeof l.in === "string" || l.msg === "unhandled rejection" || l.msg === "request failed");
  t.same(
    boundaries.slice(0, 5).map((l) => ({ msg: l.msg, in: l.in, err: (l.err as { message?: string } | undefined)?.message })),
    [],
    `no error boundary, unhandled rejection or internal error was hit (${boundaries.length})`,
  );
  const byMessage = new Map<string, number>();
  for (const l of supervisor.proc.logs) byMessage.set(String(l.msg), (byMessage.get(String(l.msg)) ?? 0) + 1);
  t.comment(`supervisor log lines: ${summarize(byMessage)}`);
});

function toHeaders(h: Record<string, string>): MsgHdrs | undefined {
  const entries = Object.entries(h);
  if (entries.length === 0) return undefined;
  const headers = natsHeaders();
  for (const [k, v] of entries) headers.set(k, v);
  return headers;
}
