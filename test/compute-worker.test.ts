/**
 * `bosun compute-worker`, the reference remote server, against a real
 * nats-server, supervisor and gateway: 1,000 jobs through 3 workers with one
 * SIGKILLed mid-run (none lost, reruns only for the killed one's leases), a
 * job's timeout killing the remote run, a cancel reaching it through its
 * heartbeat, a revoked worker stopping, the saved credential reused.
 */
import { mkdtemp, rm, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import t from "tap";
import { startGateway, startSupervisor } from "./helpers/bosun.js";
import { enrollToken, startComputeWorker } from "./helpers/compute.js";
import { http } from "./helpers/http.js";
import { connectClient, requestJson } from "./helpers/nats-client.js";
import { NatsServer } from "./helpers/nats-server.js";
import { uniqueName, waitFor } from "./helpers/wait.js";

const server = await NatsServer.start(t);
const nc = await connectClient(t, server.url);
// Its own queues only: remote queues' jobs run on compute workers alone.
await startSupervisor(t, server.url, { queues: ["local"], args: ["--lease-ms", "3000", "--heartbeat-ms", "300"] });
const gateway = await startGateway(t, server.url);
const dir = await mkdtemp(path.join(os.tmpdir(), "bosun-test-cworker-"));
t.teardown(() => rm(dir, { recursive: true, force: true }));

interface Job {
  state: string;
  attempts: number;
  owner: { server_id?: string } | null;
  error: { code: string } | null;
}
const status = async (id: string) => (await http<Job>(gateway.baseUrl, "GET", `/api/jobs/${id}`)).body;
const submitBatch = async (jobs: Record<string, unknown>[]): Promise<string[]> => {
  const reply = await requestJson<{ jobs: { job_id?: string }[] }>(nc, "bosun.api.jobs.submit_batch", { jobs }, { timeoutMs: 30_000 });
  return reply.body.jobs.map((j) => {
    if (!j.job_id) throw new Error(`batch entry refused: ${JSON.stringify(j)}`);
    return j.job_id;
  });
};
const pool = ["--min", "4", "--max", "4"];

t.test("1,000 jobs through 3 compute workers, one SIGKILLed mid-run: none lost, reruns only for its leases", async (t) => {
  const queue = uniqueName("rq");
  const workers = await Promise.all(["w1", "w2", "w3"].map(async (name) => startComputeWorker(t, gateway, { enrollToken: await enrollToken(gateway, [queue]), name: `${queue}-${name}`, dir, args: pool })));
  const ids: string[] = [];
  for (let i = 0; i < 1000; i += 250) ids.push(...(await submitBatch(Array.from({ length: 250 }, (_, j) => ({ type: "sleep", queue, payload: { ms: 5 + ((i + j) % 3) }, max_attempts: 3 })))));
  await waitFor(async () => (await Promise.all(ids.slice(0, 300).map(status))).filter((j) => j.state === "succeeded").length >= 200, { timeoutMs: 60_000, what: "200 done" });
  await workers[0]!.kill();
  const finals = await waitFor(
    async () => {
      const all = await Promise.all(ids.map(status));
      return all.every((j) => j.state === "succeeded") ? all : undefined;
    },
    { timeoutMs: 120_000, intervalMs: 500, what: "every job succeeded" },
  );
  t.equal(finals.length, 1000, "every accepted job succeeded: none lost");
  const rerun = finals.filter((j) => j.attempts > 1);
  t.ok(rerun.length <= 4, `ran twice only for the killed worker's leases (pool 4): ${rerun.length}`);
  t.ok(finals.every((j) => j.owner?.server_id?.startsWith("cs_")), "every job shows the compute server that ran it");
  const owners = new Set(finals.map((j) => j.owner!.server_id));
  t.ok(owners.size >= 2, `the survivors took over (${owners.size} owners)`);
});

t.test("a job's timeout kills the remote run; a cancel reaches it through the heartbeat; the credential is saved 0600 and reused", async (t) => {
  const queue = uniqueName("rq");
  const name = `${queue}-w`;
  const worker = await startComputeWorker(t, gateway, { enrollToken: await enrollToken(gateway, [queue]), name, dir, args: ["--min", "1", "--max", "2"] });
  const [slow] = await submitBatch([{ type: "sleep", queue, payload: { ms: 30_000 }, timeout_ms: 500, max_attempts: 1 }]);
  const timedOut = await waitFor(async () => ((await status(slow!)).state === "dead" ? status(slow!) : undefined), { timeoutMs: 20_000, what: "timed out" });
  t.equal(timedOut.error?.code, "timeout", "the pool's timeout killed it");
  const [long] = await submitBatch([{ type: "sleep", queue, payload: { ms: 30_000 } }]);
  await waitFor(async () => (await status(long!)).state === "running", { what: "running remotely" });
  t.equal((await http(gateway.baseUrl, "POST", `/api/jobs/${long}/cancel`)).status, 202);
  await waitFor(async () => (await status(long!)).state === "cancelled", { timeoutMs: 10_000, what: "cancelled" });
  await worker.waitForLog((l) => l.json?.msg === "lease ended by the gateway: killing the run", 10_000, "the run killed");
  const file = path.join(dir, `${name}.json`);
  t.equal((await stat(file)).mode & 0o777, 0o600, "credential saved 0600");
  await worker.stop(5000);
  // Restarted with a used token: the saved credential is what it uses.
  const again = await startComputeWorker(t, gateway, { enrollToken: "used-already", name, dir, args: ["--min", "1", "--max", "1"] });
  const [quick] = await submitBatch([{ type: "echo", queue, payload: { again: true } }]);
  await waitFor(async () => (await status(quick!)).state === "succeeded", { what: "ran on the restarted worker" });
  t.ok(again, "restarted");
});

t.test("a revoked worker stops with a clear line, and its jobs run elsewhere", async (t) => {
  const queue = uniqueName("rq");
  const doomed = await startComputeWorker(t, gateway, { enrollToken: await enrollToken(gateway, [queue]), name: `${queue}-doomed`, dir, args: ["--min", "1", "--max", "1"] });
  const [job] = await submitBatch([{ type: "sleep", queue, payload: { ms: 20_000 }, max_attempts: 3 }]);
  const running = await waitFor(async () => {
    const s = await status(job!);
    return s.state === "running" && s.owner?.server_id ? s : undefined;
  }, { what: "running on the doomed worker" });
  t.equal((await http(gateway.baseUrl, "DELETE", `/api/compute/servers/${running.owner!.server_id}`)).status, 200);
  await doomed.waitForLog((l) => /credential was refused/.test(String(l.json?.msg)), 15_000, "the clear line");
  const exit = await doomed.exited;
  t.not(exit.code, 0, "it exits non-zero");
  await startComputeWorker(t, gateway, { enrollToken: await enrollToken(gateway, [queue]), name: `${queue}-heir`, dir, args: ["--min", "1", "--max", "1"] });
  const done = await waitFor(async () => ((await status(job!)).state === "succeeded" ? status(job!) : undefined), { timeoutMs: 40_000, what: "ran elsewhere" });
  t.ok(done.attempts >= 2, "its revoked run counts as an attempt");
});
