/**
 * Hostile input (issue 9): each of the fourteen reproductions as a
 * regression test against a real nats-server, supervisor and gateway.
 * Nothing a client sends, over HTTP or NATS, nor anything published into
 * Bosun's own subjects, may crash, hang or wedge a process; every test ends
 * by checking that the same processes still run a job.
 */
import { lstat, mkdir, mkdtemp, readFile, rm, symlink, utimes, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Ajv } from "ajv";
import addFormats from "ajv-formats";
import t, { type Test } from "tap";
import { headers as natsHeaders } from "@nats-io/nats-core";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { startGateway, startSupervisor } from "./helpers/bosun.js";
import { http, type ErrorReply, type JobResult, type JobStatus, type SubmitReply } from "./helpers/http.js";
import {
  api,
  buckets,
  contractError,
  controlSubject,
  deadSubject,
  envelope,
  heartbeatSubject,
  issuedJobId,
  jobSubject,
  kvKeySubject,
  readConsumers,
  resultSubject,
} from "./helpers/hostile.js";
import { COUNT_HANDLERS } from "./helpers/faults.js";
import { resultOf, runJob } from "./helpers/jobs.js";
import { connectClient, requestJson } from "./helpers/nats-client.js";
import { NatsServer } from "./helpers/nats-server.js";
import { httpWorkers, SseStream } from "./helpers/ops.js";
import { rawHttp, request } from "./helpers/raw-http.js";
import { uniqueName, waitFor } from "./helpers/wait.js";

const MiB = 1024 * 1024;
const server = await NatsServer.start(t);
const nc = await connectClient(t, server.url);
const js = jetstream(nc);
const jsm = await jetstreamManager(nc);
const tempDir = await mkdtemp(path.join(os.tmpdir(), "bosun-hostile-"));
const outside = await mkdtemp(path.join(os.tmpdir(), "bosun-victim-"));
t.teardown(() => Promise.all([rm(tempDir, { recursive: true, force: true }), rm(outside, { recursive: true, force: true })]));

const queue = uniqueName("hq");
const workerId = uniqueName("hw");
const supervisor = await startSupervisor(t, server.url, {
  queues: [queue],
  workerId,
  args: ["--min", "1", "--max", "2", "--heartbeat-ms", "500", "--temp-dir", tempDir, "--lease-ms", "3000"],
});
// By environment, so that the same test runs against a build that predates the flag.
const gateway = await startGateway(t, server.url, { env: { BOSUN_HTTP_REQUEST_TIMEOUT_MS: "2000" } });
const gw = gateway.baseUrl;
const supervisorLogs = () => supervisor.proc.logs;

/** The same supervisor and gateway still run, and a job still succeeds through them. */
async function stillServing(t: Test): Promise<void> {
  t.ok(supervisor.proc.running, "the supervisor is still running (same pid)");
  t.ok(gateway.proc.running, "the gateway is still running (same pid)");
  const res = await http<JobResult>(gw, "POST", "/api/jobs?wait_ms=8000", { body: { type: "echo", queue, payload: { alive: true } }, timeoutMs: 12_000 });
  t.equal(res.status, 200, "and a normal job succeeds", { body: res.text.slice(0, 300) });
}

function assertError(t: Test, res: { status: number; text: string }, status: number, code: string, what: string): void {
  t.equal(res.status, status, `${what}: ${status}`, { body: res.text.slice(0, 300) });
  t.equal(contractError(res.text)?.code, code, `${what}: the contract's error shape with ${code}`, { body: res.text.slice(0, 300) });
}

/** Stores a message in whichever stream takes the subject, as anyone with publish rights could. */
async function inject(subject: string, data: string | Uint8Array, headers: Record<string, string> = {}): Promise<void> {
  const h = natsHeaders();
  for (const [k, v] of Object.entries(headers)) h.set(k, v);
  await js.publish(subject, data, { headers: h });
}

const droppedLogs = (source: string) => supervisorLogs().filter((l) => l.msg === "dropping a malformed message" && l.source === source);

t.test("1. a type with a newline is refused with a one-line error, and no process dies", async (t) => {
  assertError(t, await http(gw, "POST", "/api/jobs", { body: { type: "x\ny", queue } }), 400, "validation_error", "HTTP type x\\ny");
  const viaNats = await requestJson<ErrorReply>(nc, api.jobsSubmit, { type: "x\ny", queue });
  t.equal(viaNats.errorCode, "400", "NATS: 400");
  // A valid but unknown type with other line breaks and much text: its 422 header stays one bounded line.
  const odd = await requestJson<ErrorReply>(nc, api.jobsSubmit, { type: `a\u2028b${"é".repeat(190)}`, queue });
  t.equal(odd.errorCode, "422", "an odd unknown type is 422");
  t.notMatch(odd.errorText ?? "", /[\r\n\u2028]/, "its Nats-Service-Error header is one line");
  await stillServing(t);
});

t.test("2. a body with 40,000 unknown keys gets a small 400, over HTTP, the API and the control subject", async (t) => {
  const body = { type: "echo", queue, ...Object.fromEntries(Array.from({ length: 40_000 }, (_, i) => [`k${i}`, 1])) };
  const res = await http(gw, "POST", "/api/jobs", { body });
  assertError(t, res, 400, "validation_error", "HTTP");
  t.ok(res.text.length < 8192, `HTTP error body is small (${res.text.length} bytes)`);
  for (const subject of [api.jobsSubmit, controlSubject(workerId, "submit")]) {
    const reply = await requestJson<ErrorReply>(nc, subject, body);
    t.equal(reply.errorCode, "400", `${subject}: 400`);
    t.ok(reply.msg.data.length < 8192, `${subject}: error body is small (${reply.msg.data.length} bytes)`);
  }
  await stillServing(t);
});

t.test("3. a job message whose job_id is no subject token is dropped once, not redelivered into every supervisor", async (t) => {
  const bad = envelope(queue, { job_id: "a b" });
  // On a job subject of the queue's lane (so its consumer delivers it), holding an id no subject can carry.
  const subject = jobSubject(issuedJobId(queue));
  await inject(subject, JSON.stringify(bad));
  await waitFor(() => droppedLogs("jobs stream").length > 0, { timeoutMs: 5000, what: "the drop logged" });
  await waitFor(async () => (await jsm.streams.info("BOSUN_JOBS", { subjects_filter: subject })).state.messages === 0, {
    timeoutMs: 5000,
    what: "the message gone from the stream",
  });
  await stillServing(t);
});

t.test("4. junk on a job's record subject while its events are open does not take the gateway down", async (t) => {
  const job = await http<SubmitReply>(gw, "POST", "/api/jobs", { body: { type: "sleep", queue, payload: { ms: 1500 }, max_attempts: 1 } });
  const events = await SseStream.open(t, `${gw}/api/jobs/${job.body.job_id}/events`);
  nc.publish(kvKeySubject(buckets.jobs, job.body.job_id), "not json {");
  nc.publish(kvKeySubject(buckets.jobs, job.body.job_id), JSON.stringify({ job_id: job.body.job_id, state: 42 }));
  await events.next((e) => (e.data as { data?: JobStatus })?.data?.state === "succeeded", { timeoutMs: 10_000, what: "the job's final event" });
  await waitFor(() => events.endedAt !== undefined, { timeoutMs: 3000, what: "the stream to end with the job" });
  await stillServing(t);
});

t.test("5. junk heartbeats and junk results do not stop the gateway's NATS reader", async (t) => {
  const workers = await SseStream.open(t, `${gw}/api/platform/workers/stream`);
  nc.publish(heartbeatSubject("x"), "not json");
  nc.publish(heartbeatSubject("y"), JSON.stringify({ worker_id: "y" }));
  const job = await http<SubmitReply>(gw, "POST", "/api/jobs", { body: { type: "sleep", queue, payload: { ms: 1500 }, max_attempts: 1 } });
  const events = await SseStream.open(t, `${gw}/api/jobs/${job.body.job_id}/events`);
  nc.publish(resultSubject(job.body.job_id), "[[[not json");
  const ready = await http(gw, "GET", "/readyz", { timeoutMs: 3000 });
  t.equal(ready.status, 200, "/readyz still 200", { body: ready.text });
  const count = workers.events.length;
  await workers.next(() => true, { from: count, timeoutMs: 5000, what: "a real heartbeat after the junk" });
  await events.next((e) => (e.data as { data?: JobStatus })?.data?.state === "succeeded", { timeoutMs: 10_000, what: "the job's final event" });
  await stillServing(t);
});

t.test("6. a 5,000-character job_id never reaches a subject (no disconnect)", async (t) => {
  await inject(jobSubject(issuedJobId(queue)), JSON.stringify(envelope(queue, { job_id: "j".repeat(5000) })));
  await waitFor(() => droppedLogs("jobs stream").some((l) => String(l.reason).includes("job_id")), { timeoutMs: 5000, what: "the drop logged" });
  await stillServing(t);
  const disconnects = supervisorLogs().filter((l) => l.msg === "nats connection status");
  t.same(disconnects, [], "the supervisor was never disconnected");
});

t.test("7. junk in the records bucket, results, dead letters and the lane registry reads as missing, never 500", async (t) => {
  const [junkRecord, junkRecord2, junkResult, junkDead, copied] = Array.from({ length: 5 }, () => issuedJobId(queue));
  await inject(kvKeySubject(buckets.jobs, junkRecord!), "not json");
  await inject(kvKeySubject(buckets.jobs, junkRecord2!), JSON.stringify({ job_id: "other", state: "queued" }));
  await inject(resultSubject(junkResult!), "{}");
  await inject(deadSubject(junkDead!), "[1,2");
  await inject(`$KV.${buckets.lanes}.junklane1`, "{not a lane");
  await inject(`$KV.${buckets.lanes}.junklane2`, JSON.stringify({ code: "junklane2", queue: "q", target: "default", band: "n", tenant: null }));
  // A real job's final record, valid in every field, stored as another job's: it is not that job's record.
  const real = await http<JobResult>(gw, "POST", "/api/jobs?wait_ms=8000", { body: { type: "echo", queue, payload: { real: true } }, timeoutMs: 12_000 });
  const stored = await jsm.direct.getMessage("BOSUN_RESULTS", { last_by_subj: resultSubject(real.body.job_id) });
  await inject(resultSubject(copied!), stored!.data);
  const list = await http<{ jobs: JobStatus[] }>(gw, "GET", "/api/jobs?limit=1000");
  t.equal(list.status, 200, "GET /api/jobs is 200", { body: list.text.slice(0, 300) });
  t.equal(list.body.jobs.filter((j) => j.job_id === real.body.job_id).length, 1, "the real job is listed once, the copy not at all");
  assertError(t, await http(gw, "GET", `/api/jobs/${junkRecord}`), 404, "not_found", "a junk record");
  assertError(t, await http(gw, "GET", `/api/jobs/${junkRecord2}`), 404, "not_found", "a record of another job");
  assertError(t, await http(gw, "GET", `/api/jobs/${junkResult}/result`), 404, "not_found", "a junk result");
  assertError(t, await http(gw, "GET", `/api/jobs/${copied}`), 404, "not_found", "another job's final record");
  const dead = await http(gw, "GET", `/api/jobs?state=dead&queue=${queue}`);
  t.equal(dead.status, 200, "dead listing is 200", { body: dead.text.slice(0, 300) });
  const queues = await http(gw, "GET", "/api/platform/queue");
  t.equal(queues.status, 200, "queue status is 200 with junk lanes registered", { body: queues.text.slice(0, 300) });
  const cleanup = await http<{ task_id: string }>(gw, "POST", `/api/system/maintenance/cleanup-runs?queue=${queue}`, { body: { max_age_hours: 1 } });
  t.equal(cleanup.status, 202);
  const result = await resultOf(nc, cleanup.body.task_id);
  t.equal(result.state, "succeeded", "cleanup_runs succeeds", { result });
  // A queue called __proto__ in the ops bucket must not pause every queue.
  const protoFlag = `$KV.${buckets.ops}.queues.__proto__.submissions_paused`;
  await inject(protoFlag, "true");
  await waitFor(async () => (await http(gw, "GET", "/api/admin/ops")).text.includes("__proto__"), { timeoutMs: 3000, what: "the flag applied" });
  await stillServing(t);
  await inject(protoFlag, "false");
  // Limits no patch could have written are ignored: the queue stays unlimited and keeps running jobs.
  const junk: [string, string][] = [["max_concurrency", "lots"], ["max_concurrency", "-3"], ["rate_limit", '{"max": 0, "per_ms": 1}'], ["max_pending", "{"]];
  for (const [limit, value] of junk) {
    await inject(`$KV.${buckets.ops}.queues.${queue}.${limit}`, value);
  }
  await inject(`$KV.${buckets.ops}.queues.__proto__.max_concurrency`, "0");
  t.equal((await runJob(nc, { type: "echo", queue, payload: { after: "junk limits" } })).state, "succeeded", "junk limits in the ops bucket hold nothing back");
  const limits = (await http<{ queues: Record<string, unknown> }>(gw, "GET", "/api/admin/ops")).body.queues[queue];
  t.notOk(limits, `and show as no limit: ${JSON.stringify(limits)}`);
  await stillServing(t);
});

t.test("8. size and depth: nothing refused leaves a record behind, every accepted job can die", async (t) => {
  const q8 = uniqueName("q8");
  const s8 = await startSupervisor(t, server.url, { queues: [q8], args: ["--min", "1", "--max", "1", "--handlers", COUNT_HANDLERS] });
  const records = async () => (await http<{ jobs: JobStatus[] }>(gw, "GET", `/api/jobs?queue=${q8}&limit=1000`)).body.jobs.length;
  // Just under the gateway's 1 MiB body limit: the job message would not fit.
  const nearLimit = { type: "echo", queue: q8, payload: { pad: "x".repeat(MiB - 150 - 40) } };
  const near = await http(gw, "POST", "/api/jobs", { body: nearLimit, timeoutMs: 15_000 });
  assertError(t, near, 413, "payload_too_large", "a body just under the limit");
  // Every size either is refused (413, nothing written) or its failing job reaches dead.
  for (const size of [MiB - 70 * 1024, MiB - 1200, MiB - 600]) {
    const reply = await requestJson<SubmitReply>(nc, api.jobsSubmit, { type: "fail", queue: q8, max_attempts: 1, payload: { pad: "x".repeat(size) } }, { timeoutMs: 15_000 });
    if (reply.errorCode) {
      t.equal(reply.errorCode, "413", `${size} bytes: refused with 413`);
      continue;
    }
    const result = await resultOf(nc, reply.body.job_id, 15_000);
    t.equal(result.state, "dead", `${size} bytes: accepted, and it reached dead`);
  }
  const deep = (n: number) => "[".repeat(n) + "]".repeat(n);
  const viaNats = await requestJson<ErrorReply>(nc, api.jobsSubmit, `{"type":"echo","queue":"${q8}","payload":${deep(5000)}}`, { raw: true });
  t.equal(viaNats.errorCode, "400", "NATS: a payload nested 5,000 deep is 400");
  assertError(t, await http(gw, "POST", "/api/jobs", { body: `{"type":"echo","queue":"${q8}","payload":${deep(4600)}}` }), 400, "validation_error", "HTTP: nested 4,600 deep");
  // A result the NATS server cannot take fails its attempt at once (it used to be retried until the lease, then rerun forever).
  const big = await http<SubmitReply>(gw, "POST", "/api/jobs", { body: { type: "count.run", queue: q8, max_attempts: 2, backoff: { type: "fixed", delay_ms: 0 }, payload: { result_bytes: MiB + 1024 } } });
  const bigResult = await resultOf(nc, big.body.job_id, 10_000);
  t.equal(bigResult.state, "dead", "a job whose result is over max_payload ends dead", { bigResult });
  t.equal(bigResult.error?.code, "result_too_large", "with the error result_too_large");
  t.equal(bigResult.attempts, 2, "each attempt failed once, none rerun after a lease");
  t.equal(await records(), [MiB - 70 * 1024, big].length, "the only records are the accepted jobs'");
  t.ok(s8.proc.running, "that supervisor still runs");
  await stillServing(t);
});

t.test("9. temp-file cleanup stays inside --temp-dir, symlinks included; a bad dir is a 400 at submit", async (t) => {
  const tenDaysAgo = new Date(Date.now() - 10 * 24 * 3600 * 1000);
  const victim = path.join(outside, "victim.txt");
  const victim2 = path.join(outside, "victim2.txt");
  const own = path.join(tempDir, "sub", "old.txt");
  await mkdir(path.dirname(own), { recursive: true });
  for (const f of [victim, victim2, own]) {
    await writeFile(f, "data");
    await utimes(f, tenDaysAgo, tenDaysAgo);
  }
  await symlink(outside, path.join(tempDir, "evil"));
  await symlink(victim2, path.join(tempDir, "link.txt"));
  const run = async (body: unknown) => {
    const res = await http<{ task_id: string }>(gw, "POST", `/api/system/maintenance/cleanup-temp-files?queue=${queue}`, { body });
    t.equal(res.status, 202, `submitted ${JSON.stringify(body)}`, { body: res.text });
    return resultOf(nc, res.body.task_id);
  };
  const viaSymlink = await run({ dir: "evil", max_age_hours: 1 });
  t.not(viaSymlink.state, "succeeded", "a dir that is a symlink out of the temp dir fails", { result: viaSymlink });
  const all = await run({ max_age_hours: 1 });
  t.equal(all.state, "succeeded", "the whole temp dir is cleaned", { result: all });
  await t.rejects(lstat(own), "the old file inside was removed");
  t.ok(await lstat(victim), "the file behind the symlinked dir is still there");
  t.ok(await lstat(victim2), "the file behind the symlinked file is still there");
  for (const dir of ["../x", "/etc", outside, "a/../../b", "a\u0000b"]) {
    assertError(t, await http(gw, "POST", `/api/system/maintenance/cleanup-temp-files?queue=${queue}`, { body: { dir } }), 400, "validation_error", `dir ${JSON.stringify(dir)}`);
  }
  await stillServing(t);
});

t.test("10. an injected envelope past the submit's limits is dropped, not retried forever", async (t) => {
  const job = envelope(queue, { type: "fail", max_attempts: 1e9, backoff: { type: "fixed", delay_ms: 0 } });
  await inject(jobSubject(job.job_id as string), JSON.stringify(job));
  await waitFor(() => droppedLogs("jobs stream").some((l) => String(l.reason).includes("max_attempts")), { timeoutMs: 5000, what: "the drop logged" });
  await new Promise((resolve) => setTimeout(resolve, 500));
  const attempts = supervisorLogs().filter((l) => l.job_id === job.job_id && l.msg === "job attempt failed");
  t.equal(attempts.length, 0, "it never ran");
  await stillServing(t);
});

t.test("11. spoofed heartbeats: wrong subject and oversized ones are ignored; a ghost cannot turn 422 into 503", async (t) => {
  const stored = await jsm.direct.getMessage("BOSUN_HEARTBEATS", { last_by_subj: heartbeatSubject(workerId) });
  const real = JSON.parse(new TextDecoder().decode(stored!.data)) as Record<string, unknown>;
  const ghostId = uniqueName("ghost");
  nc.publish(heartbeatSubject(uniqueName("elsewhere")), JSON.stringify({ ...real, worker_id: uniqueName("impostor"), heartbeat_ms: 60_000 }));
  nc.publish(heartbeatSubject(ghostId), JSON.stringify({ ...real, worker_id: ghostId, job_types: ["ghost_type"], queues: [queue], heartbeat_ms: 60_000 }));
  for (let i = 0; i < 2; i++) {
    const big = uniqueName("big");
    nc.publish(heartbeatSubject(big), JSON.stringify({ ...real, worker_id: big, hostname: "h".repeat(250), job_types: Array.from({ length: 2900 }, (_, j) => `t${j}${"y".repeat(190)}`) }));
  }
  await nc.flush();
  // (A well-formed ghost on its own subject is listed: only NATS permissions can stop that, issue 11.)
  await waitFor(async () => (await httpWorkers(gw)).some((w) => w.worker_id === ghostId), { timeoutMs: 3000, what: "the ghost listed" });
  const ids = (await httpWorkers(gw)).map((w) => w.worker_id);
  t.notOk(ids.some((id) => id.startsWith("impostor") || id.startsWith("big")), "impostors and oversized heartbeats are not listed", { ids });
  assertError(t, await http(gw, "POST", "/api/jobs", { body: { type: "ghost_type", queue } }), 422, "unknown_type", "a type only a ghost claims");
  await stillServing(t);
});

t.test("12. event streams and listings leave no JetStream consumer behind", async (t) => {
  const before = await readConsumers(nc);
  const done = await http<JobResult>(gw, "POST", "/api/jobs?wait_ms=5000", { body: { type: "echo", queue } });
  for (let i = 0; i < 10; i++) {
    const s = await SseStream.open(t, `${gw}/api/jobs/${done.body.job_id}/events`);
    await waitFor(() => s.endedAt !== undefined, { timeoutMs: 3000, what: "a finished job's stream to end" });
    t.equal((await http(gw, "GET", "/api/jobs?limit=5")).status, 200);
    t.equal((await http(gw, "GET", `/api/jobs?state=dead&limit=5`)).status, 200);
  }
  const running = await http<SubmitReply>(gw, "POST", "/api/jobs", { body: { type: "sleep", queue, payload: { ms: 1000 }, max_attempts: 1 } });
  const open = await SseStream.open(t, `${gw}/api/jobs/${running.body.job_id}/events`);
  open.close();
  await waitFor(async () => (await readConsumers(nc)) <= before, { timeoutMs: 5000, what: `consumers back to ${before}` });
  t.pass("no consumer left");
});

t.test("13. slow bodies time out with 408, HEAD on event streams answers, a finished job's stream ends at once", async (t) => {
  const slow = await Promise.all(
    Array.from({ length: 3 }, () =>
      rawHttp(gateway.port, request("POST", "/api/jobs", { "content-type": "application/json", "content-length": "100" }, '{"type":'), { timeoutMs: 8000 }),
    ),
  );
  for (const r of slow) {
    t.equal(r.status, 408, `a trickled body gets 408 (after ${r.elapsedMs} ms)`, { body: r.body });
    t.ok(contractError(r.body), "in the contract's shape", { body: r.body });
  }
  const finished = await http<JobResult>(gw, "POST", "/api/jobs?wait_ms=5000", { body: { type: "echo", queue } });
  for (const p of ["/api/platform/workers/stream", `/api/jobs/${finished.body.job_id}/events`]) {
    const head = await rawHttp(gateway.port, request("HEAD", p, { accept: "text/event-stream" }), { timeoutMs: 3000 });
    t.equal(head.status, 200, `HEAD ${p}: 200`, { head });
    t.ok(head.finished, `HEAD ${p}: the response ends`, { head });
  }
  const events = await SseStream.open(t, `${gw}/api/jobs/${finished.body.job_id}/events`);
  await waitFor(() => events.endedAt !== undefined, { timeoutMs: 2000, what: "the stream of a finished job to end" });
  t.same(
    events.events.map((e) => (e.data as { data: JobStatus }).data.state),
    ["succeeded"],
    "it showed the job succeeded, once",
  );
  await stillServing(t);
});

t.test("14. every error the gateway writes has the contract's shape; a NATS correlation id is bounded", async (t) => {
  const cases: [string, string, number][] = [
    ["unknown method", "FOO /api/jobs HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 400],
    ["bad Content-Length", request("POST", "/api/jobs", { "content-length": "abc" }), 400],
    ["headers too large", request("GET", "/healthz", { "x-big": "a".repeat(20_000) }), 431],
    ["a long id", request("GET", `/api/jobs/${"a".repeat(500)}`), 414],
    ["SSE refusing event-stream", request("GET", "/api/platform/workers/stream", { accept: "application/json" }), 406],
    ["a badly encoded URL", request("GET", "/api/jobs/%E0%A4%A"), 400],
    ["no Host", "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n", 400],
    ["unknown route", request("GET", "/nope"), 404],
    ["PROPFIND", request("PROPFIND", "/api/jobs"), 404],
  ];
  for (const [what, raw, status] of cases) {
    const r = await rawHttp(gateway.port, raw, { timeoutMs: 3000 });
    t.equal(r.status, status, `${what}: ${status}`, { body: r.body });
    t.ok(contractError(r.body), `${what}: the contract's error shape`, { body: r.body });
  }
  const long = "c".repeat(100_000);
  const submitted = await requestJson<SubmitReply>(nc, api.jobsSubmit, { type: "echo", queue }, { headers: { "x-correlation-id": long } });
  t.equal(submitted.errorCode, undefined);
  const status = await requestJson<JobStatus & { correlation_id: string }>(nc, api.jobsGet, { job_id: submitted.body.job_id });
  t.ok(status.body.correlation_id.length <= 128, `the stored correlation id is bounded (${status.body.correlation_id.length})`);
  await stillServing(t);
});

t.test("$SRV.PING, INFO and STATS replies validate against the official schemas; error replies count", async (t) => {
  const ajv = new Ajv({ strict: false });
  addFormats.default(ajv);
  const validator = async (name: string) => ajv.compile(JSON.parse(await readFile(fileURLToPath(new URL(`fixtures/nats-micro-v1/${name}.json`, import.meta.url)), "utf8")));
  const ours = async (verb: string) => {
    const replies = [];
    for await (const m of await nc.requestMany(`$SRV.${verb}.bosun`, "", { maxWait: 1000 })) replies.push(JSON.parse(new TextDecoder().decode(m.data)) as Record<string, unknown>);
    const reply = replies.find((r) => (r.metadata as Record<string, string> | undefined)?.worker_id === workerId);
    if (!reply) throw new Error(`no $SRV.${verb} reply from ${workerId}`);
    return reply;
  };
  // Endpoints with errors and without: last_error must be there either way.
  await requestJson(nc, api.jobsGet, { job_id: "not_there" });
  for (const [verb, schema] of [["PING", "ping_response"], ["INFO", "info_response"], ["STATS", "stats_response"]] as const) {
    const validate = await validator(schema);
    const reply = await ours(verb);
    t.ok(validate(reply), `$SRV.${verb} is a valid ${schema}`, { errors: validate.errors, reply });
  }
  const submitStats = async () => ((await ours("STATS")).endpoints as { name: string; num_requests: number; num_errors: number; last_error: string }[]).find((e) => e.name === "jobs_submit")!;
  await requestJson(nc, api.jobsSubmit, { queue });
  const before = await submitStats();
  t.ok(before.num_errors > 0, `error replies are counted (${before.num_errors} of ${before.num_requests})`);
  await requestJson(nc, api.jobsSubmit, { type: "no_such_type_here", queue });
  const after = await submitStats();
  t.equal(after.num_errors, before.num_errors + 1, "one more error reply, one more error");
  t.equal(after.num_requests, before.num_requests + 1, "and one more request");
  t.match(after.last_error, /^422:.*no_such_type_here/, "last_error names it");
});
