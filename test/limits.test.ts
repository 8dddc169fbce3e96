/**
 * Per-queue limits from the ops flags against a real nats-server, real
 * supervisors and a real gateway: max_concurrency held across three
 * supervisors and raised live, rate_limit over a sliding window, and
 * max_pending refusing submits over HTTP and NATS, and intake pacing while
 * every execution slot is busy.
 */
import t from "tap";
import { runCli, startGateway, startSupervisor } from "./helpers/bosun.js";
import { http, type ErrorReply } from "./helpers/http.js";
import { concurrency, time, type JobRecord } from "./helpers/records.js";
import { connectClient, requestJson } from "./helpers/nats-client.js";
import { NatsServer } from "./helpers/nats-server.js";
import { httpQueue, scrape, startMetricsSupervisor, type QueueStatus } from "./helpers/ops.js";
import { uniqueName, waitFor } from "./helpers/wait.js";
import { MAX_HOLD_MS, WINDOW as PACING_WINDOW } from "../src/supervisor/submit-pacer.js";

const server = await NatsServer.start(t);
const nc = await connectClient(t, server.url);
const gateway = await startGateway(t, server.url);
const gw = gateway.baseUrl;


const pool = (n: number) => ["--min", String(n), "--max", String(n), "--heartbeat-ms", "300"];

async function setQueue(queue: string, flags: Record<string, unknown>): Promise<void> {
  const reply = await requestJson(nc, "bosun.api.ops.set", { queues: { [queue]: flags } });
  if (reply.errorCode) throw new Error(`ops.set: ${reply.errorCode} ${JSON.stringify(reply.body)}`);
}

async function submitBatch(jobs: Record<string, unknown>[]): Promise<string[]> {
  const reply = await requestJson<{ jobs: { job_id?: string }[] }>(nc, "bosun.api.jobs.submit_batch", { jobs }, { timeoutMs: 30_000 });
  return reply.body.jobs.map((j) => {
    if (!j.job_id) throw new Error(`batch entry refused: ${JSON.stringify(j)}`);
    return j.job_id;
  });
}

const status = async (jobId: string): Promise<JobRecord> => (await requestJson<JobRecord>(nc, "bosun.api.jobs.get", { job_id: jobId })).body;
const statuses = (ids: string[]) => Promise.all(ids.map(status));


/** Supervisors serving the queue, all live in the queue status (so each has seen the others). */
async function servedBy(queue: string, n: number): Promise<void> {
  await waitFor(async () => ((await httpQueue(gw, queue))?.consumers.workers.length ?? 0) >= n, { timeoutMs: 15_000, what: `${n} supervisors serving ${queue}` });
}

t.test("max_concurrency 3 across 3 supervisors of pool 4 holds (a 4th joining too), and raised live to 8 takes effect within about a second", async (t) => {
  const queue = uniqueName("conc");
  const [{ metricsUrl }] = await Promise.all([
    startMetricsSupervisor(t, server.url, { queues: [queue], args: pool(4) }),
    ...[0, 1].map(() => startSupervisor(t, server.url, { queues: [queue], args: pool(4) })),
  ]);
  await setQueue(queue, { max_concurrency: 3 });
  await servedBy(queue, 3);
  const ids = await submitBatch(Array.from({ length: 200 }, () => ({ type: "sleep", queue, payload: { ms: 100 } })));
  const done = (n: number, what: string) => waitFor(async () => (await statuses(ids)).filter((j) => j.state === "succeeded").length >= n, { timeoutMs: 30_000, what });

  await done(20, "20 jobs done");
  const during = await httpQueue(gw, queue);
  t.match(during?.limits, { max_concurrency: 3 }, "queue status shows the limit");
  t.ok(during && during.use.running >= 1 && during.use.running <= 3, `queue status shows the use: ${JSON.stringify(during?.use)}`);
  const metrics = await scrape(metricsUrl);
  t.equal(metrics.value("bosun_queue_limit", { queue, limit: "max_concurrency" }), 3, "metrics: the limit");
  t.equal(metrics.value("bosun_queue_limit_share", { queue, limit: "max_concurrency" }), 1, "metrics: this supervisor's share (1 of 3)");
  t.ok(metrics.has("bosun_queue_limit_use"), "metrics: its use");
  // 200 jobs, 3 at a time, 20 done: most are still waiting, all in the normal band.
  t.ok(metrics.value("bosun_queue_pending", { queue, band: "n" }) > 100, "metrics: the pending jobs of its normal band");
  t.equal(metrics.value("bosun_queue_pending", { queue, band: "h" }), 0, "and none in the high band");
  // A newcomer takes nothing until the others have seen it and lowered their shares.
  await startSupervisor(t, server.url, { queues: [queue], args: pool(4) });
  await servedBy(queue, 4);
  const joinedAt = Date.now();
  // 100 more runs of 100 ms, 3 at a time: well past the newcomer's settling (a heartbeat period and a margin).
  await done(120, "120 jobs done");
  const raisedAt = Date.now();
  await setQueue(queue, { max_concurrency: 8 });
  const jobs = await waitFor(async () => {
    const all = await statuses(ids);
    return all.every((j) => j.state === "succeeded") && all;
  }, { timeoutMs: 60_000, what: "every job done" });
  const joinedRunners = new Set(jobs.filter((j) => time(j.started_at) > joinedAt + 1500 && time(j.started_at) < raisedAt).map((j) => j.owner?.worker_id));
  t.equal(joinedRunners.size, 3, `with 4 supervisors and a limit of 3, once settled, three have a share of 1 and one has none: ${[...joinedRunners].join(", ")} ran jobs over ${raisedAt - joinedAt - 1500} ms`);

  const timeline = concurrency(jobs);
  const before = timeline.filter(([at]) => at < raisedAt);
  const maxBefore = Math.max(...before.map(([, n]) => n));
  t.ok(maxBefore <= 3, `observed concurrency before the raise: at most ${maxBefore} (limit 3)`);
  t.ok(before.length >= 200, `the limit held over ${before.length / 2} runs`);
  const over3 = timeline.find(([at, n]) => at >= raisedAt && n > 3);
  t.ok(over3, "concurrency went above 3 after the raise");
  const tookMs = over3 ? over3[0] - raisedAt : Number.POSITIVE_INFINITY;
  t.ok(tookMs <= 1500, `the raised limit took effect ${tookMs} ms after the patch`);
  const maxAfter = Math.max(...timeline.map(([, n]) => n));
  t.ok(maxAfter <= 8, `observed concurrency after the raise: at most ${maxAfter} (limit 8)`);
  t.comment(`max concurrency before raise ${maxBefore}, after ${maxAfter}; raise took effect in ${tookMs} ms`);
});

t.test("rate_limit {max: 10, per_ms: 1000} across 2 supervisors: at most 10 starts in any 1 s window", async (t) => {
  const queue = uniqueName("rate");
  await Promise.all([0, 1].map(() => startSupervisor(t, server.url, { queues: [queue], args: pool(4) })));
  await setQueue(queue, { rate_limit: { max: 10, per_ms: 1000 } });
  await servedBy(queue, 2);
  const startedAt = Date.now();
  const ids = await submitBatch(Array.from({ length: 40 }, () => ({ type: "sleep", queue, payload: { ms: 5 } })));
  const jobs = await waitFor(async () => {
    const all = await statuses(ids);
    return all.every((j) => j.state === "succeeded") && all;
  }, { timeoutMs: 30_000, what: "every job done" });
  const starts = jobs.map((j) => time(j.started_at)).sort((a, b) => a - b);
  let worst = 0;
  for (let i = 0; i < starts.length; i++) worst = Math.max(worst, starts.filter((s) => s >= starts[i]! && s < starts[i]! + 1000).length);
  t.ok(worst <= 10, `at most ${worst} starts in any 1 s window (limit 10)`);
  const spanMs = starts.at(-1)! - startedAt;
  t.ok(spanMs >= 2500, `40 jobs took ${spanMs} ms to start (at 10 per second, at least 3 windows)`);
  t.comment(`max starts per 1 s window ${worst}; 40 starts over ${spanMs} ms`);
});

t.test("max_pending: submits beyond it answer 503 unavailable with Retry-After over HTTP and NATS, and nothing is stored for them", async (t) => {
  const queue = uniqueName("pend");
  await startSupervisor(t, server.url, { queues: [queue], args: pool(1) });
  await servedBy(queue, 1);
  // Nothing runs: what is submitted stays pending.
  await setQueue(queue, { max_concurrency: 0, max_pending: 5 });
  await submitBatch(Array.from({ length: 5 }, () => ({ type: "sleep", queue, payload: { ms: 1 } })));
  await waitFor(async () => (await httpQueue(gw, queue))?.pending === 5, { what: "5 pending" });
  const refused = await waitFor(async () => {
    const res = await http<ErrorReply>(gw, "POST", "/api/jobs", { body: { type: "sleep", queue, payload: { ms: 1 } } });
    return res.status === 503 && res;
  }, { timeoutMs: 3000, what: "a refused submit" });
  t.equal(refused.body.error?.code, "unavailable", "HTTP: code unavailable");
  t.equal(refused.headers.get("retry-after"), "1", "HTTP: with Retry-After");
  t.match(refused.body.error?.message, /max_pending/, `HTTP: the message says why: ${refused.body.error?.message}`);
  const overNats = await requestJson<ErrorReply>(nc, "bosun.api.jobs.submit", { type: "sleep", queue, payload: { ms: 1 } });
  t.equal(overNats.errorCode, "503", "NATS: 503");
  t.equal(overNats.body.error?.code, "unavailable", "NATS: code unavailable");
  t.equal(overNats.msg.headers?.get("Retry-After"), "1", "NATS: with a Retry-After header");
  const batch = await requestJson<ErrorReply>(nc, "bosun.api.jobs.submit_batch", { jobs: [{ type: "sleep", queue, payload: { ms: 1 } }] });
  t.equal(batch.errorCode, "503", "a batch that would exceed it is refused whole");
  const listed = await http<{ jobs: unknown[] }>(gw, "GET", `/api/jobs?queue=${queue}&limit=100`);
  t.equal(listed.body.jobs.length, 5, "only the 5 accepted jobs are stored");
  t.equal((await httpQueue(gw, queue))?.pending, 5, "and pending is still 5");

  // Cleared (through the CLI): accepted again, and the held jobs run once max_concurrency is cleared too.
  const cli = await runCli(["ops", "set", `${queue}.max_pending=null`, `${queue}.max_concurrency=null`, `${queue}.rate_limit=null`, "--nats", server.url]);
  t.equal(cli.code, 0, "bosun ops set QUEUE.max_pending=null ... exits 0", { stderr: cli.stderr });
  const badCli = await runCli(["ops", "set", `${queue}.max_concurrency=lots`, "--nats", server.url]);
  t.equal(badCli.code, 2, "an unreadable limit is a usage error");
  const accepted = await waitFor(async () => {
    const res = await http(gw, "POST", "/api/jobs", { body: { type: "sleep", queue, payload: { ms: 1 } } });
    return res.status === 202 && res;
  }, { timeoutMs: 3000, what: "submits accepted again" });
  t.equal(accepted.status, 202);
  const after: QueueStatus | undefined = await waitFor(async () => {
    const q = await httpQueue(gw, queue);
    return q?.pending === 0 && q.running === 0 && q;
  }, { timeoutMs: 10_000, what: "the queue drained" });
  t.same(after.limits, {}, "no limits left in the queue status");
});

t.test("intake pacing: with every execution slot busy, submits beyond the window wait for a run to end (at most 500 ms); with a free slot none does", async (t) => {
  const queue = uniqueName("pace");
  const { metricsUrl } = await startMetricsSupervisor(t, server.url, { queues: [queue], args: pool(1) });
  await servedBy(queue, 1);
  const held = async () => (await scrape(metricsUrl)).value("bosun_submits_held_total");
  const submit = async (ms: number) => {
    const t0 = Date.now();
    const reply = await requestJson<{ job_id: string }>(nc, "bosun.api.jobs.submit", { type: "sleep", queue, payload: { ms } });
    if (reply.errorCode) throw new Error(`submit: ${reply.errorCode} ${JSON.stringify(reply.body)}`);
    return { jobId: reply.body.job_id, tookMs: Date.now() - t0 };
  };
  const finished = (jobId: string) => waitFor(async () => (await status(jobId)).state === "succeeded", { timeoutMs: 15_000, what: `job ${jobId} to succeed` });

  // A run of 100 ms first: with runs that long nothing is pulled ahead, so one running job fills the pool.
  const idle = await submit(100);
  t.equal(await held(), 0, "a submit to an idle pool is not held");
  await finished(idle.jobId);

  const long = await submit(2500);
  await waitFor(async () => (await status(long.jobId)).state === "running", { what: "the long job running" });
  // One burst: a spell ends once no submit has seen the pool full for 50 ms, so a submit sent only
  // after the window's replies came back could start a new spell when those replies took that long.
  const burst = await Promise.all(Array.from({ length: PACING_WINDOW + 1 }, () => submit(1)));
  const paced = burst.reduce((slowest, s) => (s.tookMs > slowest.tookMs ? s : slowest));
  const windowed = burst.filter((s) => s !== paced);
  t.equal(await held(), 1, `with the only slot busy, the spell's first ${PACING_WINDOW} submits went on, the next one was held`);
  t.ok(paced.tookMs >= MAX_HOLD_MS - 50, `and went ahead after the hold, no run having ended (${paced.tookMs} ms)`);
  t.ok(paced.tookMs < 2400, `before the long job ended: a hold is bounded (${paced.tookMs} ms)`);
  await finished(long.jobId);
  for (const job of [...windowed, paced]) await finished(job.jobId);
  t.equal((await status(paced.jobId)).attempts, 1, "the held job was accepted once and ran once");
});

t.test("a queue at its max_concurrency does not hold back another queue of the same supervisor (even a lower band)", async (t) => {
  const [capped, other] = [uniqueName("capped"), uniqueName("other")];
  await startSupervisor(t, server.url, { queues: [capped, other], args: pool(3) });
  await setQueue(capped, { max_concurrency: 1 });
  await servedBy(capped, 1);
  const backlog = await submitBatch(Array.from({ length: 10 }, () => ({ type: "sleep", queue: capped, priority: 10, payload: { ms: 300 } })));
  await waitFor(async () => (await status(backlog[0]!)).state !== "queued", { what: "the capped queue running" });
  const others = await submitBatch(Array.from({ length: 6 }, () => ({ type: "sleep", queue: other, priority: -10, payload: { ms: 10 } })));
  const done = await waitFor(async () => {
    const all = await statuses(others);
    return all.every((j) => j.state === "succeeded") && all;
  }, { timeoutMs: 10_000, what: "the other queue's jobs done" });
  const lastOther = Math.max(...done.map((j) => time(j.finished_at)));
  const capJobs = await statuses(backlog);
  const capDoneBefore = capJobs.filter((j) => j.finished_at && time(j.finished_at) <= lastOther).length;
  t.ok(capDoneBefore <= 4, `the other queue's 6 low-priority jobs finished while the capped queue ran ${capDoneBefore} of its 10 high ones`);
  const timeline = concurrency(capJobs.filter((j) => j.started_at && j.finished_at));
  t.ok(Math.max(...timeline.map(([, n]) => n)) <= 1, "the capped queue never ran two at once");
});

t.test("a supervisor stopping with a job still running holds its place in max_concurrency until that job ends", async (t) => {
  const queue = uniqueName("leave");
  const [idA, idB] = [uniqueName("wa"), uniqueName("wb")];
  // A grace period longer than the jobs: the leaver finishes its job rather than have it killed and run again.
  const [a] = await Promise.all([idA, idB].map((workerId) => startSupervisor(t, server.url, { queues: [queue], workerId, args: [...pool(2), "--grace-ms", "10000"] })));
  await setQueue(queue, { max_concurrency: 2 });
  await servedBy(queue, 2);
  // Runs far longer than the others take to raise their shares once the leaver is gone (a heartbeat period and a margin).
  const ids = await submitBatch(Array.from({ length: 6 }, () => ({ type: "sleep", queue, payload: { ms: 2500 } })));
  await waitFor(async () => {
    const owners = (await statuses(ids)).filter((j) => j.state === "running").map((j) => j.owner?.worker_id);
    return owners.includes(idA) && owners.includes(idB);
  }, { timeoutMs: 15_000, what: "a job running on each supervisor" });
  const stoppedAt = Date.now();
  const exit = a!.stop();
  const jobs = await waitFor(async () => {
    const all = await statuses(ids);
    return all.every((j) => j.state === "succeeded") && all;
  }, { timeoutMs: 30_000, what: "every job done" });
  t.match(await exit, { code: 0 }, "the stopped supervisor exited 0");
  t.ok(jobs.some((j) => j.owner?.worker_id === idA && time(j.finished_at) > stoppedAt + 300), "after finishing the job it had when stopped");
  const timeline = concurrency(jobs);
  const worst = Math.max(...timeline.map(([, n]) => n));
  t.ok(worst <= 2, `observed concurrency at most ${worst} (limit 2), the leaver's last job included`);
  t.ok(jobs.some((j) => j.owner?.worker_id === idB && time(j.started_at) > stoppedAt), "the other supervisor took over the queue");
  t.ok(jobs.every((j) => j.attempts === 1), "no job was killed and run again");
});
