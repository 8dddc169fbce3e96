/**
 * The execution pool seen from outside, for both kinds of execution actor
 * (--isolation process and thread): timeouts kill the actor, crashes fail
 * the attempt, the pool replaces lost actors and recycles them after N
 * executions (threads also over their heap limits), heartbeats name each
 * actor's kind, and two supervisors on one queue share the work.
 */
import { fileURLToPath } from "node:url";
import t, { type Test } from "tap";
import { startSupervisor, type BosunSupervisor } from "./helpers/bosun.js";
import type { JobResult, JobStatus, SubmitReply } from "./helpers/http.js";
import { OwnerWatch, resultOf, runJob, submitNats } from "./helpers/jobs.js";
import { connectClient, requestJson } from "./helpers/nats-client.js";
import { NatsServer } from "./helpers/nats-server.js";
import { isAlive, uniqueName, waitFor, within } from "./helpers/wait.js";

const MEMORY_HANDLERS = fileURLToPath(new URL("./fixtures/memory-handlers.js", import.meta.url));

interface WorkersReply {
  workers: { worker_id: string; processes: { pid: number; kind?: string; thread_id?: number }[] }[];
}

const server = await NatsServer.start(t);
const nc = await connectClient(t, server.url);

/**
 * How a test tells execution actors apart: a process by its pid, a thread by
 * its thread id (threads share their supervisor's pid).
 */
interface ActorKind {
  isolation: "process" | "thread";
  noun: string;
  plural: string;
  /** The actor named in a log line or a job's owner. */
  idOf(fields: { child_pid?: unknown; thread_id?: unknown; pid?: unknown }): number;
  /** Whether the actor is gone: a process no longer exists, a thread's exit was logged. */
  gone(supervisor: BosunSupervisor, id: number): boolean;
}

const kinds: ActorKind[] = [
  {
    isolation: "process",
    noun: "process",
    plural: "processes",
    idOf: (f) => Number(f.child_pid ?? f.pid),
    gone: (_supervisor, pid) => !isAlive(pid),
  },
  {
    isolation: "thread",
    noun: "thread",
    plural: "threads",
    idOf: (f) => Number(f.thread_id),
    gone: (supervisor, id) => [...supervisor.logsWith("execution thread exited"), ...supervisor.logsWith("retired execution thread exited")].some((l) => l.thread_id === id),
  },
];

for (const kind of kinds) {
  const { isolation, noun, plural } = kind;
  /** The actor the supervisor logged for this job and event. */
  const loggedActor = (supervisor: BosunSupervisor, msg: string, jobId: string): number | undefined => {
    const line = supervisor.logsWith(msg).find((l) => l.job_id === jobId);
    return line ? kind.idOf(line) : undefined;
  };
  const started = (supervisor: BosunSupervisor): number[] => supervisor.logsWith(`execution ${noun} started`).map((l) => kind.idOf(l));
  const start = (t: Test, queue: string, args: string[]) =>
    startSupervisor(t, server.url, { queues: [queue], args: ["--isolation", isolation, ...args] });

  t.test(`${isolation} isolation: a job past its timeout_ms is killed, goes dead with code timeout, and the pool gets a new ${noun}`, async (t) => {
    const queue = uniqueName();
    const supervisor = await start(t, queue, ["--min", "1", "--max", "1", "--kill-grace-ms", "200"]);
    const watch = await OwnerWatch.start(nc, t);

    const startedAt = Date.now();
    const result = await runJob(nc, { type: "sleep", queue, payload: { ms: 20_000 }, timeout_ms: 300, max_attempts: 1 });
    const elapsed = Date.now() - startedAt;
    t.match(result, { state: "dead", attempts: 1, error: { code: "timeout" } }, "dead with error code timeout", { result });
    t.ok(elapsed < 10_000, `ended long before the sleep would have (${elapsed} ms)`);

    const killed = await waitFor(() => loggedActor(supervisor, `killing execution ${noun}`, result.job_id), { what: "the kill in the log" });
    t.equal(kind.idOf(await watch.ownerOf(result.job_id)), killed, `the job record named the ${noun} that was killed`);
    await waitFor(() => kind.gone(supervisor, killed), { timeoutMs: 5000, what: `the timed-out ${noun} ${killed} to be gone` });
    t.pass(`the ${noun} that ran the job (${killed}) is gone`);

    // The pool (max 1) has a fresh actor and still runs jobs. A sleep long enough for its
    // running record (which names the owner) to be seen.
    const after = await runJob(nc, { type: "sleep", queue, payload: { ms: 250 } });
    t.match(after, { state: "succeeded", result: { slept_ms: 250 } });
    const owner = await watch.ownerOf(after.job_id);
    const next = kind.idOf(owner);
    t.not(next, killed, `the next job runs on a new ${noun} (${next})`);
    t.ok(started(supervisor).includes(next), `the new ${noun} is one the supervisor started`);
    if (isolation === "thread") t.equal(owner.pid, supervisor.pid, "a thread runs inside its supervisor's process");
  });

  t.test(`${isolation} isolation: a job submitted right after another timed out is not killed by that timeout`, async (t) => {
    // The kill of a timed-out actor must never hit the actor's next job.
    const queue = uniqueName();
    await start(t, queue, ["--min", "1", "--max", "1", "--kill-grace-ms", "600"]);
    const timedOut = await runJob(nc, { type: "sleep", queue, payload: { ms: 20_000 }, timeout_ms: 200, max_attempts: 1 });
    t.match(timedOut, { state: "dead", error: { code: "timeout" } });
    const next = await runJob(nc, { type: "sleep", queue, payload: { ms: 1000 }, max_attempts: 1 });
    t.match(next, { state: "succeeded", attempts: 1, error: null }, "the next job succeeds", { result: next });
  });

  t.test(`${isolation} isolation: a crashing job fails its attempt with code crashed and the pool recovers`, async (t) => {
    const queue = uniqueName();
    const supervisor = await start(t, queue, ["--min", "1", "--max", "2"]);

    const once = await runJob(nc, { type: "crash", queue, max_attempts: 1 });
    t.match(once, { state: "dead", attempts: 1, error: { code: "crashed" } }, "one attempt: dead, crashed", { result: once });
    const crashed = await waitFor(() => loggedActor(supervisor, `execution ${noun} exited`, once.job_id), { what: "the crash in the log" });
    t.ok(kind.gone(supervisor, crashed), `the crashed ${noun} (${crashed}) is gone`);
    t.ok(isAlive(supervisor.pid), "the supervisor lives on");

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

  t.test(`${isolation} isolation: a pool below --max grows for a job that finds every ${noun} busy`, async (t) => {
    // With --min 1 --max 2 and one long job running, a short job must get a second actor, not
    // wait behind the long one (it used to be queued on the busy actor and handed back, again and again).
    const queue = uniqueName();
    const supervisor = await start(t, queue, ["--min", "1", "--max", "2"]);
    const watch = await OwnerWatch.start(nc, t);
    // The long job must find the first actor up and idle, not make the pool start a second one.
    await waitFor(() => started(supervisor).length > 0, { what: `the first ${noun} to start` });
    t.match(await runJob(nc, { type: "echo", queue }), { state: "succeeded" });
    t.equal(started(supervisor).length, 1, `one ${noun} so far`);
    const long = (await submitNats(nc, { type: "sleep", queue, payload: { ms: 8000 }, max_attempts: 1 })) as SubmitReply;
    const longOwner = await watch.ownerOf(long.job_id);
    const startedAt = Date.now();
    const short = await runJob(nc, { type: "sleep", queue, payload: { ms: 300 }, max_attempts: 1 }, 6000);
    const elapsed = Date.now() - startedAt;
    t.match(short, { state: "succeeded", attempts: 1 }, "the short job succeeded", { result: short });
    t.ok(elapsed < 6000, `it ended while the long job still ran (${elapsed} ms)`);
    t.not(kind.idOf(await watch.ownerOf(short.job_id)), kind.idOf(longOwner), `it ran on a second ${noun}`);
  });

  t.test(`${isolation} isolation: an actor is recycled after --max-executions jobs`, async (t) => {
    const queue = uniqueName();
    const supervisor = await start(t, queue, ["--min", "1", "--max", "1", "--max-executions", "3"]);
    const watch = await OwnerWatch.start(nc, t);

    // One at a time, so the order of jobs is the order of executions.
    const ids: number[] = [];
    for (let i = 0; i < 7; i++) {
      // Long enough for the running record, which names the owner, to be seen.
      const r = await runJob(nc, { type: "sleep", queue, payload: { ms: 250 } });
      t.equal(r.state, "succeeded", `job ${i} succeeded`);
      ids.push(kind.idOf(await watch.ownerOf(r.job_id)));
    }
    t.comment(`${noun} per job: ${ids.join(", ")}`);
    const [a, b, c] = [ids[0]!, ids[3]!, ids[6]!];
    t.same(ids, [a, a, a, b, b, b, c], `three jobs per ${noun}, then a new one`);
    t.equal(new Set([a, b, c]).size, 3, `three different ${plural}`);
    const retired = supervisor.logsWith(`retiring execution ${noun}`).filter((l) => l.why === "max executions reached");
    t.ok(retired.length >= 2, "the supervisor logs why it retired them");
    await waitFor(() => kind.gone(supervisor, a) && kind.gone(supervisor, b), { timeoutMs: 5000, what: `recycled ${plural} to exit` });
    t.pass(`recycled ${plural} have exited`);
  });
}

for (const kind of kinds) {
  t.test(`${kind.isolation} isolation: heartbeats report each actor's kind, and a recycle names one`, async (t) => {
    const queue = uniqueName();
    const workerId = uniqueName("wk");
    const supervisor = await startSupervisor(t, server.url, { queues: [queue], workerId, args: ["--isolation", kind.isolation, "--min", "2", "--max", "2", "--heartbeat-ms", "200"] });
    const actors = await waitFor(
      async () => {
        const { body } = await requestJson<WorkersReply>(nc, "bosun.api.workers.list", {});
        const processes = body.workers.find((w) => w.worker_id === workerId)?.processes ?? [];
        return processes.length === 2 && processes;
      },
      { what: "two actors in the heartbeat" },
    );
    t.same(actors.map((p) => p.kind), [kind.isolation, kind.isolation], `each actor reports kind "${kind.isolation}"`);
    if (kind.isolation === "thread") {
      t.ok(actors.every((p) => p.pid === supervisor.pid && Number.isInteger(p.thread_id)), "threads have their supervisor's pid and a thread_id each", { actors });
      t.not(actors[0]!.thread_id, actors[1]!.thread_id, "two different threads");
    } else {
      t.ok(actors.every((p) => p.pid !== supervisor.pid && p.thread_id === undefined), "processes have pids of their own and no thread_id", { actors });
    }
    const target = actors[1]!;
    const request = kind.isolation === "thread" ? { worker_id: workerId, thread_id: target.thread_id } : { worker_id: workerId, pid: target.pid };
    const reply = await requestJson<{ pid: number; thread_id?: number }>(nc, "bosun.api.workers.recycle", request);
    t.match(reply.body, { status: "recycle_requested", pid: target.pid, ...(target.thread_id !== undefined && { thread_id: target.thread_id }) }, "the recycle names the actor asked for");
    await waitFor(() => kind.gone(supervisor, kind.idOf(target)), { timeoutMs: 5000, what: `the recycled ${kind.noun} to be gone` });
    t.pass(`the recycled ${kind.noun} is gone`);
  });
}

t.test("thread isolation: a thread past its heap limit dies alone; one over --max-memory-mb after a job is recycled", async (t) => {
  const queue = uniqueName();
  const supervisor = await startSupervisor(t, server.url, {
    queues: [queue],
    args: ["--isolation", "thread", "--min", "1", "--max", "1", "--max-memory-mb", "40", "--handlers", MEMORY_HANDLERS],
  });
  const hog = await runJob(nc, { type: "memory.hog", queue, max_attempts: 1 }, 30_000);
  t.match(hog, { state: "dead", attempts: 1, error: { code: "crashed", message: /ERR_WORKER_OUT_OF_MEMORY/ } }, "the job over the heap limit crashed its thread", { hog });
  t.ok(isAlive(supervisor.pid), "the supervisor lives on");

  const kept = await runJob(nc, { type: "memory.keep", queue, payload: { mb: 60 } });
  t.match(kept, { state: "succeeded", result: { kept_mb: 60 } }, "a job that keeps 60 MiB succeeds");
  // Memory is sampled once a second: the jobs after it see the thread's heap grown and retire it.
  await waitFor(
    async () => {
      await runJob(nc, { type: "echo", queue, payload: {} });
      return supervisor.logsWith("retiring execution thread").some((l) => l.why === "memory ceiling exceeded");
    },
    { timeoutMs: 15_000, intervalMs: 200, what: "the thread to be retired over its memory ceiling" },
  );
  t.pass("the thread over --max-memory-mb was retired after a job");
  const after = await runJob(nc, { type: "echo", queue, payload: { after: true } });
  t.match(after, { state: "succeeded", result: { after: true } }, "the pool runs jobs on a new thread");
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

  // The finished record names who ran the job, however short the run (an interim "running" record
  // is written only once a run lasts past a moment, which a loaded machine may stretch beyond 150 ms).
  const finished = await Promise.all(submitted.map((s) => requestJson<JobStatus>(nc, "bosun.api.jobs.get", { job_id: s.job_id })));
  const perWorker = new Map<string, number>();
  for (const { body } of finished) perWorker.set(String(body.owner?.worker_id), (perWorker.get(String(body.owner?.worker_id)) ?? 0) + 1);
  t.comment(`jobs per supervisor: ${JSON.stringify(Object.fromEntries(perWorker))}`);
  t.same([...perWorker.keys()].sort(), [...ids].sort(), "both supervisors ran jobs, and only they did");
  t.ok(submitted.every((s) => (watch.owners.get(s.job_id)?.length ?? 0) <= 1), "no job changed owner (each ran once)");
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
for (const { isolation } of kinds) {
  t.test(`${isolation} isolation: a supervisor stopped right after it started exits 0, and nothing it started prints a stack trace`, async (t) => {
    const queue = uniqueName();
    const supervisor = await startSupervisor(t, server.url, { queues: [queue], args: ["--isolation", isolation, "--min", "2", "--max", "2"] });
    // "running" is logged while the pool's first actors are still loading.
    const exit = await supervisor.stop();
    t.same(exit, { code: 0, signal: null }, "the supervisor exits 0 on SIGTERM");
    await within(supervisor.proc.closed, 10_000, "the supervisor's children to exit");
    const stderr = supervisor.proc.stderrLines.join("\n");
    t.notMatch(stderr, /ERR_IPC_CHANNEL_CLOSED/, "no IPC channel error", { stderr });
    t.notMatch(stderr, /\n\s+at /, "no stack trace on stderr", { stderr });
  });
}
