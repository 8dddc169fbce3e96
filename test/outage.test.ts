/**
 * When nothing answers: no supervisor, a supervisor that never replies, and
 * nats-server itself gone. The gateway must answer 503 with Retry-After
 * within its request timeout, stay up, and recover when NATS is back.
 */
import t, { type Test } from "tap";
import { startGateway, startSupervisor } from "./helpers/bosun.js";
import { http, type ErrorReply, type HttpReply, type JobResult } from "./helpers/http.js";
import { connectClient } from "./helpers/nats-client.js";
import { NatsServer } from "./helpers/nats-server.js";
import { uniqueName, waitFor } from "./helpers/wait.js";

function assertUnavailable(t: Test, res: HttpReply, what: string): void {
  t.equal(res.status, 503, `${what}: 503`, { body: res.text });
  t.equal((res.body as ErrorReply)?.error?.code, "unavailable", `${what}: code unavailable`, { body: res.text });
  t.equal(typeof (res.body as ErrorReply)?.error?.message, "string", `${what}: has a message`);
  const retryAfter = res.headers.get("retry-after");
  t.ok(retryAfter !== null && /^\d+$/.test(retryAfter) && Number(retryAfter) > 0, `${what}: Retry-After is a positive number of seconds (${retryAfter})`);
}

/** Runs a request and measures how long it took. */
async function timed<T>(fn: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const started = Date.now();
  const value = await fn();
  return { value, ms: Date.now() - started };
}

t.test("no supervisor answering: 503 unavailable with Retry-After", async (t) => {
  const server = await NatsServer.start(t);
  const gateway = await startGateway(t, server.url, { args: ["--request-timeout-ms", "1000"] });
  const gw = gateway.baseUrl;

  assertUnavailable(t, await http(gw, "POST", "/api/jobs", { body: { type: "echo", queue: uniqueName() } }), "submit");
  assertUnavailable(t, await http(gw, "POST", "/api/jobs?wait_ms=500", { body: { type: "echo", queue: uniqueName() } }), "submit with wait_ms");
  assertUnavailable(t, await http(gw, "GET", "/api/jobs/some_job"), "status");
  assertUnavailable(t, await http(gw, "GET", "/api/jobs/some_job/result"), "result");

  // A responder that never answers: the gateway gives up at its request timeout.
  const nc = await connectClient(t, server.url);
  const silent = nc.subscribe("bosun.api.jobs.get", { callback: () => undefined });
  await nc.flush();
  const { value: res, ms } = await timed(() => http(gw, "GET", "/api/jobs/some_job"));
  assertUnavailable(t, res, "status while the only responder is silent");
  t.ok(ms >= 900 && ms < 1000 + 1500, `answered at the 1000 ms request timeout (${ms} ms)`);
  silent.unsubscribe();
});

t.test("nats-server killed: the gateway answers 503 within its timeout, stays up, and recovers after a restart", async (t) => {
  const requestTimeoutMs = 1500;
  const margin = 1500;
  const queue = uniqueName();
  const server = await NatsServer.start(t);
  await startSupervisor(t, server.url, { queues: [queue], args: ["--min", "1", "--max", "1"] });
  const gateway = await startGateway(t, server.url, { args: ["--request-timeout-ms", String(requestTimeoutMs)] });
  const gw = gateway.baseUrl;

  const before = await http<JobResult>(gw, "POST", "/api/jobs?wait_ms=10000", { body: { type: "echo", queue, payload: { before: "crash" } } });
  t.equal(before.status, 200, "a job runs before the crash", { body: before.text });
  t.equal((await http(gw, "GET", "/readyz")).status, 200, "ready while NATS is up");

  await server.kill();
  t.notOk(server.running, "nats-server is gone");
  await gateway.proc.waitForLog((l) => l.json?.msg === "NATS disconnected; answering 503 until it is back", 10_000, "the disconnect logged");

  const calls: [string, () => Promise<HttpReply>][] = [
    ["submit", () => http(gw, "POST", "/api/jobs", { body: { type: "echo", queue, payload: {} } })],
    ["submit with wait_ms", () => http(gw, "POST", "/api/jobs?wait_ms=200", { body: { type: "echo", queue, payload: {} } })],
    ["status", () => http(gw, "GET", `/api/jobs/${before.body.job_id}`)],
    ["result", () => http(gw, "GET", `/api/jobs/${before.body.job_id}/result`)],
  ];
  for (const [what, call] of calls) {
    const { value, ms } = await timed(call);
    assertUnavailable(t, value, `${what} while NATS is down`);
    t.ok(ms < 1000, `${what}: answered at once (${ms} ms), not after the ${requestTimeoutMs} ms timeout`);
  }
  const readyz = await timed(() => http(gw, "GET", "/readyz"));
  t.equal(readyz.value.status, 503, "not ready while NATS is down");
  t.ok(readyz.ms < requestTimeoutMs + margin, `readyz answered in ${readyz.ms} ms`);

  t.ok(gateway.proc.running, "the gateway process is still running");
  const health = await http<{ status: string }>(gw, "GET", "/healthz");
  t.equal(health.status, 200, "and still answers /healthz");

  await server.restart();
  const after = await waitFor(
    async () => {
      const res = await http<JobResult>(gw, "POST", "/api/jobs?wait_ms=3000", { body: { type: "echo", queue, payload: { after: "restart" } } });
      return res.status === 200 ? res : undefined;
    },
    { timeoutMs: 30_000, intervalMs: 250, what: "jobs to run again after the restart" },
  );
  t.same(after.body.result, { after: "restart" }, "jobs run again once NATS is back");
  t.ok(gateway.proc.logs.some((l) => l.msg === "NATS reconnected"), "the reconnect is logged");
  const kept = await http<JobResult>(gw, "GET", `/api/jobs/${before.body.job_id}/result`);
  t.equal(kept.status, 200, "the result from before the crash survived it (file storage)");
  t.same(kept.body.result, { before: "crash" });
  t.equal((await http(gw, "GET", "/readyz")).status, 200, "ready again");
});

t.test("a gateway started while NATS is down listens at once, answers /healthz, 503 with Retry-After until NATS is up, then serves", async (t) => {
  const server = await NatsServer.start(t);
  await server.stop();
  const started = Date.now();
  const gateway = await startGateway(t, server.url, { natsDown: true });
  const gw = gateway.baseUrl;
  t.ok(Date.now() - started < 15_000, `it listens without NATS (${Date.now() - started} ms)`);
  t.equal((await http<{ status: string }>(gw, "GET", "/healthz")).status, 200, "/healthz answers 200");
  const queue = uniqueName();
  for (const [what, call] of [
    ["submit", () => http(gw, "POST", "/api/jobs", { body: { type: "echo", queue } })],
    ["status", () => http(gw, "GET", "/api/jobs/some_job")],
    ["workers", () => http(gw, "GET", "/api/platform/workers")],
    ["readyz", () => http(gw, "GET", "/readyz")],
  ] as const) {
    const { value, ms } = await timed(call);
    assertUnavailable(t, value, `${what} before NATS is up`);
    t.ok(ms < 1000, `${what}: answered at once (${ms} ms)`);
    t.match((value.body as ErrorReply).error.message, /NATS/, `${what}: the message says NATS is the problem`);
  }
  await gateway.proc.waitForLog((l) => l.json?.msg === "NATS is not reachable yet; answering 503 until it is", 10_000, "the gateway saying NATS is not reachable");

  await server.restart();
  await startSupervisor(t, server.url, { queues: [queue], args: ["--min", "1", "--max", "1"] });
  await gateway.proc.waitForLog((l) => l.json?.msg === "NATS connected", 15_000, "the gateway connecting");
  await waitFor(async () => (await http(gw, "GET", "/readyz")).status === 200, { timeoutMs: 15_000, what: "/readyz to answer 200" });
  const job = await http<JobResult>(gw, "POST", "/api/jobs?wait_ms=10000", { body: { type: "echo", queue, payload: { late: "nats" } } });
  t.equal(job.status, 200, "then jobs run", { body: job.text });
  t.same(job.body.result, { late: "nats" });
});
