/**
 * The record model seen from outside: finished jobs keep owner and times,
 * one retention removes a finished job everywhere (and nothing unfinished),
 * a cancelled far-future job never runs, batch submit, idempotency
 * conflicts, and the contract fixes of issue 10 (workers array, maintenance
 * retries, body wait_ms, /readyz, short retentions).
 */
import t from "tap";
import { jetstreamManager } from "@nats-io/jetstream";
import { runCli, startGateway, startSupervisor } from "./helpers/bosun.js";
import { RunLog, startCountingSupervisor } from "./helpers/faults.js";
import { http, type ErrorReply, type JobResult, type JobStatus, type SubmitReply } from "./helpers/http.js";
import { connectClient, requestJson } from "./helpers/nats-client.js";
import { NatsServer } from "./helpers/nats-server.js";
import { uniqueName, waitFor } from "./helpers/wait.js";

interface FullStatus extends JobStatus {
  started_at: string | null;
  finished_at: string | null;
  owner: { worker_id: string; pid: number } | null;
}
interface Page {
  jobs: FullStatus[];
  next_cursor: string | null;
}
type BatchEntry = SubmitReply | ErrorReply;

const RETENTION_MS = 2000;
// One server with a 2 s retention for the tests that watch jobs expire.
const server = await NatsServer.start(t);
const nc = await connectClient(t, server.url);
const runs = await RunLog.create(t);
const queue = uniqueName("rec");
await startCountingSupervisor(t, server.url, runs, { queues: [queue], args: ["--retention-ms", String(RETENTION_MS), "--lease-ms", "2000"] });
const gw = (await startGateway(t, server.url)).baseUrl;

const status = (id: string) => http<FullStatus>(gw, "GET", `/api/jobs/${id}`);

t.test("a fast job keeps owner and times; after its retention every read is 404, never an older state", async (t) => {
  const done = await http<JobResult>(gw, "POST", "/api/jobs?wait_ms=10000", { body: { type: "echo", queue, payload: { fast: true } } });
  t.equal(done.status, 200, "finished within the wait");
  const id = done.body.job_id;
  const seen = (await status(id)).body;
  t.match(seen, { state: "succeeded", owner: { worker_id: String, pid: Number }, started_at: String, finished_at: String }, "owner, started_at, finished_at on the finished job", { seen });
  t.type(done.body.duration_ms, "number", "the result has duration_ms");
  const listed = await http<Page>(gw, "GET", `/api/jobs?queue=${queue}&limit=1000`);
  t.ok(listed.body.jobs.some((j) => j.job_id === id), "listed while kept");

  const states = new Set<string>();
  await waitFor(
    async () => {
      const res = await status(id);
      if (res.status === 200) states.add(res.body.state);
      return res.status === 404;
    },
    { timeoutMs: RETENTION_MS + 8000, intervalMs: 100, what: "the job to pass its retention" },
  );
  t.same([...states], ["succeeded"], "until then it read succeeded every time, never queued");
  t.equal((await http(gw, "GET", `/api/jobs/${id}/result`)).status, 404, "result 404");
  t.equal((await http(gw, "POST", `/api/jobs/${id}/cancel`)).status, 404, "cancel 404");
  const after = await http<Page>(gw, "GET", `/api/jobs?queue=${queue}&limit=1000`);
  t.notOk(after.body.jobs.some((j) => j.job_id === id), "gone from the listing");
});

t.test("a job due far beyond the retention, cancelled, never runs and no longer counts as scheduled", async (t) => {
  const delayMs = RETENTION_MS * 3;
  const sub = await http<SubmitReply>(gw, "POST", "/api/jobs", { body: { type: "count.run", queue, payload: { tag: "far" }, delay_ms: delayMs } });
  t.equal(sub.body.state, "scheduled");
  const scheduled = async () => (await http<{ queue: string; scheduled: number }[] | { queues: { queue: string; scheduled: number }[] }>(gw, "GET", "/api/platform/queue")).body;
  const countOf = (body: Awaited<ReturnType<typeof scheduled>>) => (Array.isArray(body) ? body : body.queues).find((q) => q.queue === queue)?.scheduled;
  t.equal(countOf(await scheduled()), 1, "counted as scheduled before the cancel");
  const cancel = await http<{ state: string }>(gw, "POST", `/api/jobs/${sub.body.job_id}/cancel`);
  t.match(cancel, { status: 202, body: { state: "cancelled" } });
  t.equal(countOf(await scheduled()), 0, "not counted as scheduled once cancelled");
  // Past its due time and past the retention of its cancelled record.
  await waitFor(async () => (await status(sub.body.job_id)).status === 404, { timeoutMs: delayMs + 10_000, intervalMs: 200, what: "the cancelled job to expire" });
  await new Promise((r) => setTimeout(r, Math.max(0, delayMs + 1500 - RETENTION_MS)));
  await runs.refresh();
  t.equal(runs.starts(sub.body.job_id).length, 0, "it never ran");
  t.equal((await status(sub.body.job_id)).status, 404, "and reads 404, not succeeded");
});

t.test("batch submit: 1,000 entries with 10 bad ones: 990 accepted in order, 10 errors where they stand, each job runs once", async (t) => {
  const bad = new Set([0, 99, 100, 250, 499, 500, 501, 777, 998, 999]);
  const entries = Array.from({ length: 1000 }, (_, i) => {
    if (!bad.has(i)) return { type: "count.run", queue, payload: { tag: `b${i}` } };
    return i % 3 === 0 ? { type: "count.run", queue, delay_ms: -1 } : i % 3 === 1 ? { queue, payload: {} } : { type: "count.run", queue, nonsense: true };
  });
  const res = await http<{ jobs: BatchEntry[] }>(gw, "POST", "/api/jobs/batch", { body: { jobs: entries } });
  t.equal(res.status, 202, "202");
  const replies = res.body.jobs;
  t.equal(replies.length, 1000, "one answer per entry");
  const errors = replies.flatMap((r, i) => ("error" in r ? [i] : []));
  t.same(errors, [...bad].sort((a, b) => a - b), "the errors are exactly the bad entries' positions");
  t.ok(errors.every((i) => (replies[i] as ErrorReply).error.code === "validation_error"), "each a validation_error");
  const ids = replies.flatMap((r) => ("job_id" in r ? [r.job_id] : []));
  t.equal(new Set(ids).size, 990, "990 distinct jobs accepted");
  await waitFor(
    async () => {
      await runs.refresh();
      return ids.every((id) => runs.starts(id).length > 0);
    },
    { timeoutMs: 60_000, intervalMs: 250, what: "every accepted job to run" },
  );
  await new Promise((r) => setTimeout(r, 500));
  await runs.refresh();
  t.equal(ids.filter((id) => runs.starts(id).length === 1).length, 990, "each accepted job ran exactly once");
  const overNats = await requestJson<{ jobs: BatchEntry[] }>(nc, "bosun.api.jobs.submit_batch", { jobs: [{ type: "count.run", queue }, { type: "", queue }] });
  t.match(overNats.body.jobs, [{ job_id: String, state: "queued" }, { error: { code: "validation_error" } }], "the same over NATS");
  const tooMany = await http<ErrorReply>(gw, "POST", "/api/jobs/batch", { body: { jobs: Array.from({ length: 1001 }, () => ({ type: "noop", queue })) } });
  t.equal(tooMany.status, 400, "1,001 entries: 400");
  const none = await http<ErrorReply>(gw, "POST", "/api/jobs/batch", { body: { jobs: [] } });
  t.equal(none.status, 400, "no entries: 400");
});

t.test("an idempotency key reused with another type or payload is a 409 naming the first job", async (t) => {
  const key = uniqueName("key");
  const first = await http<SubmitReply>(gw, "POST", "/api/jobs", { body: { type: "echo", queue, payload: { a: 1, b: 2 }, idempotency_key: key } });
  t.equal(first.status, 202);
  const same = await http<SubmitReply>(gw, "POST", "/api/jobs", { body: { type: "echo", queue, payload: { b: 2, a: 1 }, idempotency_key: key } });
  t.match(same.body, { job_id: first.body.job_id, duplicate: true }, "the same body (keys in another order): the first job");
  const otherPayload = await http<ErrorReply>(gw, "POST", "/api/jobs", { body: { type: "echo", queue, payload: { a: 2 }, idempotency_key: key } });
  t.match(otherPayload, { status: 409, body: { error: { code: "idempotency_conflict", details: { job_id: first.body.job_id } } } }, "another payload: 409");
  const otherType = await http<ErrorReply>(gw, "POST", "/api/jobs", { body: { type: "noop", queue, payload: { a: 1, b: 2 }, idempotency_key: key } });
  t.match(otherType, { status: 409, body: { error: { code: "idempotency_conflict", details: { job_id: first.body.job_id } } } }, "another type: 409");
});

t.test("contract fixes: workers array, maintenance retries, body wait_ms, cleanup of everything finished", async (t) => {
  const workers = await http<unknown>(gw, "GET", "/api/platform/workers");
  t.ok(Array.isArray(workers.body), "GET /api/platform/workers is a bare array", { body: workers.body });

  const task = await http<{ task_id: string }>(gw, "POST", `/api/system/maintenance/cleanup-runs?queue=${queue}`, { body: { max_age_hours: 0 } });
  t.equal(task.status, 202, "max_age_hours 0 (everything finished) is accepted");
  const taskStatus = await waitFor(async () => {
    const s = await status(task.body.task_id);
    return s.body.state === "succeeded" ? s.body : undefined;
  }, { timeoutMs: 20_000, what: "the cleanup task" });
  t.equal(taskStatus.max_attempts, 3, "the task has the default attempts, not 1");
  const left = await http<Page>(gw, "GET", `/api/jobs?state=succeeded&queue=${queue}&limit=1000`);
  t.ok(left.body.jobs.every((j) => Date.parse(j.finished_at!) >= Date.parse(taskStatus.started_at!)), "no job that finished before the cleanup is left");

  // A body wait_ms longer than the gateway's own timeout: the gateway waits for it.
  const slow = await startGateway(t, server.url, { args: ["--request-timeout-ms", "500"] });
  const waited = await http<JobResult>(slow.baseUrl, "POST", "/api/jobs", { body: { type: "sleep", queue, payload: { ms: 1200 }, wait_ms: 5000 } });
  t.match(waited, { status: 200, body: { state: "succeeded" } }, "a body wait_ms past the gateway timeout answers 200 with the result, not 503");
  const badWait = await http<ErrorReply>(slow.baseUrl, "POST", "/api/jobs", { body: { type: "noop", queue, wait_ms: "soon" } });
  t.match(badWait, { status: 400, body: { error: { code: "validation_error" } } }, "a bad body wait_ms: 400");
});

t.test("/readyz checks every stream and bucket; a retention the server refuses is one line", async (t) => {
  const own = await NatsServer.start(t);
  await startSupervisor(t, own.url, { queues: [uniqueName("ready")], args: ["--retention-ms", "1000"] });
  const ready = await startGateway(t, own.url);
  t.match(await http(ready.baseUrl, "GET", "/readyz"), { status: 200, body: { status: "ready" } }, "ready with a 1 s retention");
  const client = await connectClient(t, own.url);
  const jsm = await jetstreamManager(client);
  await jsm.streams.delete("KV_bosun_lanes");
  const missing = await http<ErrorReply>(ready.baseUrl, "GET", "/readyz");
  t.equal(missing.status, 503, "a missing bucket: 503");
  t.match(missing.body.error.message, /KV_bosun_lanes/, "naming it");

  const refused = await runCli(["supervisor", "--retention-ms", "10"], { env: { NATS_URL: own.url } });
  t.not(refused.code, 0, "a retention under 1 s is refused");
  t.equal(refused.stderr.trim().split("\n").length, 1, "in one line", { stderr: refused.stderr });
  t.match(refused.stderr, /retention-ms/);
});
