/**
 * The job lifecycle with real processes: retries and their backoff timing,
 * dead letters (list and retry), delayed jobs (also across a restart of
 * every supervisor and of nats-server), idempotency keys raced on two
 * supervisors, cancellation in every state, graceful drain, and supervision
 * backing off a crashing pool. Each test ends with exact counts taken from
 * the run log the counting handlers write.
 */
import { writeFile } from "node:fs/promises";
import t from "tap";
import { deadSubject, defaultLaneConsumer } from "./helpers/subjects.js";
import { createInbox, type Msg } from "@nats-io/nats-core";
import { jetstreamManager } from "@nats-io/jetstream";
import { startGateway, startSupervisor, type BosunSupervisor } from "./helpers/bosun.js";
import { http, type JobResult, type JobStatus } from "./helpers/http.js";
import { connectClient, requestJson } from "./helpers/nats-client.js";
import { NatsServer } from "./helpers/nats-server.js";
import { isAlive, uniqueName, waitFor } from "./helpers/wait.js";
import {
  connectResilient,
  describeRuns,
  finalResults,
  processStartEpoch,
  RecordWatch,
  RunLog,
  secs,
  startCountingSupervisor,
  statusOf,
  submit,
  submitAll,
  SubmitError,
  waitForResults,
  waitQuiet,
  type Submitted,
} from "./helpers/faults.js";

/** How late a delayed job may start after everything restarted (see its test). */
const RESTART_SLACK_MS = 6000;

const server = await NatsServer.start(t);
const nc = await connectClient(t, server.url);
const gateway = await startGateway(t, server.url, { args: ["--request-timeout-ms", "10000"] });
const gw = gateway.baseUrl;
const decoder = new TextDecoder();

interface DeadLetter {
  job: { job_id: string; errors: { code: string; message: string }[]; max_attempts: number };
  record: JobStatus;
}

async function deadLetterOf(_queue: string, jobId: string): Promise<DeadLetter | null> {
  const jsm = await jetstreamManager(nc);
  const msg = await jsm.direct.getMessage("BOSUN_DEAD", { last_by_subj: deadSubject(jobId) });
  return msg ? (JSON.parse(decoder.decode(msg.data)) as DeadLetter) : null;
}

/** Epoch ms of a supervisor's pino log line. */
const logTime = (line: Record<string, unknown>): number => Date.parse(String(line.time));

t.test("retries: an always-failing job is dead after exactly max_attempts, its attempts spaced by the backoff", async (t) => {
  const runs = await RunLog.create(t);
  const queue = uniqueName("retry");
  await startCountingSupervisor(t, server.url, runs, {
    queues: [queue],
    args: ["--min", "2", "--max", "4", "--default-max-attempts", "3", "--default-backoff-ms", "250", "--default-max-backoff-ms", "10000"],
  });

  // expected[k] = delay before attempt k+2; jitter = the spread allowed around it.
  const cases = [
    { name: "exponential, capped, no jitter", body: { max_attempts: 5, backoff: { type: "exponential", delay_ms: 300, max_delay_ms: 700, jitter: 0 } }, expected: [300, 600, 700, 700], jitter: 0 },
    { name: "fixed", body: { max_attempts: 3, backoff: { type: "fixed", delay_ms: 500 } }, expected: [500, 500], jitter: 0 },
    { name: "exponential, default jitter ±20%", body: { max_attempts: 4, backoff: { type: "exponential", delay_ms: 300 } }, expected: [300, 600, 1200], jitter: 0.2 },
    { name: "per-type defaults (count.typed: 2 attempts, fixed 400 ms)", type: "count.typed", body: {}, expected: [400], jitter: 0 },
    { name: "global defaults (--default-max-attempts 3, --default-backoff-ms 250)", body: {}, expected: [250, 500], jitter: 0.2 },
  ];
  const started = Date.now();
  const jobs = await Promise.all(
    cases.map((c, i) => submit(nc, { type: c.type ?? "count.run", queue, payload: { fail: true, tag: `r${i}` }, ...c.body })),
  );
  const ids = jobs.map((j) => j.job_id);
  const results = await waitForResults(nc, ids, { timeoutMs: 60_000, what: "the failing jobs to go dead" });
  await waitQuiet(nc, queue, 30_000);
  await runs.refresh();

  // Lateness: how much longer than its backoff delay each gap was (the tolerance is one second).
  const toleranceMs = 1000;
  let badGaps = 0;
  let worstLateness = 0;
  for (const [i, c] of cases.entries()) {
    const id = ids[i]!;
    const maxAttempts = c.expected.length + 1;
    const result = results.get(id)!;
    const starts = runs.starts(id);
    const ends = runs.ends(id);
    t.match(result, { state: "dead", attempts: maxAttempts, error: { code: "handler_error" } }, `${c.name}: dead after ${maxAttempts} attempts`);
    t.same(starts.map((s) => s.attempt), Array.from({ length: maxAttempts }, (_, k) => k + 1), `${c.name}: ran exactly attempts 1..${maxAttempts}, once each`);
    const gaps = c.expected.map((_, k) => starts[k + 1]!.t - ends[k]!.t);
    for (const [k, gap] of gaps.entries()) {
      const want = c.expected[k]!;
      const low = want * (1 - c.jitter) - 20;
      const high = want * (1 + c.jitter) + toleranceMs;
      worstLateness = Math.max(worstLateness, gap - want * (1 + c.jitter));
      if (gap < low || gap > high) badGaps++;
    }
    t.comment(`${c.name}: gaps ${gaps.join(", ")} ms for backoff ${c.expected.join(", ")} ms${c.jitter ? ` (±${c.jitter * 100}%)` : ""}`);

    const letter = await deadLetterOf(queue, id);
    t.ok(letter, `${c.name}: kept in the dead-letter stream`);
    t.same(
      letter?.job.errors.map((e) => e.message),
      Array.from({ length: maxAttempts }, (_, k) => `attempt ${k + 1} failed on purpose`),
      `${c.name}: the dead letter holds every attempt's error, in order`,
    );
    t.equal(letter?.record.state, "dead");
  }
  const figures = describeRuns(runs, ids);
  const wantRuns = cases.reduce((n, c) => n + c.expected.length + 1, 0);
  t.comment(`jobs: ${cases.length}; runs: ${figures.runs}; worst gap past its backoff: ${worstLateness} ms; all dead in ${secs(Date.now() - started)}`);
  t.equal(badGaps, 0, `every gap between attempts matches its backoff (within -20 ms / +${toleranceMs} ms)`);
  t.equal(figures.runs, wantRuns, `exactly ${wantRuns} runs in all`);
  t.equal([...results.values()].filter((r) => r.state === "dead").length, cases.length, `exactly ${cases.length} dead jobs`);
});

t.test("per-type defaults apply whichever supervisor takes the submit", async (t) => {
  const runs = await RunLog.create(t);
  const queue = uniqueName("typed");
  // One supervisor serves the counting handlers on the queue; another (built-ins only, another
  // queue) also answers submits, as every supervisor serves the whole NATS API.
  await startCountingSupervisor(t, server.url, runs, { queues: [queue], workerId: uniqueName("wt"), args: ["--min", "1", "--max", "2"] });
  await startSupervisor(t, server.url, { queues: [uniqueName("plain")], workerId: uniqueName("wp"), args: ["--min", "1", "--max", "1", "--default-max-attempts", "5"] });

  const n = 20;
  const submitted = await submitAll(nc, Array.from({ length: n }, (_, i) => ({ type: "count.typed", queue, payload: { n: i, tag: `ty${i}` } })));
  const ids = submitted.map((s) => s.job_id);
  const results = await waitForResults(nc, ids, { timeoutMs: 30_000, what: "the typed jobs" });
  await waitQuiet(nc, queue, 30_000);
  await runs.refresh();
  t.equal([...results.values()].filter((r) => r.state === "succeeded").length, n, `all ${n} succeeded`);
  t.equal(describeRuns(runs, ids).runs, n, `exactly ${n} runs`);
  const statuses = await Promise.all(ids.map((id) => statusOf(nc, id)));
  const withHandlerDefault = statuses.filter((s) => s.max_attempts === 2).length;
  t.comment(`jobs: ${n}; with the handler's max_attempts (2): ${withHandlerDefault}; with another supervisor's default: ${n - withHandlerDefault}`);
  t.equal(withHandlerDefault, n, "every job got count.typed's own max_attempts", {
  });
});

t.test("dead letters: listed by state and queue over HTTP and NATS, retried with fresh attempts", async (t) => {
  const runs = await RunLog.create(t);
  const queue = uniqueName("dead");
  const otherQueue = uniqueName("deadother");
  await startCountingSupervisor(t, server.url, runs, { queues: [queue, otherQueue], args: ["--min", "1", "--max", "3"] });

  const marker = runs.sibling("let-them-pass");
  const failing = { type: "count.run", queue, max_attempts: 2, backoff: { type: "fixed", delay_ms: 100 } };
  const dead = await submitAll(nc, [0, 1, 2].map((i) => ({ ...failing, payload: { n: i, tag: `d${i}`, fail_unless: marker } })));
  const ok = await submitAll(nc, [3, 4].map((i) => ({ type: "count.run", queue, payload: { n: i, tag: `d${i}` } })));
  const elsewhere = await submit(nc, { ...failing, queue: otherQueue, payload: { tag: "other", fail: true } });
  const deadIds = dead.map((j) => j.job_id);
  const all = [...deadIds, ...ok.map((j) => j.job_id), elsewhere.job_id];
  await waitForResults(nc, all, { timeoutMs: 60_000, what: "the jobs to finish" });
  await waitQuiet(nc, queue, 30_000);

  const listed = await http<{ jobs: JobStatus[] }>(gw, "GET", `/api/jobs?state=dead&queue=${queue}`);
  t.equal(listed.status, 200, "GET /api/jobs?state=dead&queue= answers 200", { body: listed.text });
  t.same(listed.body.jobs.map((j) => j.job_id).sort(), [...deadIds].sort(), "exactly this queue's 3 dead jobs are listed");
  t.ok(listed.body.jobs.every((j) => j.state === "dead" && j.attempts === 2 && j.queue === queue), "listed as dead after 2 attempts");
  const overNats = await requestJson<{ jobs: JobStatus[] }>(nc, "bosun.api.jobs.list", { state: "dead", queue });
  t.equal(overNats.errorCode, undefined);
  t.same(overNats.body.jobs.map((j) => j.job_id).sort(), [...deadIds].sort(), "bosun.api.jobs.list lists the same 3");

  // Retry two (HTTP and NATS) now that they can pass; the third stays dead.
  await writeFile(marker, "");
  const httpRetry = await http<Submitted>(gw, "POST", `/api/jobs/${deadIds[0]}/retry`);
  t.equal(httpRetry.status, 202, "POST /api/jobs/{id}/retry answers 202", { body: httpRetry.text });
  t.equal(httpRetry.body.state, "queued");
  const natsRetry = await requestJson<Submitted>(nc, "bosun.api.jobs.retry", { job_id: deadIds[1] });
  t.equal(natsRetry.errorCode, undefined, "bosun.api.jobs.retry answers without error");
  t.equal(natsRetry.body.state, "queued");

  const retried = await waitForResults(nc, deadIds.slice(0, 2), { timeoutMs: 30_000, what: "the retried jobs" });
  for (const id of deadIds.slice(0, 2)) {
    t.match(retried.get(id), { state: "succeeded", attempts: 1, result: { tag: expectTag(id) } }, "a retried job runs with fresh attempts and succeeds");
  }
  await waitQuiet(nc, queue, 30_000);

  // A job that is not dead cannot be retried; an unknown one is 404.
  const notDead = await http<{ error: { code: string } }>(gw, "POST", `/api/jobs/${ok[0]!.job_id}/retry`);
  t.equal(notDead.status, 409, "retrying a succeeded job is 409");
  t.equal(notDead.body.error.code, "conflict");
  const unknown = await http(gw, "POST", "/api/jobs/no_such_job/retry");
  t.equal(unknown.status, 404, "retrying an unknown job is 404");

  await runs.refresh();
  const figures = describeRuns(runs, all);
  t.comment(`jobs: ${all.length}; dead: ${deadIds.length + 1}; retried: 2; runs: ${figures.runs}`);
  t.equal(figures.runs, 3 * 2 + 2 + 2 + 2, "exactly 12 runs: 2 per failing job, 1 per retry, 1 per passing job");
  const stillDead = await http<{ jobs: JobStatus[] }>(gw, "GET", `/api/jobs?state=dead&queue=${queue}`);
  t.same(stillDead.body.jobs.map((j) => j.job_id), [deadIds[2]], "after the retries only the one left dead is listed as dead", {
    listed: stillDead.body.jobs.map((j) => ({ job_id: j.job_id, state: j.state })),
  });

  function expectTag(id: string): string {
    return `d${deadIds.indexOf(id)}`;
  }
});

t.test("a dead job retried again and again dies again each time, and each death can be retried", async (t) => {
  const queue = uniqueName("redead");
  await startSupervisor(t, server.url, { queues: [queue], args: ["--min", "1", "--max", "1"] });
  // It fails at once, so its new run often dies while the retry is still tidying up the old death.
  const first = await requestJson<{ job_id: string }>(nc, "bosun.api.jobs.submit", { type: "fail", queue, payload: { message: "always" }, max_attempts: 1 });
  const jobId = first.body.job_id;
  const deadAgain = async (what: string) => {
    const letter = await waitFor(async () => {
      const s = await requestJson<JobStatus>(nc, "bosun.api.jobs.get", { job_id: jobId });
      return s.body.state === "dead" ? deadLetterOf(queue, jobId) : undefined;
    }, { timeoutMs: 15_000, intervalMs: 10, what });
    return letter;
  };
  let letter = await deadAgain("the first death");
  for (let round = 1; round <= 8; round++) {
    const retried = await requestJson<{ state: string }>(nc, "bosun.api.jobs.retry", { job_id: jobId });
    t.equal(retried.errorCode, undefined, `retry ${round} accepted`, { body: retried.body });
    letter = await deadAgain(`death ${round + 1}`);
    t.ok(letter, `death ${round + 1} has its dead letter, so it can be retried`);
  }
  t.equal((letter?.job as { generation?: number } | undefined)?.generation, 8, "the last dead letter is from the 8th retry");
});


t.test("delayed jobs: scheduled, queued within a second of the due time, and the delay uses no attempt", async (t) => {
  const runs = await RunLog.create(t);
  const queue = uniqueName("delay");
  await startCountingSupervisor(t, server.url, runs, { queues: [queue], args: ["--min", "2", "--max", "4"] });
  const records = await RecordWatch.start(nc, t);

  const n = 20;
  const delays = Array.from({ length: n }, (_, i) => 800 + i * 100);
  const byDelay = await submitAll(nc, delays.map((d, i) => ({ type: "count.run", queue, payload: { n: i, tag: `dl${i}` }, delay_ms: d, max_attempts: 1 })));
  const runAt = new Date(Date.now() + 2000).toISOString();
  const byRunAt = await submit(nc, { type: "count.run", queue, payload: { n: 99, tag: "runat" }, run_at: runAt, max_attempts: 1 });
  // A delayed job that fails gets all its attempts: the delay is not one of them.
  const failing = await submit(nc, { type: "count.run", queue, payload: { fail: true, tag: "dfail" }, delay_ms: 1000, max_attempts: 2, backoff: { type: "fixed", delay_ms: 100 } });

  t.ok([...byDelay, byRunAt, failing].every((s) => s.state === "scheduled"), "every delayed submit answers state scheduled");
  const status = await statusOf(nc, byRunAt.job_id);
  t.equal(status.state, "scheduled", "status says scheduled before the due time");

  const ids = [...byDelay.map((s) => s.job_id), byRunAt.job_id, failing.job_id];
  const results = await waitForResults(nc, ids, { timeoutMs: 60_000, what: "the delayed jobs" });
  await waitQuiet(nc, queue, 30_000);
  await runs.refresh();

  // Due time = created_at + delay_ms (or run_at); lateness = when the test saw its record turn
  // queued after that (so it includes the watch's own delivery time).
  const dueOf = new Map<string, number>();
  for (const [i, s] of byDelay.entries()) dueOf.set(s.job_id, Date.parse((await statusOf(nc, s.job_id)).created_at) + delays[i]!);
  dueOf.set(byRunAt.job_id, Date.parse(runAt));
  let early = 0;
  let late = 0;
  let worst = 0;
  for (const [id, due] of dueOf) {
    const queued = records.writes.get(id)?.find((w) => w.record.state === "queued");
    const start = runs.starts(id)[0];
    if (!queued || !start) {
      late++;
      continue;
    }
    const lateness = queued.at - due;
    worst = Math.max(worst, lateness);
    if (lateness < -5 || start.t < due - 5) early++;
    if (lateness > 1000) late++;
  }
  const figures = describeRuns(runs, ids);
  t.comment(`delayed jobs: ${dueOf.size}; queued at most ${worst} ms after their due time; runs: ${figures.runs}`);
  t.equal(early, 0, "no delayed job was queued or started before its due time");
  t.equal(late, 0, "every delayed job was queued within a second of its due time");
  t.equal([...dueOf.keys()].filter((id) => results.get(id)?.state === "succeeded" && results.get(id)?.attempts === 1).length, n + 1, `all ${n + 1} succeeded on attempt 1 (max_attempts 1)`);
  t.match(results.get(failing.job_id), { state: "dead", attempts: 2 }, "the failing delayed job used both its attempts");
  t.same(runs.starts(failing.job_id).map((s) => s.attempt), [1, 2], "and ran attempts 1 and 2");
  t.equal(figures.runs, n + 1 + 2, `exactly ${n + 3} runs`);
});

t.test("delayed jobs survive a restart of every supervisor and of nats-server", async (t) => {
  const own = await NatsServer.start(t);
  const client = await connectResilient(t, own.url);
  const runs = await RunLog.create(t);
  const queue = uniqueName("survive");
  const first = await Promise.all(["wa", "wb"].map((p) => startCountingSupervisor(t, own.url, runs, { queues: [queue], workerId: uniqueName(p) })));

  const n = 20;
  const delays = Array.from({ length: n }, (_, i) => 5000 + i * 100);
  const submitted = await submitAll(client, delays.map((d, i) => ({ type: "count.run", queue, payload: { n: i, tag: `sv${i}` }, delay_ms: d, max_attempts: 1 })));
  const ids = submitted.map((s) => s.job_id);
  t.ok(submitted.every((s) => s.state === "scheduled"), `${n} jobs scheduled`);
  const created = new Map<string, number>();
  for (const id of ids) created.set(id, Date.parse((await statusOf(client, id)).created_at));

  // Everything goes down: one supervisor SIGKILLed, the other stopped, then nats-server SIGKILLed.
  const downAt = Date.now();
  await first[0]!.kill();
  const stopped = await first[1]!.stop();
  t.equal(stopped.code, 0, "the stopped supervisor exited 0");
  await own.kill();
  await own.restart();
  const later = await startCountingSupervisor(t, own.url, runs, { queues: [queue], workerId: uniqueName("wc") });
  const backAt = Date.now();
  await runs.refresh();
  t.equal(runs.startCount, 0, `nothing ran while everything was down (${secs(backAt - downAt)})`);

  const results = await waitForResults(client, ids, { timeoutMs: 60_000, what: "the delayed jobs after the restart" });
  await waitQuiet(client, queue, 30_000);
  await runs.refresh();
  const figures = describeRuns(runs, ids);
  let early = 0;
  let late = 0;
  let worstMs = 0;
  for (const [i, id] of ids.entries()) {
    const start = runs.starts(id)[0];
    const due = created.get(id)! + delays[i]!;
    if (!start || start.t < due - 5) early++;
    else {
      worstMs = Math.max(worstMs, start.t - Math.max(due, backAt));
      // After a restart of nats-server the first pulls wait for JetStream to recover its streams,
      // which takes seconds on a loaded 2-core machine; a lost job would be far later (or never).
      if (start.t > Math.max(due, backAt) + RESTART_SLACK_MS) late++;
    }
  }
  t.comment(`latest start after its due time (or the restart): ${worstMs} ms`);
  t.comment(`delayed jobs: ${n}; down for ${secs(backAt - downAt)}; succeeded: ${[...results.values()].filter((r) => r.state === "succeeded").length}; runs: ${figures.runs}; ran twice: ${figures.ranTwice}`);
  t.equal([...results.values()].filter((r) => r.state === "succeeded" && r.attempts === 1).length, n, `all ${n} succeeded on their first attempt`);
  t.equal(early, 0, "none ran before its due time");
  t.equal(late, 0, `each ran within ${RESTART_SLACK_MS / 1000} s of its due time (or the restart)`);
  t.ok(runs.starts(ids[0]!)[0]!.ppid === later.pid, "the new supervisor ran them");
  t.equal(figures.runs, n, `exactly ${n} runs`);
});

t.test("idempotency: 200 concurrent submits with 20 keys on two supervisors make exactly 20 jobs and 20 runs", async (t) => {
  const runs = await RunLog.create(t);
  const queue = uniqueName("idem");
  const workers = [uniqueName("wa"), uniqueName("wb")];
  await Promise.all(workers.map((workerId) => startCountingSupervisor(t, server.url, runs, { queues: [queue], workerId, args: ["--min", "2", "--max", "4"] })));
  const statsBefore = await submitRequests(workers);

  const n = 200;
  const keys = 20;
  const bodies = Array.from({ length: n }, (_, i) => {
    const k = i % keys;
    return { type: "count.run", queue, tenant: "acme", idempotency_key: `order-${k}`, payload: { n: k, tag: `key${k}`, ms: 50 } };
  });
  const started = Date.now();
  let unavailable = 0;
  // All at once; a 503 ("still being accepted, retry shortly") is retried as its Retry-After says.
  const replies = await Promise.all(
    bodies.map((body) =>
      waitFor(
        async () => {
          try {
            return await submit(nc, body);
          } catch (err) {
            if (err instanceof SubmitError && err.code === "503") {
              unavailable++;
              return undefined;
            }
            throw err;
          }
        },
        { timeoutMs: 30_000, intervalMs: 100, what: "an idempotent submit to be answered" },
      ),
    ),
  );
  const idsByKey = new Map<string, Set<string>>();
  replies.forEach((r, i) => {
    const key = bodies[i]!.idempotency_key;
    idsByKey.set(key, (idsByKey.get(key) ?? new Set()).add(r.job_id));
  });
  const ids = [...new Set(replies.map((r) => r.job_id))];
  const statsAfter = await submitRequests(workers);
  const perWorker = workers.map((w) => (statsAfter.get(w) ?? 0) - (statsBefore.get(w) ?? 0));

  const results = await waitForResults(nc, ids, { timeoutMs: 60_000, what: "the idempotent jobs" });
  await waitQuiet(nc, queue, 30_000);
  await runs.refresh();
  const figures = describeRuns(runs, ids);
  const listed = await requestJson<{ jobs: JobStatus[] }>(nc, "bosun.api.jobs.list", { queue, limit: 1000 });
  const runsPerTag = new Map<string, number>();
  for (const e of runs.events) if (e.ev === "start") runsPerTag.set(String(e.tag), (runsPerTag.get(String(e.tag)) ?? 0) + 1);

  t.comment(
    `submits: ${n} (${perWorker.join(" + ")} per supervisor, ${unavailable} answered 503 and retried); keys: ${keys}; ` +
      `jobs: ${ids.length}; runs: ${figures.runs}; ran twice: ${figures.ranTwice}; done in ${secs(Date.now() - started)}`,
  );
  t.ok(perWorker.every((c) => c > 0), "both supervisors took submits");
  t.ok([...idsByKey.values()].every((s) => s.size === 1), "every submit of a key got the same job id");
  t.equal(ids.length, keys, `exactly ${keys} jobs`);
  t.equal(listed.body.jobs.length, keys, `exactly ${keys} job records in the queue`);
  t.equal(figures.runs, keys, `exactly ${keys} runs`);
  t.equal(figures.ranTwice, 0, "no job ran twice");
  t.equal([...runsPerTag.values()].filter((c) => c === 1).length, keys, "each key's work ran exactly once");
  t.ok([...results.values()].every((r) => r.state === "succeeded"), "all succeeded");

  // A submit whose reply was lost, retried by the client with the same key: still one job.
  const lostBody = { type: "count.run", queue, tenant: "acme", idempotency_key: "lost-reply", payload: { n: 7, tag: "lost" } };
  nc.publish("bosun.api.jobs.submit", JSON.stringify(lostBody), { reply: createInbox() });
  const retriedReply = await waitFor(
    async () => {
      try {
        return await submit(nc, lostBody);
      } catch (err) {
        if (err instanceof SubmitError && err.code === "503") return undefined;
        throw err;
      }
    },
    { timeoutMs: 30_000, intervalMs: 100, what: "the retried submit" },
  );
  const lostResult = (await waitForResults(nc, [retriedReply.job_id], { timeoutMs: 30_000 })).get(retriedReply.job_id)!;
  const again = await submit(nc, { ...lostBody, wait_ms: 5000 });
  // The same key under another tenant is another job.
  const otherTenant = await submit(nc, { ...lostBody, tenant: "globex" });
  await waitForResults(nc, [otherTenant.job_id], { timeoutMs: 30_000 });
  await waitQuiet(nc, queue, 30_000);
  await runs.refresh();
  const lostRuns = runs.events.filter((e) => e.ev === "start" && e.tag === "lost");
  const afterLost = await requestJson<{ jobs: JobStatus[] }>(nc, "bosun.api.jobs.list", { queue, limit: 1000 });
  t.equal(lostResult.state, "succeeded", "the job behind the lost reply succeeded");
  t.equal(again.job_id, retriedReply.job_id, "a later retry of the same submit still answers with the first job");
  t.not(otherTenant.job_id, retriedReply.job_id, "the same key under another tenant is a new job");
  t.equal(lostRuns.length, 2, "exactly 2 runs for the lost-reply key: one per tenant");
  t.equal(afterLost.body.jobs.length, keys + 2, `exactly ${keys + 2} job records in the queue`);
});

/** num_requests of each supervisor's jobs_submit endpoint, from $SRV.STATS. */
async function submitRequests(workers: string[]): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for await (const m of await nc.requestMany("$SRV.STATS.bosun", "", { maxWait: 1000 })) {
    const stats = JSON.parse(decoder.decode((m as Msg).data)) as { metadata?: { worker_id?: string }; endpoints?: { name: string; num_requests: number }[] };
    const worker = stats.metadata?.worker_id;
    if (!worker || !workers.includes(worker)) continue;
    out.set(worker, stats.endpoints?.find((e) => e.name === "jobs_submit")?.num_requests ?? 0);
  }
  return out;
}

t.test("cancel: queued, scheduled and running jobs never finish their work; finished is 409; twice is harmless", async (t) => {
  const runs = await RunLog.create(t);
  const queue = uniqueName("cancel");
  const supervisor = await startCountingSupervisor(t, server.url, runs, { queues: [queue], args: ["--min", "1", "--max", "1", "--kill-grace-ms", "500"] });

  // The only process is busy with a long job that ignores its abort signal.
  const blocker = await submit(nc, { type: "count.run", queue, payload: { tag: "blocker", ms: 60_000 }, max_attempts: 3 });
  await waitFor(async () => (await runs.refresh()).starts(blocker.job_id).length > 0, { timeoutMs: 20_000, what: "the blocker to start" });

  // Queued: cancelled over HTTP, then again over NATS.
  const queued = await submit(nc, { type: "count.run", queue, payload: { tag: "queued" } });
  t.equal(queued.state, "queued");
  const c1 = await http<{ job_id: string; state: string }>(gw, "POST", `/api/jobs/${queued.job_id}/cancel`);
  t.equal(c1.status, 202, "cancelling a queued job answers 202", { body: c1.text });
  t.equal(c1.body.state, "cancelled", "a queued job is cancelled at once");
  const c1again = await requestJson<{ state: string }>(nc, "bosun.api.jobs.cancel", { job_id: queued.job_id });
  t.equal(c1again.errorCode, undefined, "cancelling it again over NATS is harmless");
  t.equal(c1again.body.state, "cancelled");

  // Scheduled: cancelled over NATS, then again over HTTP.
  const scheduled = await submit(nc, { type: "count.run", queue, payload: { tag: "scheduled" }, delay_ms: 1500 });
  t.equal(scheduled.state, "scheduled");
  const c2 = await requestJson<{ state: string }>(nc, "bosun.api.jobs.cancel", { job_id: scheduled.job_id });
  t.equal(c2.errorCode, undefined, "bosun.api.jobs.cancel answers without error");
  t.equal(c2.body.state, "cancelled", "a scheduled job is cancelled at once");
  const c2again = await http<{ state: string }>(gw, "POST", `/api/jobs/${scheduled.job_id}/cancel`);
  t.equal(c2again.status, 202, "cancelling it twice is harmless");

  // Running: its process is killed (it ignores the abort signal), and it ends cancelled.
  const ownerPid = runs.starts(blocker.job_id)[0]!.pid;
  const cancelAt = Date.now();
  const c3 = await http<{ state: string; cancel_requested?: boolean }>(gw, "POST", `/api/jobs/${blocker.job_id}/cancel`);
  t.equal(c3.status, 202, "cancelling a running job answers 202");
  t.match(c3.body, { state: "running", cancel_requested: true }, "the reply says the kill was requested");
  const c3again = await requestJson<{ state: string }>(nc, "bosun.api.jobs.cancel", { job_id: blocker.job_id });
  t.equal(c3again.errorCode, undefined, "cancelling a running job twice is harmless");
  await waitFor(() => !isAlive(ownerPid), { timeoutMs: 10_000, intervalMs: 10, what: `the blocker's process ${ownerPid} to die` });
  const killMs = Date.now() - cancelAt;
  const blockerResult = (await waitForResults(nc, [blocker.job_id], { timeoutMs: 10_000 })).get(blocker.job_id)!;
  t.match(blockerResult, { state: "cancelled", error: { code: "cancelled" }, attempts: 1 }, "the running job ended cancelled after one attempt");

  // After the scheduled job's due time, a job submitted behind the others runs; then nothing is left.
  const behind = await submit(nc, { type: "count.run", queue, payload: { n: 5, tag: "behind" }, delay_ms: 1600 });
  const behindResult = (await waitForResults(nc, [behind.job_id], { timeoutMs: 30_000 })).get(behind.job_id)!;
  t.match(behindResult, { state: "succeeded", result: { n: 5, square: 25 } }, "a job behind them still runs");
  await waitQuiet(nc, queue, 30_000);

  // Finished: 409 over HTTP and NATS, and nothing changes.
  const c4 = await http<{ error: { code: string } }>(gw, "POST", `/api/jobs/${behind.job_id}/cancel`);
  t.equal(c4.status, 409, "cancelling a finished job is 409");
  t.equal(c4.body.error.code, "conflict");
  const c4nats = await requestJson(nc, "bosun.api.jobs.cancel", { job_id: behind.job_id });
  t.equal(c4nats.errorCode, "409", "over NATS too");
  t.equal((await statusOf(nc, behind.job_id)).state, "succeeded", "the finished job is still succeeded");
  t.same((await finalResults(nc, [behind.job_id])).get(behind.job_id), behindResult, "and its result is unchanged");
  const c5 = await http(gw, "POST", "/api/jobs/no_such_job/cancel");
  t.equal(c5.status, 404, "cancelling an unknown job is 404");

  await runs.refresh();
  const results = await finalResults(nc, [queued.job_id, scheduled.job_id, blocker.job_id]);
  const cancelled = [...results.values()].filter((r) => r?.state === "cancelled").length;
  const statuses = await Promise.all([queued.job_id, scheduled.job_id, blocker.job_id].map((id) => statusOf(nc, id)));
  const ranAfterCancel = runs.events.filter((e) => e.ev === "start" && (e.tag === "queued" || e.tag === "scheduled")).length;
  t.comment(`cancelled: ${cancelled} (queued, scheduled, running); running job's process gone ${killMs} ms after the cancel; runs: ${runs.startCount}`);
  t.equal(cancelled, 3, "exactly 3 jobs ended cancelled");
  t.ok(statuses.every((s) => s.state === "cancelled"), "their status says cancelled");
  t.equal(ranAfterCancel, 0, "the cancelled queued and scheduled jobs never ran");
  t.equal(runs.starts(blocker.job_id).length, 1, "the cancelled running job did not run again");
  t.equal(runs.startCount, 2, "exactly 2 runs: the cancelled running job and the one behind");
  t.ok(killMs <= 1000, `the running job's process was killed within a second (${killMs} ms)`);
  t.ok(supervisor.logsWith("killing execution process").some((l) => l.job_id === blocker.job_id && l.reason === "cancelled"), "the supervisor logged the kill");
});

t.test("cancel while a timed-out attempt is being killed: the job ends cancelled, and is not left without a record", async (t) => {
  const runs = await RunLog.create(t);
  const queue = uniqueName("cancelkill");
  // A long grace: the cancel certainly lands while the timeout's kill is under way (a second kill is ignored then).
  const supervisor = await startCountingSupervisor(t, server.url, runs, { queues: [queue], args: ["--min", "1", "--max", "1", "--kill-grace-ms", "3000"] });
  const job = await submit(nc, { type: "count.run", queue, payload: { tag: "slow", ms: 60_000 }, timeout_ms: 300, max_attempts: 3 });
  const timedOut = () => supervisor.logsWith("killing execution process").some((l) => l.job_id === job.job_id && l.reason === "timeout");
  await waitFor(timedOut, { timeoutMs: 20_000, what: "the timeout's kill to begin" });
  const c = await http<{ state: string; cancel_requested?: boolean }>(gw, "POST", `/api/jobs/${job.job_id}/cancel`);
  t.match(c.body, { state: "running", cancel_requested: true }, "cancelled while it still runs");
  // The attempt ends as timed out; parked for its retry, it used to be dropped unrun as cancelled with no record written (404).
  const result = (await waitForResults(nc, [job.job_id], { timeoutMs: 20_000 })).get(job.job_id)!;
  t.match(result, { state: "cancelled", error: { code: "cancelled" }, attempts: 1 }, "it ended cancelled after its one attempt");
  t.equal((await statusOf(nc, job.job_id)).state, "cancelled", "and its status says so");
  t.ok(supervisor.logsWith("job cancelled while running").some((l) => l.job_id === job.job_id), "settled as cancelled as its attempt ended, not parked for a retry");
  await runs.refresh();
  t.equal(runs.starts(job.job_id).length, 1, "no retry ran");
});

t.test("SIGTERM drain: running jobs finish within the grace, the rest run elsewhere, exit 0", async (t) => {
  const runs = await RunLog.create(t);
  const queue = uniqueName("drain");
  const other = await startCountingSupervisor(t, server.url, runs, { queues: [queue], workerId: uniqueName("wo"), args: ["--min", "2", "--max", "2"] });
  const draining = await startCountingSupervisor(t, server.url, runs, { queues: [queue], workerId: uniqueName("wd"), args: ["--min", "3", "--max", "3", "--grace-ms", "15000"] });

  const n = 16;
  const submitted = await submitAll(nc, Array.from({ length: n }, (_, i) => ({ type: "count.run", queue, payload: { n: i, tag: `dr${i}`, ms: 1500 } })));
  const ids = submitted.map((s) => s.job_id);
  // SIGTERM once all its 3 processes are busy, so no job is still waiting for a process (see the next test).
  await waitFor(async () => (await runs.refresh()).inFlight().filter((e) => e.ppid === draining.pid).length >= 3, {
    timeoutMs: 30_000,
    what: "the draining supervisor to run 3 jobs",
  });
  const inFlight = runs.inFlight().filter((e) => e.ppid === draining.pid);
  const termAt = Date.now();
  const exit = await draining.proc.stop(30_000);
  const drainMs = Date.now() - termAt;

  const results = await waitForResults(nc, ids, { timeoutMs: 60_000, what: "the drained jobs" });
  await waitQuiet(nc, queue, 30_000);
  await runs.refresh();
  const figures = describeRuns(runs, ids);
  const finishedOnDrainer = inFlight.filter((s) => runs.ends(s.job).some((e) => e.pid === s.pid && e.ok)).length;
  const startedAfterTerm = runs.events.filter((e) => e.ev === "start" && e.ppid === draining.pid && e.t > termAt).length;
  const byOther = ids.filter((id) => runs.starts(id).some((s) => s.ppid === other.pid)).length;
  t.comment(
    `jobs: ${n}; in flight on the drained supervisor: ${inFlight.length}, all finished there; it exited ${exit.code} after ${secs(drainMs)}; ` +
      `run by the other: ${byOther}; runs: ${figures.runs}; ran twice: ${figures.ranTwice}`,
  );
  t.equal(exit.code, 0, "the drained supervisor exited 0");
  t.ok(draining.logsWith("supervisor state").some((l) => l.to === "draining"), "it logged the drain");
  t.ok(draining.logsWith(/^draining: \d job\(s\) still running/).length > 0, "with a countdown while jobs ran");
  const retired = draining.logsWith("retiring execution process").map((l) => l.child_pid);
  t.equal(retired.length, new Set(retired).size, `each process retired once (${retired.length} lines, ${new Set(retired).size} pids)`);
  t.equal(finishedOnDrainer, inFlight.length, "every job it was running finished there");
  t.equal(startedAfterTerm, 0, "it started nothing after SIGTERM");
  t.equal([...results.values()].filter((r) => r.state === "succeeded" && r.attempts === 1).length, n, `all ${n} succeeded on their first attempt`);
  t.equal(figures.ranTwice, 0, "none ran twice");
  t.equal(figures.runs, n, `exactly ${n} runs`);
});

t.test("SIGTERM while a pulled job waits for its process to spawn: the job is not failed by the drain", async (t) => {
  const runs = await RunLog.create(t);
  const queue = uniqueName("spawnwait");
  // --min 0: the job has to wait for a process to be spawned, which takes a good part of a second.
  const draining = await startCountingSupervisor(t, server.url, runs, { queues: [queue], workerId: uniqueName("wd"), args: ["--min", "0", "--max", "1", "--grace-ms", "15000"] });
  const jsm = await jetstreamManager(nc);
  const job = await submit(nc, { type: "count.run", queue, payload: { n: 3, tag: "spawnwait", ms: 500 }, max_attempts: 1 });
  // The supervisor holds the message (delivered, not acked) and the job has not started yet.
  await waitFor(async () => (await jsm.consumers.info("BOSUN_JOBS", defaultLaneConsumer(queue))).num_ack_pending === 1, { timeoutMs: 20_000, intervalMs: 5, what: "the job to be pulled" });
  await runs.refresh();
  const startedBeforeTerm = runs.startCount;
  const exit = await draining.proc.stop(30_000);
  // Whatever the drain did with it, another supervisor can take it from here.
  await startCountingSupervisor(t, server.url, runs, { queues: [queue], workerId: uniqueName("wo"), args: ["--min", "1", "--max", "1"] });
  const result = (await waitForResults(nc, [job.job_id], { timeoutMs: 60_000 })).get(job.job_id)!;
  await waitQuiet(nc, queue, 30_000);
  await runs.refresh();
  const cutShort = runs.cutShort([job.job_id]).length;
  t.comment(`started before SIGTERM: ${startedBeforeTerm}; exit ${exit.code}; result ${result.state} after ${result.attempts} attempt(s) (${result.error?.code ?? "no error"}); runs: ${runs.startCount}, cut short: ${cutShort}`);
  t.equal(startedBeforeTerm, 0, "the job had not started when SIGTERM came");
  t.equal(exit.code, 0, "the supervisor exited 0");
  t.equal(result.state, "succeeded", "the job succeeded (finished within the grace, or handed back)", {
    result,
  });
  t.equal(cutShort, 0, "no run of it was cut short by the drain");
});

t.test("SIGTERM drain past the grace: the rest are killed, handed back, and run again elsewhere", async (t) => {
  const runs = await RunLog.create(t);
  const queue = uniqueName("grace");
  const other = await startCountingSupervisor(t, server.url, runs, { queues: [queue], workerId: uniqueName("wo"), args: ["--min", "2", "--max", "2"] });
  const draining = await startCountingSupervisor(t, server.url, runs, {
    queues: [queue],
    workerId: uniqueName("wd"),
    args: ["--min", "2", "--max", "2", "--grace-ms", "300", "--kill-grace-ms", "200", "--lease-ms", "30000"],
  });

  const n = 6;
  const submitted = await submitAll(nc, Array.from({ length: n }, (_, i) => ({ type: "count.run", queue, payload: { n: i, tag: `g${i}`, ms: 4000 } })));
  const ids = submitted.map((s) => s.job_id);
  await waitFor(async () => (await runs.refresh()).inFlight().filter((e) => e.ppid === draining.pid).length >= 2, {
    timeoutMs: 30_000,
    what: "the draining supervisor to run 2 jobs",
  });
  const killedJobs = runs.inFlight().filter((e) => e.ppid === draining.pid).map((e) => e.job);
  const termAt = Date.now();
  const exit = await draining.proc.stop(30_000);
  const drainMs = Date.now() - termAt;

  const results = await waitForResults(nc, ids, { timeoutMs: 60_000, what: "every job, the killed ones included" });
  await waitQuiet(nc, queue, 30_000);
  await runs.refresh();
  const figures = describeRuns(runs, ids);
  const rerunElsewhere = killedJobs.filter((id) => {
    const starts = runs.starts(id);
    return starts.length === 2 && starts[1]!.ppid === other.pid;
  });
  // Handed back at once (a nak), so the reruns start long before the 30 s lease would have lapsed.
  const rerunDelay = Math.max(...killedJobs.map((id) => (runs.starts(id)[1]?.t ?? Infinity) - termAt));
  t.comment(
    `jobs: ${n}; killed past the 300 ms grace: ${killedJobs.length}; exited ${exit.code} after ${secs(drainMs)}; ` +
      `rerun elsewhere within ${secs(rerunDelay)} of SIGTERM; runs: ${figures.runs}; ran twice: ${figures.ranTwice}`,
  );
  t.equal(exit.code, 0, "the supervisor exited 0");
  t.ok(drainMs < 10_000, `it did not wait for its 4 s jobs past the grace (${drainMs} ms)`);
  t.equal(rerunElsewhere.length, killedJobs.length, "every killed job ran again on the other supervisor");
  t.ok(rerunDelay < 15_000, "handed back at once, not after the lease");
  t.equal([...results.values()].filter((r) => r.state === "succeeded").length, n, `all ${n} succeeded`);
  t.ok(killedJobs.every((id) => results.get(id)?.attempts === 2), "the killed jobs' second run is attempt 2");
  t.equal(figures.ranTwice, killedJobs.length, "only the killed jobs ran twice");
  t.equal(figures.runs, n + killedJobs.length, `exactly ${n + killedJobs.length} runs`);
});

t.test("supervision: crashes past --max-restarts in the window make spawning back off, said in heartbeats and logs", async (t) => {
  const queue = uniqueName("crashy");
  const workerId = uniqueName("wcrash");
  const beats: { at: number; supervision: { decision: string; crashes_in_window: number; spawn_paused_ms: number }; pool_size: number }[] = [];
  const sub = nc.subscribe(`bosun.heartbeats.${workerId}`, {
    callback: (_err, m) => {
      const info = JSON.parse(decoder.decode(m.data)) as (typeof beats)[number];
      beats.push({ at: Date.now(), supervision: info.supervision, pool_size: info.pool_size });
    },
  });
  t.teardown(() => sub.unsubscribe());
  const supervisor: BosunSupervisor = await startSupervisor(t, server.url, {
    queues: [queue],
    workerId,
    args: ["--min", "1", "--max", "1", "--max-restarts", "3", "--restart-window-ms", "60000", "--heartbeat-ms", "500"],
  });
  const started = () => supervisor.logsWith("execution process started").length;
  await waitFor(() => started() === 1, { timeoutMs: 20_000, what: "the first process" });

  // Three crashes: each process is replaced at once, one for one.
  for (let i = 1; i <= 3; i++) {
    const r = await crashJob(queue);
    t.match(r, { state: "dead", attempts: 1, error: { code: "crashed" } }, `crash ${i}: the job is dead, crashed`);
    await waitFor(() => started() === 1 + i, { timeoutMs: 20_000, what: `replacement ${i}` });
  }
  t.equal(supervisor.logsWith("execution processes keep crashing; spawning backs off").length, 0, "no backoff within --max-restarts");
  const restartBeat = await waitFor(() => beats.find((b) => b.supervision.crashes_in_window === 3), { timeoutMs: 5000, what: "a heartbeat with 3 crashes" });
  t.equal(restartBeat.supervision.decision, "restart", "the heartbeat says restart while within the limit");

  // Record when every new execution process was forked (from /proc, while it is alive), so a
  // pause that is not honoured would show even though the "started" log comes later.
  const forks = new Map<number, number>();
  const forkPoller = setInterval(() => {
    for (const l of supervisor.logsWith("execution process started")) {
      const pid = Number(l.child_pid);
      if (!forks.has(pid)) forks.set(pid, processStartEpoch(pid) ?? NaN);
    }
  }, 10);
  t.teardown(() => clearInterval(forkPoller));

  // The fourth crash passes the limit: spawning pauses 1 s; a fifth doubles the pause to 2 s.
  // During each pause a normal job is waiting for a process.
  const backoffLog = "execution processes keep crashing; spawning backs off";
  const fourth = await crashJob(queue);
  t.match(fourth, { state: "dead", error: { code: "crashed" } }, "crash 4: dead, crashed");
  const echo1 = await submit(nc, { type: "echo", queue, payload: { pause: 1 } });
  const backoffBeat = await waitFor(() => beats.find((b) => b.supervision.decision === "backoff"), { timeoutMs: 5000, what: "a heartbeat saying backoff" });
  t.equal(backoffBeat.supervision.crashes_in_window, 4, "the heartbeat counts 4 crashes in the window");
  t.ok(backoffBeat.supervision.spawn_paused_ms > 0 && backoffBeat.supervision.spawn_paused_ms <= 1000, `and says spawning is paused (${backoffBeat.supervision.spawn_paused_ms} ms)`);
  const echo1Result = (await waitForResults(nc, [echo1.job_id], { timeoutMs: 30_000 })).get(echo1.job_id)!;

  const fifth = await crashJob(queue);
  t.match(fifth, { state: "dead", error: { code: "crashed" } }, "crash 5: dead, crashed");
  const echo2 = await submit(nc, { type: "echo", queue, payload: { pause: 2 } });
  const backoffLogs = await waitFor(() => supervisor.logsWith(backoffLog).length === 2 && supervisor.logsWith(backoffLog), { timeoutMs: 5000, what: "the second backoff log" });
  t.same(backoffLogs.map((l) => [l.decision, l.crashes_in_window, l.backoff_ms]), [["backoff", 4, 1000], ["backoff", 5, 2000]], "the logs say backoff, with the crash count and a doubling pause");
  const echo2Result = (await waitForResults(nc, [echo2.job_id], { timeoutMs: 30_000 })).get(echo2.job_id)!;
  t.match([echo1Result, echo2Result], [{ state: "succeeded", result: { pause: 1 } }, { state: "succeeded", result: { pause: 2 } }], "the jobs that waited out the pauses ran");
  await waitFor(() => forks.size === started(), { timeoutMs: 5000, what: "fork times of every process" });
  clearInterval(forkPoller);

  const forkTimes = [...forks.values()];
  const forkedDuringPause = backoffLogs.map((l) => {
    const from = logTime(l);
    return forkTimes.filter((f) => f >= from && f < from + Number(l.backoff_ms) - 20).length;
  });
  const firstForkAfter = backoffLogs.map((l) => Math.min(...forkTimes.filter((f) => f >= logTime(l))) - logTime(l));
  const maxPool = Math.max(...beats.map((b) => b.pool_size));
  t.comment(
    `crashes: 5; processes started: ${started()}; pauses logged: 1000, 2000 ms; first fork ${firstForkAfter.map((ms) => (Number.isFinite(ms) ? `${ms} ms` : "none")).join(", ")} after each backoff decision; ` +
      `largest pool in a heartbeat: ${maxPool} (--max 1)`,
  );
  t.same(forkedDuringPause, [0, 0], "no process was forked during either pause (no spinning)");
  t.ok(started() >= 6, "every crashed process was replaced");
  t.equal(started(), 6, "exactly 6 processes: the first and one per crash", {
  });
  t.ok(maxPool <= 1, `the pool never exceeded --max 1 (largest seen: ${maxPool})`, {
  });
});

async function crashJob(queue: string): Promise<JobResult> {
  const reply = await submit(nc, { type: "crash", queue, max_attempts: 1, wait_ms: 30_000 }, 40_000);
  return (await waitForResults(nc, [reply.job_id], { timeoutMs: 30_000 })).get(reply.job_id)!;
}
