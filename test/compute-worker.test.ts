/**
 * `bosun compute-worker`, the reference remote server, against a real
 * nats-server, supervisor and gateway. The supervisor serves only its own
 * queue (`local`), so jobs of the tests' queues run on compute workers
 * alone: 1,000 jobs through 3 workers with one SIGKILLed mid-run, once of
 * 5-7 ms and once noop (none lost, reruns only among the killed one's
 * leases), a job's timeout
 * killing the remote run, a cancel reaching it through its heartbeat, a
 * revoked worker stopping, a SIGTERM drain posting its runs' outcomes, a
 * gateway outage ridden out, the saved credential reused, --types, and
 * ctx.files uploaded through the gateway.
 */
import { mkdtemp, rm, stat } from "node:fs/promises";
import { createServer, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import t, { type Test } from "tap";
import { ComputeClient } from "../src/client/compute.js";
import { CancelledError, InternalError, UnavailableError } from "../src/client/errors.js";
import { patternBytes } from "./fixtures/files-handlers.js";
import { runCli, startGateway, startSupervisor } from "./helpers/bosun.js";
import { enrollToken, startComputeWorker } from "./helpers/compute.js";
import { http } from "./helpers/http.js";
import { connectClient, requestJson } from "./helpers/nats-client.js";
import { NatsServer } from "./helpers/nats-server.js";
import type { ManagedProcess } from "./helpers/processes.js";
import { uniqueName, waitFor } from "./helpers/wait.js";

const server = await NatsServer.start(t);
const nc = await connectClient(t, server.url);
const supervisor = await startSupervisor(t, server.url, { queues: ["local"], args: ["--lease-ms", "3000", "--heartbeat-ms", "300"] });
const gateway = await startGateway(t, server.url);
const dir = await mkdtemp(path.join(os.tmpdir(), "bosun-test-cworker-"));
t.teardown(() => rm(dir, { recursive: true, force: true }));

interface Job {
  job_id: string;
  state: string;
  attempts: number;
  owner: { server_id?: string } | null;
  error: { code: string } | null;
}
const status = async (id: string) => (await http<Job>(gateway.baseUrl, "GET", `/api/jobs/${id}`)).body;
const inState = (id: string, state: string, timeoutMs = 20_000) =>
  waitFor(async () => {
    const s = await status(id);
    return s.state === state ? s : undefined;
  }, { timeoutMs, what: `job ${id} ${state}` });
const submitBatch = async (jobs: Record<string, unknown>[]): Promise<string[]> => {
  const reply = await requestJson<{ jobs: { job_id?: string }[] }>(nc, "bosun.api.jobs.submit_batch", { jobs }, { timeoutMs: 30_000 });
  return reply.body.jobs.map((j) => {
    if (!j.job_id) throw new Error(`batch entry refused: ${JSON.stringify(j)}`);
    return j.job_id;
  });
};
const serverIdOf = async (worker: ManagedProcess): Promise<string> =>
  String((await worker.waitForLog((l) => typeof l.json?.server_id === "string" && l.json.msg === "compute worker running", 5000, "its server id")).json!.server_id);
const logged = (worker: ManagedProcess, msg: string) => worker.logs.filter((l) => l.msg === msg);
const pool = ["--min", "4", "--max", "4"];

/**
 * 1,000 (or more) `jobs` through 3 workers of pool 4, one SIGKILLed once it ran 100: every
 * job succeeds, and every job that ran twice had been leased to the killed
 * worker, at most `maxReruns` of them (what it held leased or unposted,
 * beside one batch of outcomes on its way).
 */
async function killOneMidRun(t: Test, jobs: (i: number) => Record<string, unknown>, maxReruns: number): Promise<void> {
  const queue = uniqueName("rq");
  const workers = await Promise.all(["w1", "w2", "w3"].map(async (name) => startComputeWorker(t, gateway, { enrollToken: await enrollToken(gateway, [queue]), name: `${queue}-${name}`, dir, args: pool })));
  const killedId = await serverIdOf(workers[0]!);
  const ids: string[] = [];
  const submit = async () => ids.push(...(await submitBatch(Array.from({ length: 250 }, (_, j) => ({ ...jobs(ids.length + j), queue, max_attempts: 3 })))));
  while (ids.length < 1000) await submit();
  const ran = () => workers.map((w) => logged(w, "leased job ended").length);
  // Noop jobs drain in about a second, and which waiting worker a lease call serves is not fixed: the doomed one may find
  // the queue empty before it ran 100. More jobs go in, 250 at a time, while the others are about to run out.
  await waitFor(
    async () => {
      const counts = ran();
      if (counts[0]! >= 100) return true;
      if (counts.reduce((a, b) => a + b) >= ids.length - 100 && ids.length < 5000) await submit();
      return false;
    },
    { timeoutMs: 60_000, what: "the doomed worker ran 100 jobs" },
  );
  t.comment(`${ids.length} jobs submitted; the workers had run ${ran().join(", ")} when the first was killed`);
  await workers[0]!.kill();
  const finals = await waitFor(
    async () => {
      const all = await Promise.all(ids.map(status));
      return all.every((j) => j.state === "succeeded") ? all : undefined;
    },
    { timeoutMs: 120_000, intervalMs: 500, what: "every job succeeded" },
  );
  t.equal(finals.length, ids.length, "every accepted job succeeded: none lost");
  // Who was leased what, from the supervisor's side (the killed worker cannot tell of leases it never received).
  const leasedTo = new Map<string, Set<string>>();
  for (const l of supervisor.logsWith("job leased to a compute server")) {
    const owners = leasedTo.get(String(l.job_id)) ?? new Set<string>();
    leasedTo.set(String(l.job_id), owners.add(String(l.server_id)));
  }
  const rerun = finals.filter((j) => j.attempts > 1);
  const strays = rerun.filter((j) => !leasedTo.get(j.job_id)?.has(killedId));
  t.same(strays.map((j) => j.job_id), [], `every job that ran twice (${rerun.length}) had been leased to the killed worker`);
  for (const stray of strays) t.comment(`stray ${stray.job_id}: ${JSON.stringify(supervisor.logsWith(/./).filter((l) => l.job_id === stray.job_id))}`);
  t.ok(rerun.length <= maxReruns, `reruns are bounded by what the killed worker held: ${rerun.length} (at most ${maxReruns})`);
  t.ok(finals.every((j) => j.owner?.server_id?.startsWith("cs_")), "every job shows the compute server that ran it");
  t.ok(rerun.every((j) => j.owner!.server_id !== killedId), "a rerun job shows the survivor that ran it");
  t.ok(new Set(finals.map((j) => j.owner!.server_id)).size === 3, "all three workers ran jobs");
}

t.test("1,000 jobs of 5-7 ms through 3 compute workers, one SIGKILLed mid-run: none lost, reruns only among its leases", (t) =>
  // Runs under 50 ms are leased twice --max ahead: 8 leased or unposted, 8 outcomes on their way.
  killOneMidRun(t, (i) => ({ type: "sleep", payload: { ms: 5 + (i % 3) } }), 16),
);

t.test("1,000 noop jobs through 3 compute workers, one SIGKILLed mid-run: none lost, reruns only among its leases", (t) =>
  // Runs under 1 ms are leased eight times --max ahead: 32 leased or unposted, 32 outcomes on their way.
  killOneMidRun(t, () => ({ type: "noop" }), 64),
);

t.test("a job's timeout kills the remote run; a cancel reaches it through the heartbeat; the credential is saved 0600 and reused", async (t) => {
  const queue = uniqueName("rq");
  const name = `${queue}-w`;
  const worker = await startComputeWorker(t, gateway, { enrollToken: await enrollToken(gateway, [queue]), name, dir, args: ["--min", "1", "--max", "2"] });
  const [slow] = await submitBatch([{ type: "sleep", queue, payload: { ms: 30_000 }, timeout_ms: 500, max_attempts: 1 }]);
  const timedOut = await inState(slow!, "dead");
  t.equal(timedOut.error?.code, "timeout", "the job's timeout killed it");
  // Whichever sees it first kills the process: the pool's own timer, or the heartbeat that finds the lease past its deadline (409).
  const killed = await worker.waitForLog((l) => l.json?.msg === "killing execution process" && l.json.job_id === slow, 5000, "the run killed");
  t.match(killed.json!.reason, /^(timeout|lease_lost)$/, `the worker killed its process (${String(killed.json!.reason)})`);
  const [long] = await submitBatch([{ type: "sleep", queue, payload: { ms: 30_000 } }]);
  await inState(long!, "running");
  t.equal((await http(gateway.baseUrl, "POST", `/api/jobs/${long}/cancel`)).status, 202);
  await inState(long!, "cancelled", 10_000);
  await worker.waitForLog((l) => l.json?.msg === "killing execution process" && l.json.job_id === long && l.json.reason === "cancelled", 10_000, "the run killed on the heartbeat's 409");
  const file = path.join(dir, `${name}.json`);
  t.equal((await stat(file)).mode & 0o777, 0o600, "credential saved 0600");
  t.equal((await worker.stop(5000)).code, 0);
  // Restarted with a token that is used already: the saved credential is what it uses.
  const again = await startComputeWorker(t, gateway, { enrollToken: "used-already", name, dir, args: ["--min", "1", "--max", "1"] });
  t.ok(logged(again, "using the saved compute credential").length === 1, "the saved credential is reused");
  const [quick] = await submitBatch([{ type: "echo", queue, payload: { again: true } }]);
  t.equal((await inState(quick!, "succeeded")).owner?.server_id, await serverIdOf(again), "and it runs jobs under the same server id");
});

t.test("a revoked worker kills its run, stops with a clear line, and its job runs elsewhere", async (t) => {
  const queue = uniqueName("rq");
  const doomed = await startComputeWorker(t, gateway, { enrollToken: await enrollToken(gateway, [queue]), name: `${queue}-doomed`, dir, args: ["--min", "1", "--max", "2"] });
  const [job] = await submitBatch([{ type: "sleep", queue, payload: { ms: 4000 }, max_attempts: 3 }]);
  const running = await waitFor(async () => {
    const s = await status(job!);
    return s.state === "running" && s.owner?.server_id ? s : undefined;
  }, { what: "running on the doomed worker" });
  t.equal((await http(gateway.baseUrl, "DELETE", `/api/compute/servers/${running.owner!.server_id}`)).status, 200);
  await doomed.waitForLog((l) => /credential was refused/.test(String(l.json?.msg)), 15_000, "the clear line");
  t.equal((await doomed.exited).code, 1, "it exits 1");
  t.equal(doomed.logs.filter((l) => /credential was refused/.test(String(l.msg))).length, 1, "one line says so");
  t.ok(doomed.logs.some((l) => l.msg === "killing execution process" && l.job_id === job && l.reason === "lease_lost"), "its run was killed");
  await startComputeWorker(t, gateway, { enrollToken: await enrollToken(gateway, [queue]), name: `${queue}-heir`, dir, args: ["--min", "1", "--max", "1"] });
  const done = await inState(job!, "succeeded", 40_000);
  t.ok(done.attempts >= 2, "its revoked run counts as an attempt");
  t.not(done.owner?.server_id, running.owner!.server_id, "the heir ran it");
});

t.test("SIGTERM drains: no more leases, runs finish and their outcomes are posted, one past the grace is handed back; exit 0", async (t) => {
  const queue = uniqueName("rq");
  const worker = await startComputeWorker(t, gateway, { enrollToken: await enrollToken(gateway, [queue]), name: `${queue}-w`, dir, args: ["--min", "3", "--max", "3", "--isolation", "thread", "--grace-ms", "3000"] });
  const [a, b, long] = await submitBatch([
    { type: "sleep", queue, payload: { ms: 1500 } },
    { type: "sleep", queue, payload: { ms: 1500 } },
    { type: "sleep", queue, payload: { ms: 60_000 }, max_attempts: 3 },
  ]);
  // Started in the pool, not only leased (a job reads running from its lease on).
  await waitFor(() => [a, b, long].every((id) => worker.logs.some((l) => l.msg === "leased job started" && l.job_id === id)), { what: "all three started" });
  const exit = await worker.stop(15_000);
  t.equal(exit.code, 0, "it exits 0 once drained");
  t.same(worker.signalsSent.map((s) => s.split("@")[0]), ["SIGTERM"], "on SIGTERM alone");
  for (const id of [a!, b!]) t.equal((await status(id)).state, "succeeded", "a run that finished within the grace has its result stored");
  const handedBack = await status(long!);
  t.equal(handedBack.state, "queued", "the run past the grace is handed back, to run elsewhere");
  t.ok(worker.logs.some((l) => l.msg === "leased job ended" && l.job_id === long && l.error === "shutdown"), "its outcome (shutdown) was posted");
});

t.test("a gateway outage is ridden out: lease requests back off, the worker lives, and leases again once it is back", async (t) => {
  const queue = uniqueName("rq");
  const own = await startGateway(t, server.url);
  const worker = await startComputeWorker(t, own, { enrollToken: await enrollToken(gateway, [queue]), name: `${queue}-w`, dir, args: ["--min", "1", "--max", "2", "--wait-ms", "1000"] });
  await own.stop();
  await worker.waitForLog((l) => l.json?.msg === "lease request failed; backing off" && l.json.code === "unavailable", 10_000, "a failed lease request");
  const back = await startGateway(t, server.url, { port: own.port });
  const [job] = await submitBatch([{ type: "echo", queue, payload: { after: "outage" } }]);
  t.equal((await inState(job!, "succeeded")).owner?.server_id, await serverIdOf(worker), "the same worker ran it through the gateway that came back");
  t.ok(worker.running, "the worker never exited");
  await back.stop();
});

t.test("--types: only those types are leased; a type the handlers do not serve, or a bad flag, is refused at start", async (t) => {
  const queue = uniqueName("rq");
  const worker = await startComputeWorker(t, gateway, { enrollToken: await enrollToken(gateway, [queue]), name: `${queue}-w`, dir, args: ["--min", "1", "--max", "1", "--types", "echo"] });
  const [sleepy, echo] = await submitBatch([
    { type: "sleep", queue, payload: { ms: 1 } },
    { type: "echo", queue, payload: { typed: true } },
  ]);
  await inState(echo!, "succeeded");
  t.equal((await status(sleepy!)).state, "queued", "a job of another type is left for another server");
  t.notOk(worker.logs.some((l) => l.job_id === sleepy), "and never reaches this one");
  const base = ["compute-worker", "--gateway", gateway.baseUrl, "--enroll-token", "x", "--credential-file", path.join(dir, "never.json")];
  const unknown = await runCli([...base, "--types", "echo,render.frame"]);
  t.equal(unknown.code, 1);
  t.match(unknown.stderr, /--types names render\.frame, which the built-in handlers do not serve/);
  const badUrl = await runCli([...base.slice(0, 2), "ftp://gateway", ...base.slice(3)]);
  t.equal(badUrl.code, 2, "a bad flag is a usage error");
  t.match(badUrl.stderr, /--gateway \/ BOSUN_GATEWAY: must be the gateway's http\(s\) URL/);
  const noToken = await runCli(["compute-worker", "--gateway", gateway.baseUrl, "--credential-file", path.join(dir, "none.json")]);
  t.equal(noToken.code, 1);
  t.match(noToken.stderr, /no saved credential and no --enroll-token/);
});

t.test("ctx.files in a compute worker's handler: uploaded and read back through the gateway under the run's lease", async (t) => {
  const queue = uniqueName("rq");
  const handlers = path.resolve(import.meta.dirname, "fixtures/files-handlers.js");
  await startComputeWorker(t, gateway, { enrollToken: await enrollToken(gateway, [queue]), name: `${queue}-w`, dir, args: ["--min", "1", "--max", "1", "--isolation", "thread", "--handlers", handlers, "--types", "files.write"] });
  const size = 3 * 1024 * 1024 + 17;
  const files = [
    { name: "note.txt", text: "written far from NATS" },
    { name: "frame.bin", stream: size, chunk: 65_536, content_type: "image/x-test" },
  ];
  const [writer, reader] = await submitBatch([
    { type: "files.write", queue, payload: { files, read: "note.txt" } },
    { type: "files.write", queue, payload: { read: "note.txt" }, max_attempts: 1 },
  ]);
  const done = await inState(writer!, "succeeded");
  type FilesResult = { refused: string | null; written: { name: string; size: number }[]; read: { size: number; text: string } | null };
  const result = (await http<{ result: FilesResult }>(gateway.baseUrl, "GET", `/api/jobs/${writer}/result`)).body.result;
  t.equal(result.refused, null, "no write was refused");
  t.same(result.read, { size: 21, text: "written far from NATS" }, "ctx.files.read got back what the run wrote");
  t.same(result.written.map((f) => [f.name, f.size]), [["note.txt", 21], ["frame.bin", size]], "ctx.files.write answered each file as stored");
  t.ok(done.owner?.server_id, "on the compute worker");
  const listed = (await http<{ files: { name: string; content_type: string }[] }>(gateway.baseUrl, "GET", `/api/jobs/${writer}/files`)).body.files;
  t.same(listed.map((f) => [f.name, f.content_type]).sort(), [["frame.bin", "image/x-test"], ["note.txt", "text/plain; charset=utf-8"]], "listed with their content types");
  const download = async (name: string) => Buffer.from(await (await fetch(`${gateway.baseUrl}/api/jobs/${writer}/files/${name}`)).arrayBuffer());
  t.equal((await download("note.txt")).toString("utf8"), "written far from NATS");
  t.ok((await download("frame.bin")).equals(patternBytes(size)), "the streamed file is byte-identical");
  await inState(reader!, "succeeded");
  const other = (await http<{ result: FilesResult }>(gateway.baseUrl, "GET", `/api/jobs/${reader}/result`)).body.result;
  t.equal(other.read, null, "a job reads only its own files: another job's note.txt is not there (null)");
});

t.test("the compute client reads lease expiries on this machine's clock, and refuses an answer that is not Bosun's", async (t) => {
  // A gateway whose clock is an hour ahead: its lease has 15 s left by its own clock.
  let answer: (date: Date) => unknown = () => undefined;
  const fake = createServer((req, res) => {
    req.resume();
    const date = new Date(Date.now() + 3_600_000);
    res.writeHead(200, { "content-type": "application/json", date: date.toUTCString() });
    res.end(JSON.stringify(answer(new Date(Math.floor(date.getTime() / 1000) * 1000))));
  });
  await new Promise<void>((resolve) => fake.listen(0, "127.0.0.1", resolve));
  t.teardown(() => new Promise<void>((resolve) => fake.close(() => resolve())));
  const client = new ComputeClient(`http://127.0.0.1:${(fake.address() as AddressInfo).port}`, "cs_x.secret");
  const job = { job_id: "aA2bE5gEHWXL3CRSPUS42QRJZWO337", type: "noop", payload: {}, attempt: 1, timeout_ms: 1000, correlation_id: "c" };
  answer = (date) => ({ job, lease: { lease_id: "L1", fencing_token: 1001, expires_at: new Date(date.getTime() + 15_000).toISOString() } });
  const leased = await client.lease(0, undefined);
  const left = leased!.expiresAt - Date.now();
  t.ok(left > 12_000 && left <= 15_000, `15 s on the gateway's clock are ~14 s on ours, not an hour and more (${left} ms)`);
  answer = () => ({ job: { ...job, timeout_ms: -1 }, lease: { lease_id: "L1" } });
  await t.rejects(client.lease(0, undefined), InternalError, "a malformed lease answer is an internal_error, not a job");
  answer = () => ({ job_id: job.job_id });
  await t.rejects(client.heartbeat(leased!, 0.5), InternalError, "so is a heartbeat answer without its expiry");
});

t.test("the compute client's calls (node:http, kept alive) map answers as the typed client does", async (t) => {
  let answer: (res: ServerResponse) => void = (res) => res.end();
  const sockets = new Set<unknown>();
  const fake = createServer((req, res) => {
    sockets.add(req.socket);
    req.resume();
    answer(res);
  });
  await new Promise<void>((resolve) => fake.listen(0, "127.0.0.1", resolve));
  t.teardown(() => new Promise<void>((resolve) => (fake.closeAllConnections(), fake.close(() => resolve()))));
  const base = `http://127.0.0.1:${(fake.address() as AddressInfo).port}`;
  const client = new ComputeClient(base, "cs_x.secret");
  const run = { job: { job_id: "J", type: "noop", payload: {}, attempt: 1, timeout_ms: 1000, correlation_id: "c" }, lease_id: "L1", fencing_token: 1, expiresAt: 0 };
  answer = (res) => (res.writeHead(204), res.end());
  t.same(await client.leaseMany(4, 0, undefined), [], "a 204 is no job");
  answer = (res) => (res.writeHead(409, { "content-type": "application/json" }), res.end(JSON.stringify({ error: { code: "cancelled", message: "cancelled by a user" } })));
  await t.rejects(client.heartbeat(run, undefined), CancelledError, "a Bosun error body is its typed error");
  answer = (res) => (res.writeHead(503, { "content-type": "text/html" }), res.end("<h1>down</h1>"));
  await t.rejects(client.heartbeat(run, undefined), { code: "unavailable" }, "a proxy's page is typed by its status");
  t.equal(sockets.size, 1, "every call went over one kept-alive connection");
  answer = (res) => setTimeout(() => res.end(), 10_000).unref();
  const aborted = new AbortController();
  const leasing = client.leaseMany(1, 5000, undefined, { signal: aborted.signal });
  setTimeout(() => aborted.abort(), 50);
  await t.rejects(leasing, { name: "AbortError" }, "an aborted call ends at once, as the caller's abort");
  await new Promise<void>((resolve) => (fake.closeAllConnections(), fake.close(() => resolve())));
  await t.rejects(client.heartbeat(run, undefined), UnavailableError, "a gateway that is gone is unavailable");
});
