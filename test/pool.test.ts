/**
 * The execution pool seen from outside: timeouts kill the process, crashes
 * fail the attempt, the pool replaces lost processes and recycles them after
 * N executions, and two supervisors on one queue share the work.
 */
import t from "tap";
import { startSupervisor, type BosunSupervisor } from "./helpers/bosun.js";
import type { JobResult, SubmitReply } from "./helpers/http.js";
import { OwnerWatch, resultOf, runJob, submitNats } from "./helpers/jobs.js";
import { connectClient } from "./helpers/nats-client.js";
import { NatsServer } from "./helpers/nats-server.js";
import { isAlive, uniqueName, waitFor, within } from "./helpers/wait.js";

const server = await NatsServer.start(t);
const nc = await connectClient(t, server.url);

/** The pid of the execution process the supervisor logged for this job and event. */
function loggedPid(supervisor: BosunSupervisor, msg: string, jobId: string): number | undefined {
  const line = supervisor.logsWith(msg).find((l) => l.job_id === jobId);
  return line ? Number(line.child_pid) : undefined;
}

t.test("a job past its timeout_ms is killed, goes dead with code timeout, and the pool gets a new process", async (t) => {
  const queue = uniqueName();
  const supervisor = await startSupervisor(t, server.url, { queues: [queue], args: ["--min", "1", "--max", "1", "--kill-grace-ms", "200"] });
  const watch = await OwnerWatch.start(nc, t);

  const started = Date.now();
  const result = await runJob(nc, { type: "sleep", queue, payload: { ms: 20_000 }, timeout_ms: 300, max_attempts: 1 });
  const elapsed = Date.now() - started;
  t.match(result, { state: "dead", attempts: 1, error: { code: "timeout" } }, "dead with error code timeout", { result });
  t.ok(elapsed < 10_000, `ended long before the sleep would have (${elapsed} ms)`);

  const killedPid = await waitFor(() => loggedPid(supervisor, "killing execution process", result.job_id), { what: "the kill in the log" });
  t.equal((await watch.ownerOf(result.job_id)).pid, killedPid, "the job record named the process that was killed");
  await waitFor(() => !isAlive(killedPid), { timeoutMs: 5000, what: `the timed-out process ${killedPid} to be gone` });
  t.pass(`the process that ran the job (pid ${killedPid}) is gone`);

  // The pool (max 1) has a fresh process and still runs jobs. A sleep long enough for its
  // running record (which names the owner) to be seen.
  const after = await runJob(nc, { type: "sleep", queue, payload: { ms: 250 } });
  t.match(after, { state: "succeeded", result: { slept_ms: 250 } });
  const nextPid = (await watch.ownerOf(after.job_id)).pid;
  t.not(nextPid, killedPid, `the next job runs on a new process (pid ${nextPid})`);
  t.ok(supervisor.childPids().includes(nextPid), "the new process is one the supervisor started");
});

t.test("a job submitted right after another timed out is not killed by that timeout", async (t) => {
  // The kill of a timed-out process must never hit the process's next job.
  const queue = uniqueName();
  await startSupervisor(t, server.url, { queues: [queue], args: ["--min", "1", "--max", "1", "--kill-grace-ms", "600"] });
  const timedOut = await runJob(nc, { type: "sleep", queue, payload: { ms: 20_000 }, timeout_ms: 200, max_attempts: 1 });
  t.match(timedOut, { state: "dead", error: { code: "timeout" } });
  const next = await runJob(nc, { type: "sleep", queue, payload: { ms: 1000 }, max_attempts: 1 });
  t.match(next, { state: "succeeded", attempts: 1, error: null }, "the next job succeeds", { result: next });
});

t.test("a crashing job fails its attempt with code crashed and the pool recovers", async (t) => {
  const queue = uniqueName();
  const supervisor = await startSupervisor(t, server.url, { queues: [queue], args: ["--min", "1", "--max", "2"] });

  const once = await runJob(nc, { type: "crash", queue, max_attempts: 1 });
  t.match(once, { state: "dead", attempts: 1, error: { code: "crashed" } }, "one attempt: dead, crashed", { result: once });
  const crashedPid = await waitFor(() => loggedPid(supervisor, "execution process exited", once.job_id), { what: "the crash in the log" });
  t.notOk(isAlive(crashedPid), `the crashed process (pid ${crashedPid}) is gone`);

  // Every attempt is counted: two attempts, both crash.
  const twice = await runJob(nc, { type: "crash", queue, max_attempts: 2, backoff: { type: "fixed", delay_ms: 0 } });
  t.match(twice, { state: "dead", attempts: 2, error: { code: "crashed" } }, "two attempts: dead after both crashed", { result: twice });

  const jobs = await Promise.all(Array.from({ length: 6 }, (_, i) => runJob(nc, { type: "echo", queue, payload: { i } })));
  t.same(
    jobs.map((j) => [j.state, j.result]),
    Array.from({ length: 6 }, (_, i) => ["succeeded", { i }]),
    "later jobs all succeed",
  );
});

t.test("a process is recycled after --max-executions jobs", async (t) => {
  const queue = uniqueName();
  const supervisor = await startSupervisor(t, server.url, { queues: [queue], args: ["--min", "1", "--max", "1", "--max-executions", "3"] });
  const watch = await OwnerWatch.start(nc, t);

  // One at a time, so the order of jobs is the order of executions.
  const pids: number[] = [];
  for (let i = 0; i < 7; i++) {
    // Long enough for the running record, which names the owner, to be seen.
    const r = await runJob(nc, { type: "sleep", queue, payload: { ms: 250 } });
    t.equal(r.state, "succeeded", `job ${i} succeeded`);
    pids.push((await watch.ownerOf(r.job_id)).pid);
  }
  t.comment(`pids per job: ${pids.join(", ")}`);
  const [a, b, c] = [pids[0], pids[3], pids[6]];
  t.same(pids, [a, a, a, b, b, b, c], "three jobs per process, then a new one");
  t.equal(new Set([a, b, c]).size, 3, "three different processes");
  const retired = supervisor.logsWith("retiring execution process").filter((l) => l.why === "max executions reached");
  t.ok(retired.length >= 2, "the supervisor logs why it retired them");
  await waitFor(() => !isAlive(a!) && !isAlive(b!), { timeoutMs: 5000, what: "recycled processes to exit" });
  t.pass("recycled processes have exited");
});

t.test("two supervisors on one queue both execute part of a batch", async (t) => {
  const queue = uniqueName();
  const ids = [uniqueName("wa"), uniqueName("wb")];
  await Promise.all(ids.map((workerId) => startSupervisor(t, server.url, { queues: [queue], workerId, args: ["--min", "2", "--max", "2"] })));
  const watch = await OwnerWatch.start(nc, t);

  const submitted = (await Promise.all(
    Array.from({ length: 16 }, (_, i) => submitNats(nc, { type: "sleep", queue, payload: { ms: 150 + i } })),
  )) as SubmitReply[];
  const results: JobResult[] = await Promise.all(submitted.map((s) => resultOf(nc, s.job_id, 30_000)));
  t.ok(results.every((r) => r.state === "succeeded" && r.attempts === 1), "every job succeeded on its first attempt");

  const owners = await Promise.all(submitted.map((s) => watch.ownerOf(s.job_id)));
  const perWorker = new Map<string, number>();
  for (const o of owners) perWorker.set(o.worker_id, (perWorker.get(o.worker_id) ?? 0) + 1);
  t.comment(`jobs per supervisor: ${JSON.stringify(Object.fromEntries(perWorker))}`);
  t.same([...perWorker.keys()].sort(), [...ids].sort(), "both supervisors ran jobs, and only they did");
  t.ok(submitted.every((s) => watch.owners.get(s.job_id)?.length === 1), "no job changed owner (each ran once)");
});

t.test("a supervisor idle past its pull request's expiry still picks up new jobs", async (t) => {
  const queue = uniqueName();
  // Watch the pull requests' end: JetStream answers an expired pull with a 408 status on its reply inbox.
  const expired: string[] = [];
  const inbox = nc.subscribe("_INBOX.>", {
    callback: (_err, msg) => {
      if (msg.headers?.code === 408) expired.push(msg.subject);
    },
  });
  t.teardown(() => inbox.unsubscribe());
  await nc.flush();
  await startSupervisor(t, server.url, { queues: [queue], args: ["--min", "1", "--max", "1"] });

  // One queue: the supervisor's pull waits 10 s on the server, then expires unfilled.
  await waitFor(() => expired.length > 0, { timeoutMs: 25_000, intervalMs: 100, what: "an idle pull request to expire (408)" });
  t.pass("the idle pull request expired");
  const r = await runJob(nc, { type: "echo", queue, payload: { after: "idle" } }, 10_000);
  t.match(r, { state: "succeeded", result: { after: "idle" } }, "a job submitted after the expiry runs");
});

/**
 * Regression (fixed in e917116): an execution process still loading when its
 * supervisor stopped died of an unhandled ERR_IPC_CHANNEL_CLOSED, stack trace
 * on stderr.
 */
t.test("a supervisor stopped right after it started exits 0, and nothing it started prints a stack trace", async (t) => {
  const queue = uniqueName();
  const supervisor = await startSupervisor(t, server.url, { queues: [queue], args: ["--min", "2", "--max", "2"] });
  // "running" is logged while the pool's first processes are still loading.
  const exit = await supervisor.stop();
  t.same(exit, { code: 0, signal: null }, "the supervisor exits 0 on SIGTERM");
  await within(supervisor.proc.closed, 10_000, "the supervisor's children to exit");
  const stderr = supervisor.proc.stderrLines.join("\n");
  t.notMatch(stderr, /ERR_IPC_CHANNEL_CLOSED/, "no IPC channel error", { stderr });
  t.notMatch(stderr, /\n\s+at /, "no stack trace on stderr", { stderr });
});
