/**
 * The typed client (`bosun/client`) against a real nats-server, supervisor
 * and gateway, over NATS and over HTTP: every generated method, list paging,
 * events, wait, and each error reply as its typed exception.
 */
import { spawn } from "node:child_process";
import { mkdtemp, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import t from "tap";
import {
  ConflictError,
  connect,
  connectHttp,
  IdempotencyConflictError,
  methodName,
  NotFinishedError,
  NotFoundError,
  UnavailableError,
  UnknownTypeError,
  ValidationError,
  WaitTimeoutError,
  type BosunClient,
  type JobEvent,
} from "../src/client/index.js";
import { BosunError } from "../src/contract/index.js";
import { cleanEnv, CLI, runCli, startGateway, startSupervisor } from "./helpers/bosun.js";
import { NatsServer } from "./helpers/nats-server.js";
import { OPS_HANDLERS } from "./helpers/ops.js";
import { uniqueName } from "./helpers/wait.js";

const server = await NatsServer.start(t);
const queue = uniqueName("client");
await startSupervisor(t, server.url, { queues: [queue], args: ["--handlers", OPS_HANDLERS, "--min", "1", "--max", "2", "--heartbeat-ms", "300"] });
const gateway = await startGateway(t, server.url);
const gates = await mkdtemp(path.join(os.tmpdir(), "bosun-client-"));

const overNats = await connect({ servers: server.url });
t.teardown(() => overNats.close());
const overHttp = connectHttp(gateway.baseUrl);

t.test("method names come from the operations table", async (t) => {
  t.equal(methodName("jobs_submit"), "submit");
  t.equal(methodName("jobs_submit_batch"), "submitBatch");
  t.equal(methodName("workers_list"), "workersList");
  for (const client of [overNats, overHttp]) {
    for (const name of ["submit", "get", "result", "cancel", "retry", "listPage", "workersList", "workersRecycle", "queueStatus", "opsGet", "opsSet"]) {
      t.type((client as unknown as Record<string, unknown>)[name], "function", name);
    }
  }
  // By the package's name, as users import it (resolved at run time: dist/ is built after the type check).
  const specifier = "bosun/client";
  const pkg = (await import(specifier)) as Record<string, unknown>;
  t.type(pkg.connect, "function", "the package exports ./client");
});

for (const [transport, client] of [
  ["nats", overNats],
  ["http", overHttp],
] as const) {
  t.test(`${transport}: submit, get, wait, result`, async (t) => {
    const { job_id, state } = await client.submit({ type: "echo", payload: { hi: transport }, queue });
    t.ok(["queued", "succeeded"].includes(state));
    const result = await client.wait(job_id, { timeoutMs: 15_000 });
    t.match(result, { job_id, state: "succeeded", result: { hi: transport } });
    t.same((await client.result(job_id)).result, { hi: transport });
    t.match(await client.get(job_id), { job_id, state: "succeeded", queue });
    const waited = await client.submit({ type: "echo", payload: { n: 1 }, queue, wait_ms: 10_000 });
    t.match(waited, { state: "succeeded", result: { n: 1 } }, "wait_ms answers with the result");
  });

  t.test(`${transport}: errors are typed by code`, async (t) => {
    await t.rejects(client.get("nosuchjob0000000000000"), NotFoundError);
    await t.rejects(client.submit({ type: "no.such.type", queue }), UnknownTypeError);
    await t.rejects(client.submit({ type: "echo", queue, max_attempts: 0 }), ValidationError);
    const err = await client.get("nosuchjob0000000000000").catch((e: unknown) => e);
    t.ok(err instanceof BosunError, "every client error is a BosunError");
    t.match(err, { code: "not_found", status: 404 });
    // Too deep to encode: the request's fault (never "unreachable").
    let deep: unknown = [];
    for (let i = 0; i < 20_000; i++) deep = [deep];
    await t.rejects(client.submit({ type: "echo", queue, payload: deep as never }), ValidationError);
    const key = uniqueName("idem");
    const first = await client.submit({ type: "echo", queue, payload: { n: 1 }, idempotency_key: key });
    const reused = await client.submit({ type: "echo", queue, payload: { n: 2 }, idempotency_key: key }).catch((e: unknown) => e);
    t.ok(reused instanceof IdempotencyConflictError, "a key reused with another payload: IdempotencyConflictError", { reused });
    t.match(reused, { code: "idempotency_conflict", status: 409, jobId: first.job_id });
  });

  t.test(`${transport}: events follow a job to its end; result before it ends is not_finished`, async (t) => {
    const gate = path.join(gates, uniqueName("gate"));
    const { job_id } = await client.submit({ type: "test.progress", queue, payload: { before_ms: 100, progress: 0.5, gate_after: gate } });
    const seen: JobEvent[] = [];
    const following = (async () => {
      for await (const event of client.events(job_id)) {
        seen.push(event);
        if (event.data.progress === 0.5 && event.data.state === "running") await writeFile(gate, "");
      }
    })();
    await t.rejects(client.result(job_id), NotFinishedError);
    await following;
    t.ok(seen.some((e) => e.type === "progress" || e.data.progress === 0.5), "progress was reported");
    t.equal(seen.at(-1)?.data.state, "succeeded");
  });

  t.test(`${transport}: cancel, retry of a dead job, conflicts`, async (t) => {
    const gate = path.join(gates, uniqueName("never"));
    const running = await client.submit({ type: "test.progress", queue, payload: { gate_before: gate } });
    await t.rejects(client.wait(running.job_id, { timeoutMs: 300 }), WaitTimeoutError);
    await client.cancel(running.job_id);
    t.equal((await client.wait(running.job_id, { timeoutMs: 15_000 })).state, "cancelled");
    await t.rejects(client.retry(running.job_id), ConflictError, "only dead jobs can be retried");

    const failing = await client.submit({ type: "fail", queue, payload: { message: "boom" }, max_attempts: 1 });
    const dead = await client.wait(failing.job_id, { timeoutMs: 15_000 });
    t.match(dead, { state: "dead", error: { message: /boom/ } });
    t.match(await client.retry(failing.job_id), { job_id: failing.job_id, state: "queued" });
    t.match(await client.wait(failing.job_id, { timeoutMs: 15_000 }), { state: "dead", attempts: 1 }, "it ran again");
  });

  t.test(`${transport}: list pages through jobs; admin operations`, async (t) => {
    const listed: string[] = [];
    for await (const job of client.list({ queue, limit: 5 })) listed.push(job.job_id);
    t.ok(listed.length > 0, "jobs of the queue are listed");
    const page = await client.listPage({ queue, limit: 2 });
    t.ok(page.jobs.length <= 2);
    const { workers } = await client.workersList();
    t.ok(workers.some((w) => w.queues.includes(queue)));
    t.ok((await client.queueStatus()).queues.some((q) => q.queue === queue));
    t.type((await client.opsGet()).submissions_paused, "boolean");
  });
}

t.test("http: a paused queue answers UnavailableError", async (t) => {
  const paused = uniqueName("paused");
  await overHttp.opsSet({ queues: { [paused]: { submissions_paused: true } } });
  t.teardown(() => overHttp.opsSet({ queues: { [paused]: { submissions_paused: false } } }));
  await t.rejects(overHttp.submit({ type: "echo", queue: paused }), UnavailableError);
});

t.test("an unreachable gateway or server is UnavailableError", async (t) => {
  const nowhere: BosunClient = connectHttp("http://127.0.0.1:9");
  await t.rejects(nowhere.get("x"), UnavailableError);
});

t.test("CLI through the client: submit --wait with progress, watch, jobs, result, cancel, retry", async (t) => {
  const nats = ["--nats", server.url];
  const progressJob = JSON.stringify({ before_ms: 200, progress: 0.5, after_ms: 600 });
  const waited = await runCli(["submit", "test.progress", progressJob, "--queue", queue, "--wait", ...nats], { timeoutMs: 30_000 });
  t.equal(waited.code, 0, "submit --wait exits 0", { stderr: waited.stderr });
  const result = JSON.parse(waited.stdout) as { job_id: string; state: string; result: unknown };
  t.match(result, { state: "succeeded", result: { done: true } }, "stdout is the result alone");
  t.match(waited.stderr, /progress\s+running .*progress 50%/, "not a terminal: plain progress lines on stderr");

  // On a terminal (script(1) gives the command a pty): a progress bar that ends at 100 %.
  const tty = await new Promise<string>((resolve, reject) => {
    const command = [process.execPath, CLI, "submit", "test.progress", `'${progressJob}'`, "--queue", queue, "--wait", ...nats].join(" ");
    const child = spawn("script", ["-qec", command, "/dev/null"], { env: cleanEnv(), stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
    child.once("error", reject);
    child.once("close", (code) => (code === 0 ? resolve(out) : reject(new Error(`script exited ${code}: ${out}`))));
  });
  t.match(tty, /\[█+░*\] 50%\s+running/, "a bar at 50 % while it runs");
  t.match(tty, /\[█{30}\] 100%\s+succeeded/, "and full once it succeeded");

  const listed = await runCli(["jobs", "--queue", queue, "--limit", "3", ...nats]);
  t.equal(listed.code, 0, "jobs exits 0", { stderr: listed.stderr });
  t.match(listed.stdout, /^JOB\s+TYPE\s+QUEUE/m, "a table");
  t.match(listed.stdout, result.job_id);
  const dead = await runCli(["jobs", "--queue", queue, "--state", "dead", "--json", ...nats]);
  const deadJobs = (JSON.parse(dead.stdout) as { jobs: { state: string; job_id: string }[] }).jobs;
  t.ok(deadJobs.length > 0 && deadJobs.every((j) => j.state === "dead"), "jobs --state dead --json lists dead jobs only");
  // Records' paged listing: {jobs, next_cursor}, and --cursor takes the next page.
  const first = await runCli(["jobs", "--queue", queue, "--limit", "1", "--json", ...nats]);
  const page1 = JSON.parse(first.stdout) as { jobs: { job_id: string }[]; next_cursor: string | null };
  t.ok(page1.jobs.length === 1 && typeof page1.next_cursor === "string", "a page of one names the next page", { page1 });
  const second = await runCli(["jobs", "--queue", queue, "--limit", "1", "--cursor", page1.next_cursor ?? "", "--json", ...nats]);
  const page2 = JSON.parse(second.stdout) as { jobs: { job_id: string }[] };
  t.ok(page2.jobs.length === 1 && page2.jobs[0]!.job_id !== page1.jobs[0]!.job_id, "--cursor lists the next page");
  const plain = await runCli(["jobs", "--queue", queue, "--limit", "1", ...nats]);
  t.match(plain.stdout, `next page: --cursor ${page1.next_cursor}`, "the table names the next page's cursor");

  const shown = await runCli(["result", result.job_id, ...nats]);
  t.match(JSON.parse(shown.stdout), { job_id: result.job_id, state: "succeeded" }, "result prints the result");
  const again = await runCli(["cancel", result.job_id, ...nats]);
  t.equal(again.code, 1, "cancelling a finished job exits 1");
  t.match(again.stderr, /^bosun: conflict: /, "saying why, on one line");

  const gate = path.join(gates, uniqueName("cli"));
  const queued = JSON.parse((await runCli(["submit", "test.progress", JSON.stringify({ gate_before: gate }), "--queue", queue, ...nats])).stdout) as { job_id: string };
  const watch = runCli(["watch", queued.job_id, ...nats], { timeoutMs: 30_000 });
  const cancelled = await runCli(["cancel", queued.job_id, ...nats]);
  t.equal(cancelled.code, 0, "cancel exits 0", { stderr: cancelled.stderr });
  const watched = await watch;
  t.equal(watched.code, 0, "watch ends by itself when the job does", { stderr: watched.stderr });
  t.match(watched.stdout, /cancelled\n$/, "and says how it ended");
  const notDead = await runCli(["retry", queued.job_id, ...nats]);
  t.equal(notDead.code, 1);
  t.match(notDead.stderr, /conflict: only dead jobs can be retried/);
  const retried = await runCli(["retry", deadJobs[0]!.job_id, "--json", ...nats]);
  t.match(JSON.parse(retried.stdout), { job_id: deadJobs[0]!.job_id, state: "queued" }, "retry queues a dead job again");
});
