/**
 * The job path end to end against a real nats-server: HTTP and NATS
 * submits, results, status, the NATS service discovery subjects, a burst of
 * concurrent jobs, and the contract's error statuses and codes.
 */
import t, { type Test } from "tap";
import { startGateway, startSupervisor, type BosunGateway } from "./helpers/bosun.js";
import { http, type ErrorReply, type JobResult, type JobStatus, type SubmitReply } from "./helpers/http.js";
import { connectClient, requestJson } from "./helpers/nats-client.js";
import { NatsServer } from "./helpers/nats-server.js";
import { uniqueName, waitFor } from "./helpers/wait.js";
import { UNCOALESCED_WARNING } from "../src/platform/nats.js";

const server = await NatsServer.start(t);
const nc = await connectClient(t, server.url);
const gateway: BosunGateway = await startGateway(t, server.url, { args: ["--request-timeout-ms", "5000"] });
const gw = gateway.baseUrl;

/** Polls GET /api/jobs/{id}/result until 200. */
async function httpResult(jobId: string, timeoutMs = 15_000): Promise<JobResult> {
  return waitFor(
    async () => {
      const res = await http<JobResult>(gw, "GET", `/api/jobs/${jobId}/result`);
      if (res.status === 409) return undefined;
      if (res.status !== 200) throw new Error(`GET result: ${res.status} ${res.text}`);
      return res.body;
    },
    { timeoutMs, intervalMs: 30, what: `result of ${jobId}` },
  );
}

/** Asserts a contract error reply: status, code, and the {"error": {code, message}} shape. */
function assertError(tt: Test, res: { status: number; body: unknown; text: string }, status: number, code: string, what: string): void {
  tt.equal(res.status, status, `${what}: status ${status}`, { body: res.text });
  const body = res.body as ErrorReply;
  tt.equal(typeof body, "object", `${what}: JSON body`);
  tt.equal(body?.error?.code, code, `${what}: code ${code}`, { body: res.text });
  tt.equal(typeof body?.error?.message, "string", `${what}: has a message`);
  tt.ok((body?.error?.message ?? "").length > 0, `${what}: message not empty`);
  tt.notMatch(res.text, /\n\s+at /, `${what}: no stack trace`);
}

t.test("HTTP: submit, then result and status; ?wait_ms answers with the result", async (t) => {
  const queue = uniqueName();
  await startSupervisor(t, server.url, { queues: [queue], args: ["--min", "1", "--max", "2"] });

  const payload = { hello: "world", n: 42, nested: { list: [1, 2, 3] } };
  const submitted = await http<SubmitReply>(gw, "POST", "/api/jobs", { body: { type: "echo", payload, queue } });
  t.equal(submitted.status, 202, "submit answers 202", { body: submitted.text });
  t.type(submitted.body.job_id, "string");
  t.equal(submitted.body.state, "queued");

  const result = await httpResult(submitted.body.job_id);
  t.match(result, { job_id: submitted.body.job_id, state: "succeeded", error: null, attempts: 1 });
  t.same(result.result, payload, "the echo result is the payload");
  t.type(result.duration_ms, "number");

  const status = await http<JobStatus>(gw, "GET", `/api/jobs/${submitted.body.job_id}`);
  t.equal(status.status, 200);
  t.match(status.body, { job_id: submitted.body.job_id, type: "echo", queue, state: "succeeded", attempts: 1, error: null });

  const waited = await http<JobResult>(gw, "POST", "/api/jobs?wait_ms=10000", { body: { type: "echo", payload: { waited: true }, queue } });
  t.equal(waited.status, 200, "?wait_ms answers 200 once the job finished", { body: waited.text });
  t.match(waited.body, { state: "succeeded", error: null, attempts: 1 });
  t.same(waited.body.result, { waited: true });
  t.type(waited.body.job_id, "string");

  // The gateway forwards the body's own bytes and adds wait_ms before its last brace: braces inside
  // strings, unusual spacing and a wait_ms of the body's own (the query's wins) stay as they mean.
  const raw = `\n { "type" : "echo", "queue": "${queue}", "wait_ms": 1, "payload": {"brace": "}", "open": "{"} }  \n`;
  const spliced = await http<JobResult>(gw, "POST", "/api/jobs?wait_ms=10000", { body: raw });
  t.equal(spliced.status, 200, "a raw body with ?wait_ms waits for the result", { body: spliced.text });
  t.same(spliced.body.result, { brace: "}", open: "{" }, "the payload arrives as sent");
});

t.test("NATS API: submit (with wait_ms), get, result, and $SRV discovery", async (t) => {
  const queue = uniqueName();
  const supervisor = await startSupervisor(t, server.url, { queues: [queue], workerId: uniqueName("w"), args: ["--min", "1", "--max", "2"] });

  const waited = await requestJson<JobResult>(nc, "bosun.api.jobs.submit", { type: "echo", payload: { via: "nats" }, queue, wait_ms: 10_000 }, { timeoutMs: 15_000 });
  t.equal(waited.errorCode, undefined, "no service error");
  t.match(waited.body, { state: "succeeded", error: null, attempts: 1 });
  t.same(waited.body.result, { via: "nats" });

  const submitted = await requestJson<SubmitReply>(nc, "bosun.api.jobs.submit", { type: "echo", payload: [1, "two"], queue });
  t.equal(submitted.errorCode, undefined);
  t.equal(submitted.body.state, "queued");
  const jobId = submitted.body.job_id;

  const result = await waitFor(
    async () => {
      const r = await requestJson<JobResult>(nc, "bosun.api.jobs.result", { job_id: jobId });
      return r.errorCode === "409" ? undefined : r;
    },
    { timeoutMs: 15_000, what: "the NATS result" },
  );
  t.equal(result.errorCode, undefined, "result answers without error", { body: result.body });
  t.match(result.body, { job_id: jobId, state: "succeeded", attempts: 1 });
  t.same(result.body.result, [1, "two"]);

  const status = await requestJson<JobStatus>(nc, "bosun.api.jobs.get", { job_id: jobId });
  t.equal(status.errorCode, undefined);
  t.match(status.body, { job_id: jobId, type: "echo", queue, state: "succeeded" });

  // Error replies carry the service error headers and the JSON error body.
  const bad = await requestJson<ErrorReply>(nc, "bosun.api.jobs.submit", { payload: {}, queue });
  t.equal(bad.errorCode, "400", "Nats-Service-Error-Code 400");
  t.ok(bad.errorText, "Nats-Service-Error set");
  t.equal(bad.body.error.code, "validation_error");
  const missing = await requestJson<ErrorReply>(nc, "bosun.api.jobs.get", { job_id: "no_such_job" });
  t.equal(missing.errorCode, "404");
  t.equal(missing.body.error.code, "not_found");
  const notJson = await requestJson<ErrorReply>(nc, "bosun.api.jobs.submit", "{nope", { raw: true });
  t.equal(notJson.errorCode, "400");
  t.equal(notJson.body.error.code, "invalid_json");

  // Service discovery: every supervisor answers; ours is among them.
  const pings = await collect(nc, "$SRV.PING.bosun");
  const pingBodies = pings.map((m) => JSON.parse(new TextDecoder().decode(m.data)) as { name: string; type: string; metadata?: Record<string, string> });
  t.ok(pingBodies.length >= 1, "$SRV.PING.bosun answers");
  t.ok(pingBodies.every((p) => p.name === "bosun"), "every answer is the bosun service");
  t.ok(pingBodies.some((p) => p.metadata?.worker_id === supervisor.workerId), "our supervisor answers the ping");
  const barePing = await requestJson<{ name: string }>(nc, "$SRV.PING", "", { raw: true });
  t.equal(barePing.body.name, "bosun", "bare $SRV.PING answers too");

  const infos = await collect(nc, "$SRV.INFO.bosun");
  const info = infos
    .map((m) => JSON.parse(new TextDecoder().decode(m.data)) as { name: string; type: string; metadata?: Record<string, string>; endpoints: { subject: string }[] })
    .find((i) => i.metadata?.worker_id === supervisor.workerId);
  t.ok(info, "our supervisor answers $SRV.INFO.bosun");
  t.equal(info?.name, "bosun");
  t.match(info?.type ?? "", /info_response/);
  const subjects = (info?.endpoints ?? []).map((e) => e.subject);
  for (const s of ["bosun.api.jobs.submit", "bosun.api.jobs.get", "bosun.api.jobs.result"]) t.ok(subjects.includes(s), `INFO lists ${s}`);

  const stats = (await collect(nc, "$SRV.STATS.bosun"))
    .map((m) => JSON.parse(new TextDecoder().decode(m.data)) as { name: string; type: string; metadata?: Record<string, string>; endpoints: { subject: string; num_requests: number }[] })
    .find((s) => s.metadata?.worker_id === supervisor.workerId);
  t.ok(stats, "our supervisor answers $SRV.STATS.bosun");
  t.match(stats?.type ?? "", /stats_response/);
  const submits = stats?.endpoints.find((e) => e.subject === "bosun.api.jobs.submit");
  t.ok((submits?.num_requests ?? 0) >= 1, `STATS counts our submits (${submits?.num_requests})`);
});

/** Every reply to a request within a short window. */
async function collect(conn: typeof nc, subject: string) {
  const replies = [];
  for await (const m of await conn.requestMany(subject, "", { maxWait: 750 })) replies.push(m);
  return replies;
}

t.test("500 concurrent echo jobs each get exactly their own payload back", async (t) => {
  const queue = uniqueName();
  await startSupervisor(t, server.url, { queues: [queue], args: ["--min", "2", "--max", "4"] });
  const n = 500;
  const nonce = uniqueName("n");
  const payloads = Array.from({ length: n }, (_, i) => ({ i, nonce, text: `job-${i}-${"x".repeat(i % 17)}` }));
  const started = Date.now();
  const replies = await Promise.all(
    payloads.map((payload) => http<JobResult & SubmitReply>(gw, "POST", "/api/jobs?wait_ms=60000", { body: { type: "echo", payload, queue }, timeoutMs: 90_000 })),
  );
  const statuses = new Map<number, number>();
  for (const r of replies) statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
  t.same([...statuses.entries()], [[200, n]], "every submit answered 200 with its result");
  let mismatched = 0;
  const ids = new Set<string>();
  replies.forEach((r, i) => {
    ids.add(r.body.job_id);
    if (r.body.state !== "succeeded" || JSON.stringify(r.body.result) !== JSON.stringify(payloads[i])) mismatched++;
  });
  t.equal(mismatched, 0, "every job succeeded with exactly its own payload");
  t.equal(ids.size, n, "every job has its own id");
  t.comment(`${n} jobs through HTTP in ${Date.now() - started} ms`);
});

t.test("bad input gets the contract's status and code", async (t) => {
  const queue = uniqueName();
  await startSupervisor(t, server.url, { queues: [queue], args: ["--min", "1", "--max", "1"] });
  const post = (body: unknown, path = "/api/jobs") => http(gw, "POST", path, { body });

  assertError(t, await post({ payload: {}, queue }), 400, "validation_error", "missing type");
  assertError(t, await post({ type: 42, queue }), 400, "validation_error", "type is a number");
  assertError(t, await post({ type: "echo", queue, max_attempts: "three" }), 400, "validation_error", "max_attempts is a string");
  assertError(t, await post({ type: "echo", queue: "no spaces allowed" }), 400, "validation_error", "queue with bad characters");
  // "_" names no tenant in lane codes and idempotency index keys: a tenant called so would share them with untenanted jobs.
  assertError(t, await post({ type: "echo", queue, tenant: "_" }), 400, "validation_error", "the reserved tenant name");
  // A tick's key taken ahead of it would make the caller's job the tick's (and keep the tick's own from running).
  assertError(t, await post({ type: "echo", queue, idempotency_key: "schedule:nightly:1767225600000" }), 400, "validation_error", "a schedule tick's idempotency key");
  assertError(t, await post({ type: "echo", queue, surprise: true }), 400, "validation_error", "unknown field");
  assertError(t, await post({ type: "echo", queue, delay_ms: 5, run_at: new Date().toISOString() }), 400, "validation_error", "delay_ms and run_at");
  assertError(t, await post({ type: "sleep", queue, payload: { ms: "long" } }), 400, "validation_error", "payload fails the handler's schema");
  assertError(t, await post([1, 2, 3]), 400, "validation_error", "body is an array");
  assertError(t, await post({ type: "echo", queue }, "/api/jobs?wait_ms=soon"), 400, "validation_error", "wait_ms not a number");
  assertError(t, await post({ type: "echo", queue }, `/api/jobs?wait_ms=${10 * 60 * 1000}`), 400, "validation_error", "wait_ms over the maximum");
  assertError(t, await http(gw, "POST", "/api/jobs"), 400, "validation_error", "no body at all");
  assertError(t, await post("{not json"), 400, "invalid_json", "body not JSON");
  assertError(t, await post('{"type": "echo",'), 400, "invalid_json", "truncated JSON");

  assertError(t, await post({ type: "no_such_type", queue }), 422, "unknown_type", "unknown type");
  assertError(t, await post({ type: "echo", queue: uniqueName("unserved") }), 422, "unknown_type", "queue nobody serves");

  assertError(t, await http(gw, "GET", "/api/jobs/no_such_job"), 404, "not_found", "status of an unknown id");
  assertError(t, await http(gw, "GET", "/api/jobs/no_such_job/result"), 404, "not_found", "result of an unknown id");
  assertError(t, await http(gw, "GET", "/api/no/such/route"), 404, "not_found", "unknown route");

  // A job that is still running has no result yet.
  const running = await post({ type: "sleep", queue, payload: { ms: 4000 }, max_attempts: 1 });
  t.equal(running.status, 202);
  const jobId = (running.body as SubmitReply).job_id;
  assertError(t, await http(gw, "GET", `/api/jobs/${jobId}/result`), 409, "not_finished", "result of an unfinished job");
  // With a wait shorter than the job, submit still answers 202 with the job id.
  const short = await post({ type: "sleep", queue, payload: { ms: 4000 }, max_attempts: 1 }, "/api/jobs?wait_ms=100");
  t.equal(short.status, 202, "a wait that runs out answers 202", { body: short.text });
  t.equal((short.body as SubmitReply).state, "queued");
});

t.test("bodies over the limit get 413 payload_too_large", async (t) => {
  const queue = uniqueName();
  await startSupervisor(t, server.url, { queues: [queue], args: ["--min", "1", "--max", "1"] });
  const small = await startGateway(t, server.url, { args: ["--body-limit-bytes", "1024"] });
  const big = { type: "echo", queue, payload: { blob: "x".repeat(2048) } };
  assertError(t, await http(small.baseUrl, "POST", "/api/jobs", { body: big }), 413, "payload_too_large", "body over --body-limit-bytes");
  const fits = await http(small.baseUrl, "POST", "/api/jobs?wait_ms=10000", { body: { type: "echo", queue, payload: { blob: "x".repeat(500) } } });
  t.equal(fits.status, 200, "a body under the limit still works", { body: fits.text.slice(0, 300) });

  // Over NATS's max_payload (1 MiB) while under a raised gateway limit: still 413, never a 500.
  const roomy = await startGateway(t, server.url, { args: ["--body-limit-bytes", String(4 * 1024 * 1024)] });
  const huge = { type: "echo", queue, payload: { blob: "x".repeat(1536 * 1024) } };
  assertError(t, await http(roomy.baseUrl, "POST", "/api/jobs", { body: huge }), 413, "payload_too_large", "body over NATS max_payload");
});

/**
 * Regression (fixed in e917116): ids with *, >, spaces, "..", a leading "."
 * or non-ASCII reached kv.get (500 internal_error), and a wildcard id in the
 * result lookup returned the latest result of any job.
 */
t.test("a job id that cannot exist (not a valid key) is a client error, never a 500 nor another job's result", async (t) => {
  const queue = uniqueName();
  await startSupervisor(t, server.url, { queues: [queue], args: ["--min", "1", "--max", "1"] });
  // Someone else's finished job, whose result must not come back for a wildcard id.
  const secret = uniqueName("secret");
  const other = await http<JobResult>(gw, "POST", "/api/jobs?wait_ms=10000", { body: { type: "echo", queue, payload: { secret } } });
  t.equal(other.status, 200);
  for (const id of ["%2A", "%3E"]) {
    const res = await http(gw, "GET", `/api/jobs/${id}/result`);
    t.not(res.status, 200, `GET /api/jobs/${id}/result is not a 200`, { body: res.text });
    t.notMatch(res.text, secret, `GET /api/jobs/${id}/result does not return another job's result`, { body: res.text });
  }
  const viaNats = await requestJson(nc, "bosun.api.jobs.result", { job_id: "*" });
  t.notMatch(JSON.stringify(viaNats.body), secret, "NATS jobs.result with job_id * does not return another job's result");
  for (const id of ["%2A", "%3E", "a%20b", "a..b", ".a", "%C3%A9"]) {
    for (const path of [`/api/jobs/${id}`, `/api/jobs/${id}/result`]) {
      const res = await http<ErrorReply>(gw, "GET", path);
      t.ok(res.status === 404 || res.status === 400, `GET ${path}: 404 or 400 (got ${res.status})`, { body: res.text });
      t.match(res.body?.error?.code, /^(not_found|validation_error)$/, `GET ${path}: not_found or validation_error`);
      t.notMatch(res.text, /\n\s+at /, `GET ${path}: no stack trace`);
    }
  }
  const nats = await requestJson<ErrorReply>(nc, "bosun.api.jobs.get", { job_id: "*" });
  t.match(nats.errorCode, /^(404|400)$/, "NATS jobs.get with job_id * is 404 or 400", { body: nats.body });
});

t.test("a fast job's status and listing come from its result; a cancel racing its end leaves one outcome", async (t) => {
  const queue = uniqueName();
  await startSupervisor(t, server.url, { queues: [queue], args: ["--min", "2", "--max", "2"] });

  // Fast jobs get no interim record: their final record alone says who ran them and when.
  const fast = await Promise.all(Array.from({ length: 20 }, (_, i) => http<JobResult>(gw, "POST", "/api/jobs?wait_ms=10000", { body: { type: "echo", queue, payload: { i } } })));
  const fastIds = fast.map((r) => r.body.job_id);
  t.ok(fast.every((r) => r.status === 200 && r.body.state === "succeeded"), "20 echo jobs succeeded");
  for (const id of fastIds.slice(0, 5)) {
    const status = await http<JobStatus & { started_at: string; finished_at: string; duration_ms: number }>(gw, "GET", `/api/jobs/${id}`);
    t.match(status.body, { state: "succeeded", attempts: 1, owner: { worker_id: String, pid: Number }, progress: 1, finished_at: String, started_at: String }, `GET ${id} says succeeded, and who ran it`);
    const result = await http<JobResult>(gw, "GET", `/api/jobs/${id}/result`);
    t.type(result.body.duration_ms, "number", "its result has duration_ms");
    t.ok(Date.parse(status.body.started_at) <= Date.parse(status.body.finished_at), "started before it finished");
  }
  const succeeded = await http<{ jobs: JobStatus[] }>(gw, "GET", `/api/jobs?state=succeeded&queue=${queue}`);
  t.same(new Set(succeeded.body.jobs.map((j) => j.job_id)), new Set(fastIds), "listing succeeded jobs finds all 20");
  const queued = await http<{ jobs: JobStatus[] }>(gw, "GET", `/api/jobs?state=queued&queue=${queue}`);
  t.equal(queued.body.jobs.length, 0, "and none is listed as queued");

  // Cancels sent right behind submits race the jobs' ends: either outcome may win, but only one.
  const raced = await Promise.all(
    Array.from({ length: 40 }, async (_, i) => {
      const submitted = await requestJson<SubmitReply>(nc, "bosun.api.jobs.submit", { type: "echo", queue, payload: { race: i } });
      const cancel = await requestJson<{ state: string }>(nc, "bosun.api.jobs.cancel", { job_id: submitted.body.job_id });
      return { id: submitted.body.job_id, cancel };
    }),
  );
  const results = new Map<string, JobResult>();
  await waitFor(
    async () => {
      for (const { id } of raced) {
        if (results.has(id)) continue;
        const res = await http<JobResult>(gw, "GET", `/api/jobs/${id}/result`);
        if (res.status === 200) results.set(id, res.body);
      }
      return results.size === raced.length;
    },
    { timeoutMs: 20_000, intervalMs: 50, what: "every raced job to end" },
  );
  for (const { id, cancel } of raced) {
    const result = results.get(id)!;
    if (cancel.errorCode) {
      t.equal(cancel.errorCode, "409", `${id}: a refused cancel is a conflict`);
      t.equal(result.state, "succeeded", `${id}: refused because it had succeeded`);
    } else if ((cancel.body as { cancel_requested?: boolean }).cancel_requested) {
      // It showed as running (a slow moment): the kill and its end race, either may win.
      t.ok(["cancelled", "succeeded"].includes(result.state), `${id}: a kill requested while it ran: one outcome`, { result });
    } else {
      t.equal(result.state, "cancelled", `${id}: an accepted cancel is the outcome`, { cancel: cancel.body });
    }
    const status = await http<JobStatus>(gw, "GET", `/api/jobs/${id}`);
    t.equal(status.body.state, result.state, `${id}: status and result agree`);
  }
  t.comment(`raced cancels: ${raced.filter((r) => !r.cancel.errorCode).length} won, ${raced.filter((r) => r.cancel.errorCode).length} came too late`);
});

t.test("a job pulled ahead behind a run that goes long is handed back and runs on a supervisor with room", async (t) => {
  const queue = uniqueName();
  const first = uniqueName("ahead");
  await startSupervisor(t, server.url, { queues: [queue], workerId: first, args: ["--min", "1", "--max", "1"] });
  // Short jobs teach the supervisor to pull ahead of its one process.
  for (let i = 0; i < 5; i++) await http(gw, "POST", "/api/jobs?wait_ms=10000", { body: { type: "echo", queue, payload: { i } } });
  const sleeper = await requestJson<SubmitReply>(nc, "bosun.api.jobs.submit", { type: "sleep", queue, payload: { ms: 8000 }, max_attempts: 1 });
  await waitFor(async () => (await http<JobStatus>(gw, "GET", `/api/jobs/${sleeper.body.job_id}`)).body.state === "running", { timeoutMs: 10_000, intervalMs: 20, what: "the long job running" });
  const second = uniqueName("room");
  await startSupervisor(t, server.url, { queues: [queue], workerId: second, args: ["--min", "1", "--max", "1"] });

  const behind = await http<JobResult>(gw, "POST", "/api/jobs?wait_ms=6000", { body: { type: "echo", queue, payload: { behind: true } } });
  t.equal(behind.status, 200, "the job behind the long run finished while it still ran", { body: behind.text });
  t.match(behind.body, { state: "succeeded", attempts: 1 }, "with its first attempt: being handed back used none");
  const sleeping = await http<JobStatus>(gw, "GET", `/api/jobs/${sleeper.body.job_id}`);
  t.match(sleeping.body, { state: "running", owner: { worker_id: first } }, "the long job is still running on the first supervisor");
});

t.test("the gateway's and a supervisor's NATS connections coalesce their socket writes (the hook into nats.js holds)", async (t) => {
  const supervisor = await startSupervisor(t, server.url, { queues: [uniqueName()], args: ["--min", "1", "--max", "1"] });
  await waitFor(() => gateway.proc.logs.some((l) => l.msg === "NATS connected"), { what: "the gateway connected to NATS" });
  const unhooked = (logs: { msg?: unknown }[]) => logs.filter((l) => l.msg === UNCOALESCED_WARNING).length;
  t.equal(unhooked(gateway.proc.logs), 0, "the gateway's are");
  t.equal(unhooked(supervisor.proc.logs), 0, "the supervisor's are");
});
