/**
 * Fault injection with real processes: a supervisor SIGKILLed mid-run,
 * execution processes killed at random, and nats-server SIGKILLed and
 * restarted mid-run. Each test counts every run of every job (the counting
 * handlers append to a run log) and ends with exact counts: no job lost,
 * every result the job's own, and how many jobs ran twice.
 */
import t from "tap";
import type { NatsConnection } from "@nats-io/nats-core";
import type { JobResult } from "./helpers/http.js";
import { connectClient } from "./helpers/nats-client.js";
import { NatsServer } from "./helpers/nats-server.js";
import { uniqueName, waitFor } from "./helpers/wait.js";
import {
  connectResilient,
  describeRuns,
  finalResults,
  parentPid,
  RunLog,
  secs,
  startCountingSupervisor,
  submit,
  submitAll,
  SubmitError,
  waitForResults,
  waitQuiet,
  type Submitted,
} from "./helpers/faults.js";

/** Short leases keep the suite fast: a dead supervisor's jobs come back after this. */
const LEASE_MS = 2500;

interface Expected {
  n: number;
  tag: string;
}

/** Counts the ways final results can be wrong: missing, not succeeded, or someone else's. */
function checkResults(ids: readonly string[], expected: ReadonlyMap<string, Expected>, results: ReadonlyMap<string, JobResult | null>) {
  let lost = 0;
  let notSucceeded = 0;
  let wrong = 0;
  for (const id of ids) {
    const r = results.get(id);
    if (!r) {
      lost++;
      continue;
    }
    if (r.state !== "succeeded") {
      notSucceeded++;
      continue;
    }
    const want = expected.get(id)!;
    const got = r.result as { n?: number; square?: number; tag?: string } | null;
    if (got?.n !== want.n || got.square !== want.n * want.n || got.tag !== want.tag) wrong++;
  }
  return { lost, notSucceeded, wrong, succeeded: ids.length - lost - notSucceeded - wrong };
}

/** Once every job has a result: waits for the queue to go quiet, then reads the final results and the runs behind them. */
async function settle(nc: NatsConnection, queue: string, runs: RunLog, ids: readonly string[], expected: ReadonlyMap<string, Expected>, started: number) {
  await waitQuiet(nc, queue, 60_000);
  const elapsed = Date.now() - started;
  const results = await finalResults(nc, ids);
  await runs.refresh();
  return { elapsed, results, check: checkResults(ids, expected, results), figures: describeRuns(runs, ids) };
}

t.test("2,000 jobs on two supervisors, one SIGKILLed mid-run: every job succeeds with its own result", async (t) => {
  const server = await NatsServer.start(t);
  const nc = await connectClient(t, server.url);
  const runs = await RunLog.create(t);
  const queue = uniqueName("kill");
  const args = ["--min", "4", "--max", "4", "--lease-ms", String(LEASE_MS), "--heartbeat-ms", "1000"];
  const [victim, survivor] = await Promise.all([
    startCountingSupervisor(t, server.url, runs, { queues: [queue], workerId: uniqueName("wa"), args }),
    startCountingSupervisor(t, server.url, runs, { queues: [queue], workerId: uniqueName("wb"), args }),
  ]);

  const n = 2000;
  const started = Date.now();
  const bodies = Array.from({ length: n }, (_, i) => ({ type: "count.run", queue, payload: { n: i, tag: `k${i}`, ms: 25 } }));
  const submitted = await submitAll(nc, bodies, 64);
  const ids = submitted.map((s) => s.job_id);
  const expected = new Map(ids.map((id, i) => [id, { n: i, tag: `k${i}` }]));
  t.equal(new Set(ids).size, n, `${n} submits accepted, each its own job`);
  const submitMs = Date.now() - started;

  // Mid-run: a quarter of the jobs started, and the victim is running some right now.
  await waitFor(
    async () => {
      await runs.refresh();
      return runs.startCount >= n / 4 && runs.inFlight().some((e) => e.ppid === victim.pid);
    },
    { timeoutMs: 120_000, intervalMs: 20, what: "a quarter of the jobs to start, some on the victim" },
  );
  const startedBeforeKill = runs.startCount;
  const victimInFlight = runs.inFlight().filter((e) => e.ppid === victim.pid).length;
  const killedAt = Date.now();
  await victim.kill();
  // The victim can still start a run between the signal being sent and its death.
  const victimDeadAt = Date.now();
  t.ok(startedBeforeKill < n, `killed mid-run: ${startedBeforeKill} of ${n} runs had started, ${victimInFlight} on the victim`);

  await waitForResults(nc, ids, { timeoutMs: 150_000, what: "every job's result after the kill" });
  const { elapsed, results, check, figures } = await settle(nc, queue, runs, ids, expected, started);
  // A job may run twice only because its first run was on the victim and was cut short or unacked.
  let duplicatesNotFromTheKill = 0;
  let attemptsBelowRuns = 0;
  let lastRerun = 0;
  for (const id of ids) {
    const starts = runs.starts(id);
    if ((results.get(id)?.attempts ?? 0) < starts.length) attemptsBelowRuns++;
    if (starts.length < 2) continue;
    const earlier = starts.slice(0, -1);
    const last = starts[starts.length - 1]!;
    if (earlier.some((s) => s.ppid !== victim.pid || s.t > victimDeadAt) || last.ppid !== survivor.pid || last.t < killedAt) duplicatesNotFromTheKill++;
    lastRerun = Math.max(lastRerun, last.t - killedAt);
  }

  t.comment(
    `jobs: ${n}; submitted in ${secs(submitMs)}; SIGKILL after ${startedBeforeKill} runs started (${victimInFlight} in flight on the victim); ` +
      `all done in ${secs(elapsed)}; lost: ${check.lost}; ran twice: ${figures.ranTwice}; runs: ${figures.runs}; ` +
      `last rerun started ${secs(lastRerun)} after the kill (lease ${LEASE_MS} ms)`,
  );
  t.equal(check.lost, 0, "no job lost: every job has a result");
  t.equal(check.notSucceeded, 0, "no job ended other than succeeded");
  t.equal(check.wrong, 0, "every result is the job's own");
  t.equal(check.succeeded, n, `exactly ${n} jobs succeeded`);
  t.equal(figures.runs, n + figures.ranTwice, "every job ran once, or twice when the kill cut it short");
  t.ok(figures.maxRuns <= 2, `no job ran more than twice (max ${figures.maxRuns})`);
  t.equal(duplicatesNotFromTheKill, 0, "every job that ran twice ran first on the killed supervisor, then on the survivor after the kill");
  t.equal(attemptsBelowRuns, 0, "every run is counted in the job's attempts");
  t.ok(figures.ranTwice >= 1, "the jobs in flight on the victim ran again (the kill really landed mid-job)");
});

t.test("execution processes SIGKILLed at random while 500 jobs run: all succeed within their attempts", async (t) => {
  const server = await NatsServer.start(t);
  const nc = await connectClient(t, server.url);
  const runs = await RunLog.create(t);
  const queue = uniqueName("chaos");
  const max = 4;
  const supervisor = await startCountingSupervisor(t, server.url, runs, {
    queues: [queue],
    workerId: uniqueName("wc"),
    // Crashes are the point here: keep restart intensity out of the way.
    args: ["--min", String(max), "--max", String(max), "--max-restarts", "100000", "--lease-ms", String(LEASE_MS)],
  });

  const n = 500;
  const maxAttempts = 8;
  const started = Date.now();
  const bodies = Array.from({ length: n }, (_, i) => ({
    type: "count.run",
    queue,
    payload: { n: i, tag: `c${i}`, ms: 40 },
    max_attempts: maxAttempts,
    backoff: { type: "fixed", delay_ms: 50 },
  }));
  const submitted = await submitAll(nc, bodies, 64);
  const ids = submitted.map((s) => s.job_id);
  const expected = new Map(ids.map((id, i) => [id, { n: i, tag: `c${i}` }]));

  // The killer: every 200 ms, SIGKILL the process of a random job running right now. Spawning a
  // process takes a second or two on a loaded machine, so it waits while fewer than 3 run.
  let kills = 0;
  let done = false;
  const killer = (async () => {
    while (!done && kills < 30) {
      await runs.refresh();
      const running = runs.inFlight().filter((e) => parentPid(e.pid) === supervisor.pid);
      const victim = running[Math.floor(Math.random() * running.length)];
      if (victim && running.length >= 3) {
        try {
          process.kill(victim.pid, "SIGKILL");
          kills++;
        } catch {
          // finished and gone meanwhile
        }
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  })();
  try {
    await waitForResults(nc, ids, { timeoutMs: 150_000, what: "every job's result under random kills" });
  } finally {
    done = true;
    await killer;
  }
  const { elapsed, results, check, figures } = await settle(nc, queue, runs, ids, expected, started);
  const cutShort = runs.cutShort(ids).length;
  let attemptsBelowRuns = 0;
  let overAttempts = 0;
  for (const id of ids) {
    const starts = runs.starts(id);
    const attempts = results.get(id)?.attempts ?? 0;
    if (attempts < starts.length) attemptsBelowRuns++;
    if (attempts > maxAttempts) overAttempts++;
  }
  // Every killed process was replaced, one for one: started = the initial pool + one per exit.
  await waitFor(
    () => supervisor.logsWith("execution process started").length === max + supervisor.logsWith("execution process exited").length,
    { timeoutMs: 20_000, what: "one new process per crashed one" },
  ).catch(() => undefined);
  const spawned = supervisor.logsWith("execution process started").length;
  const exited = supervisor.logsWith("execution process exited").length;

  t.comment(
    `jobs: ${n}; processes SIGKILLed: ${kills}; runs cut short: ${cutShort}; jobs retried: ${figures.ranTwice}; ` +
      `runs: ${figures.runs}; most runs of one job: ${figures.maxRuns}; processes started: ${spawned} for ${exited} exits; all done in ${secs(elapsed)}`,
  );
  t.equal(check.lost, 0, "no job lost");
  t.equal(check.notSucceeded, 0, "no job dead: all succeeded within their attempts");
  t.equal(check.wrong, 0, "every result is the job's own");
  t.equal(check.succeeded, n, `exactly ${n} jobs succeeded`);
  t.ok(kills >= 5, `the killer landed (${kills} kills)`);
  t.ok(cutShort >= 1, `runs were cut short by the kills (${cutShort})`);
  // A kill that lands after the handler wrote its end line, before the supervisor heard of it, also reruns a job.
  t.ok(figures.runs - n >= cutShort && figures.runs - n <= kills, `every run cut short ran again, and nothing but a kill made a job run again (${figures.runs - n} extra runs)`);
  t.equal(attemptsBelowRuns, 0, "every run is counted in the job's attempts");
  t.equal(overAttempts, 0, "no job used more than max_attempts");
  t.equal(spawned, max + exited, "every crashed process was replaced, one for one");
});

for (const isolation of ["process", "thread"] as const) {
  t.test(`${isolation} isolation: actors crashing under short jobs sent several at a time: every run counted, none counted that did not run`, async (t) => {
    const server = await NatsServer.start(t);
    const nc = await connectClient(t, server.url);
    const runs = await RunLog.create(t);
    const queue = uniqueName("batched");
    const supervisor = await startCountingSupervisor(t, server.url, runs, {
      queues: [queue],
      workerId: uniqueName("wd"),
      args: ["--isolation", isolation, "--min", "2", "--max", "2", "--max-restarts", "100000", "--lease-ms", String(LEASE_MS)],
    });
    // Short jobs, so runs queue on busy actors; one in 20 takes its actor down on its first attempt,
    // with the runs queued behind it on that actor: the ones it had started count, the rest go back unrun.
    const n = 400;
    const bodies = Array.from({ length: n }, (_, i) => ({
      type: "count.run",
      queue,
      payload: { n: i, tag: `b${i}`, ...(i % 20 === 10 && { crash_on_attempt: 1 }) },
      max_attempts: 5,
      backoff: { type: "fixed", delay_ms: 0 },
    }));
    const started = Date.now();
    const submitted = await submitAll(nc, bodies, 64);
    const ids = submitted.map((s) => s.job_id);
    const expected = new Map(ids.map((id, i) => [id, { n: i, tag: `b${i}` }]));
    await waitForResults(nc, ids, { timeoutMs: 120_000, what: "every job's result" });
    const { elapsed, results, check, figures } = await settle(nc, queue, runs, ids, expected, started);
    const crashers = ids.filter((_, i) => i % 20 === 10);
    let attemptsNotRuns = 0;
    const mismatches: { job: string; attempts: number | undefined; runs: number }[] = [];
    for (const id of ids) {
      const attempts = results.get(id)?.attempts;
      if (attempts !== runs.starts(id).length) {
        attemptsNotRuns++;
        if (mismatches.length < 5) mismatches.push({ job: id, attempts, runs: runs.starts(id).length });
      }
    }
    const exits = supervisor.logsWith(`execution ${isolation} exited`).length;
    t.comment(`jobs: ${n}; crashes: ${exits}; runs: ${figures.runs}; jobs run twice: ${figures.ranTwice}; all done in ${secs(elapsed)}`);
    t.equal(check.lost, 0, "no job lost");
    t.equal(check.notSucceeded, 0, "every job succeeded within its attempts");
    t.equal(check.wrong, 0, "every result is the job's own");
    t.equal(exits, crashers.length, `each crashing job took one actor down (${crashers.length})`);
    // A crasher's second run can itself be queued behind another crasher on its actor and go down with it.
    const rerunAgain = crashers.filter((id) => (results.get(id)?.attempts ?? 0) > 2).length;
    t.ok(
      crashers.every((id) => (results.get(id)?.attempts ?? 0) >= 2),
      `each crashing job crashed on its first attempt and succeeded on a later one (${rerunAgain} of them went down again with another's actor)`,
    );
    t.equal(attemptsNotRuns, 0, "every job's attempts are exactly its runs: every run counted, no attempt without a run", { mismatches });
  });
}

t.test("nats-server SIGKILLed and restarted mid-run: every job accepted before or after succeeds", async (t) => {
  const server = await NatsServer.start(t);
  const nc = await connectResilient(t, server.url);
  const runs = await RunLog.create(t);
  const queue = uniqueName("natskill");
  const args = ["--min", "3", "--max", "3", "--lease-ms", String(LEASE_MS)];
  await Promise.all(["wa", "wb"].map((p) => startCountingSupervisor(t, server.url, runs, { queues: [queue], workerId: uniqueName(p), args })));

  const accepted: Submitted[] = [];
  const expected = new Map<string, Expected>();
  let seq = 0;
  const body = () => {
    const i = seq++;
    return { i, body: { type: "count.run", queue, payload: { n: i, tag: `s${i}`, ms: 20 } } };
  };
  /** When each submit was accepted or refused, relative to the kill (set below). */
  const timeline: { ok: boolean; at: number; steady: boolean }[] = [];
  let killedAt = 0;
  const accept = (i: number, s: Submitted) => {
    accepted.push(s);
    expected.set(s.job_id, { n: i, tag: `s${i}` });
  };

  const started = Date.now();
  const before = 300;
  const first = Array.from({ length: before }, body);
  (await submitAll(nc, first.map((b) => b.body))).forEach((s, k) => accept(first[k]!.i, s));

  // A client keeps submitting one job at a time through the outage; only accepted ones count.
  let refused = 0;
  let stopSubmitter = false;
  const submitter = (async () => {
    while (!stopSubmitter) {
      const { i, body: b } = body();
      try {
        accept(i, await submit(nc, b, 2000));
        if (killedAt) timeline.push({ ok: true, at: Date.now() - killedAt, steady: true });
      } catch {
        if (killedAt) timeline.push({ ok: false, at: Date.now() - killedAt, steady: true });
        refused++;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  })();

  await waitFor(
    async () => {
      await runs.refresh();
      return runs.startCount >= before / 3;
    },
    { timeoutMs: 60_000, intervalMs: 20, what: "a third of the first jobs to start" },
  );
  const startedBeforeKill = runs.startCount;
  killedAt = Date.now();
  const exit = await server.kill();
  t.equal(exit?.signal, "SIGKILL", "nats-server died of SIGKILL");
  await server.restart();
  const outageMs = Date.now() - killedAt;
  // "After the restart" starts once the service answers again (the steady submitter gets through).
  await waitFor(() => timeline.some((e) => e.ok), { timeoutMs: 60_000, what: "a submit to be accepted after the restart" });

  // After the restart: 200 more, each retried until accepted (a client's retry after a timeout).
  const after = 200;
  let retriedAfter = 0;
  const afterErrors = new Map<string, number>();
  let acceptedAfter = 0;
  const second = Array.from({ length: after }, body);
  await Promise.all(
    second.map(async ({ i, body: b }) => {
      await waitFor(
        async () => {
          try {
            accept(i, await submit(nc, b, 5000));
            timeline.push({ ok: true, at: Date.now() - killedAt, steady: false });
            acceptedAfter++;
            return true;
          } catch (err) {
            retriedAfter++;
            timeline.push({ ok: false, at: Date.now() - killedAt, steady: false });
            const why = err instanceof SubmitError ? `code ${err.code}` : (err as Error).name;
            afterErrors.set(why, (afterErrors.get(why) ?? 0) + 1);
            throw err;
          }
        },
        { timeoutMs: 60_000, intervalMs: 250, what: `submit ${i} after the restart` },
      );
    }),
  );
  stopSubmitter = true;
  await submitter;

  const ids = accepted.map((s) => s.job_id);
  await waitForResults(nc, ids, { timeoutMs: 150_000, what: "every accepted job's result after the restart" });
  const { elapsed, results, check, figures } = await settle(nc, queue, runs, ids, expected, started);
  const undercounted = ids.filter((id) => (results.get(id)?.attempts ?? 0) < runs.starts(id).length);
  const undercountDetail = undercounted.slice(0, 5).map((id) => ({
    job: id,
    attempts: results.get(id)?.attempts,
    runs: runs.starts(id).map((s) => ({ attempt: s.attempt, ppid: s.ppid, ms_after_kill: s.t - killedAt })),
  }));

  const firstAccepted = timeline.filter((e) => e.ok).reduce((m, e) => Math.min(m, e.at), Infinity);
  t.comment(
    `jobs accepted: ${ids.length} (${before} before the kill, ${ids.length - before - acceptedAfter} by the steady submitter, ${acceptedAfter} after the restart); ` +
      `submits refused or timed out: ${refused} (steady) + ${retriedAfter} (retried after the restart: ${JSON.stringify(Object.fromEntries(afterErrors))}); ` +
      `killed after ${startedBeforeKill} runs started; nats-server down ${secs(outageMs)}, submits accepted again ${secs(firstAccepted)} after the kill; ` +
      `lost: ${check.lost}; ran twice: ${figures.ranTwice}; all done in ${secs(elapsed)}`,
  );
  t.equal(new Set(ids).size, ids.length, "every accepted submit is its own job");
  t.equal(acceptedAfter, after, `all ${after} submits after the restart were accepted`);
  t.equal(check.lost, 0, "no accepted job lost");
  t.equal(check.notSucceeded, 0, "no accepted job ended other than succeeded");
  t.equal(check.wrong, 0, "every result is the job's own");
  t.equal(check.succeeded, ids.length, `exactly ${ids.length} accepted jobs succeeded`);
  // JetStream's delivery count (the attempt number) lives in consumer state that a SIGKILLed 2.9
  // server may not have written: a job redelivered after the restart runs again as the same attempt.
  t.equal(undercounted.length, 0, "every run is counted in the job's attempts", {
    undercountDetail,
    todo: "attempts come from the consumer's delivery count, which a nats-server SIGKILL can lose",
  });
});
