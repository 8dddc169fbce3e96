/**
 * Per-queue limits over remote compute leases (docs/compute.md "Limits"),
 * against a real nats-server, two real supervisors (one serving the
 * limited queue, one only another queue: its lease desk still takes
 * leases), a real gateway, and a compute server driven over HTTP with six
 * polling slots: max_concurrency counts supervisors' runs and leases
 * together, rate_limit counts lease starts, and a lease that expires with
 * no call gives its place back.
 */
import { setTimeout as delay } from "node:timers/promises";
import { Kvm } from "@nats-io/kv";
import t from "tap";
import { startGateway, startSupervisor } from "./helpers/bosun.js";
import { http } from "./helpers/http.js";
import { concurrency, time, type JobRecord } from "./helpers/records.js";
import { RemoteServer } from "./helpers/compute.js";
import { connectClient, requestJson } from "./helpers/nats-client.js";
import { NatsServer } from "./helpers/nats-server.js";
import { uniqueName, waitFor } from "./helpers/wait.js";

const LEASE_MS = 2000;
const server = await NatsServer.start(t);
const nc = await connectClient(t, server.url);
const gateway = await startGateway(t, server.url);
const gw = gateway.baseUrl;
const mixed = uniqueName("mixed");
const args = ["--min", "3", "--max", "3", "--heartbeat-ms", "300", "--lease-ms", String(LEASE_MS)];
await Promise.all([startSupervisor(t, server.url, { queues: [mixed], args }), startSupervisor(t, server.url, { queues: [uniqueName("local")], args })]);
await waitFor(async () => (await http<unknown[]>(gw, "GET", "/api/platform/workers")).body.length === 2, { what: "both supervisors live" });


const status = async (jobId: string): Promise<JobRecord> => (await http<JobRecord>(gw, "GET", `/api/jobs/${jobId}`)).body;
const statuses = (ids: string[]) => Promise.all(ids.map(status));
const allDone = (ids: string[], timeoutMs: number) =>
  waitFor(
    async () => {
      const all = await statuses(ids);
      return all.every((j) => j.state === "succeeded") && all;
    },
    { timeoutMs, what: "every job done" },
  );

async function setQueue(queue: string, flags: Record<string, unknown>): Promise<void> {
  const reply = await requestJson(nc, "bosun.api.ops.set", { queues: { [queue]: flags } });
  if (reply.errorCode) throw new Error(`ops.set: ${reply.errorCode} ${JSON.stringify(reply.body)}`);
}

async function submit(queue: string, n: number, type: string, ms: number): Promise<string[]> {
  const reply = await requestJson<{ jobs: { job_id?: string }[] }>(nc, "bosun.api.jobs.submit_batch", { jobs: Array.from({ length: n }, () => ({ type, queue, payload: { ms } })) }, { timeoutMs: 30_000 });
  return reply.body.jobs.map((j) => {
    if (!j.job_id) throw new Error(`batch entry refused: ${JSON.stringify(j)}`);
    return j.job_id;
  });
}


/**
 * A compute server with `slots` lease long-polls open at once, each running
 * its job for payload.ms, until stopped; `ended` has when each job's run
 * ended, as its result call went out.
 */
function poll(srv: RemoteServer, slots: number): { stop(): Promise<void>; maxHeld: () => number; ended: Map<string, number> } {
  const ended = new Map<string, number>();
  let stopped = false;
  let held = 0;
  let maxHeld = 0;
  const slot = async () => {
    while (!stopped) {
      const leased = await srv.lease(gateway, 500);
      if (!leased) continue;
      maxHeld = Math.max(maxHeld, ++held);
      // The job's own run time: what a remote handler spends.
      await delay((leased.job.payload as { ms: number }).ms);
      held--;
      ended.set(leased.job.job_id, Date.now());
      const done = await srv.result(gateway, leased, "ok");
      if (done.status !== 200) throw new Error(`result: ${done.status} ${done.text}`);
    }
  };
  const running = Promise.all(Array.from({ length: slots }, slot));
  return {
    stop: async () => {
      stopped = true;
      await running;
    },
    maxHeld: () => maxHeld,
    ended,
  };
}

t.test("max_concurrency 2 on a queue run by a supervisor and a compute server polling with 6 slots: never more than 2 at once, every job done", async (t) => {
  await setQueue(mixed, { max_concurrency: 2 });
  const server = await RemoteServer.enroll(gateway, [mixed]);
  const ids = await submit(mixed, 40, "sleep", 150);
  // The server polls once the supervisor runs one: its waiting lease calls could otherwise take
  // every place the supervisors' shares give, and nothing here would run on both.
  await waitFor(async () => (await statuses(ids)).some((j) => j.owner?.worker_id), { what: "the supervisor running a job" });
  const remote = poll(server, 6);
  t.teardown(() => remote.stop());
  const jobs = await allDone(ids, 60_000);
  await remote.stop();
  // A remote run ends as its result goes out: the call claims the lease (its place is free) and then
  // stores the outcome, so the record's finished_at comes a write later, as for a supervisor's run.
  const runs = jobs.map((j) => (j.owner?.server_id ? { ...j, finished_at: new Date(remote.ended.get(j.job_id)!).toISOString() } : j));
  const worst = Math.max(...concurrency(runs).map(([, n]) => n));
  t.ok(worst <= 2, `observed concurrency at most ${worst} (limit 2)`);
  t.ok(remote.maxHeld() <= 2, `the compute server never held more than ${remote.maxHeld()} leases at once`);
  const remotely = jobs.filter((j) => j.owner?.server_id).length;
  t.ok(remotely > 0 && remotely < jobs.length, `both ran jobs: ${remotely} on the compute server, ${jobs.length - remotely} on the supervisor`);
  t.ok(
    jobs.every((j) => j.attempts === 1),
    "no job lost an attempt to a lease beyond the limit",
  );
  t.comment(`max concurrency ${worst}; ${remotely} of ${jobs.length} leased`);
});

t.test("rate_limit {max: 5, per_ms: 1000} on a queue only a compute server serves: at most 5 lease starts in any 1 s window", async (t) => {
  const queue = uniqueName("rate");
  await setQueue(queue, { rate_limit: { max: 5, per_ms: 1000 } });
  const remote = poll(await RemoteServer.enroll(gateway, [queue]), 6);
  t.teardown(() => remote.stop());
  const ids = await submit(queue, 15, "remote.work", 20);
  const jobs = await allDone(ids, 30_000);
  await remote.stop();
  const starts = jobs.map((j) => time(j.started_at)).sort((a, b) => a - b);
  let worst = 0;
  for (const s of starts) worst = Math.max(worst, starts.filter((x) => x >= s && x < s + 1000).length);
  t.ok(worst <= 5, `at most ${worst} starts in any 1 s window (limit 5)`);
  const spanMs = starts.at(-1)! - starts[0]!;
  t.ok(spanMs >= 1900, `15 starts took ${spanMs} ms (at 5 a second, three windows)`);
  t.comment(`max starts per 1 s window ${worst}; 15 starts over ${spanMs} ms`);
});

t.test("a lease that expires with no call gives its place back: under max_concurrency 1 the next job is leased once it expired, not before", async (t) => {
  const queue = uniqueName("expire");
  await setQueue(queue, { max_concurrency: 1 });
  const [gone, heir] = await Promise.all([RemoteServer.enroll(gateway, [queue]), RemoteServer.enroll(gateway, [queue])]);
  const ids = await submit(queue, 2, "remote.work", 10);
  // A call that reaches the supervisor without the share (1 among 2) is answered at once, empty: the next may reach the other.
  const leaseSoon = (srv: RemoteServer) => waitFor(() => srv.lease(gateway, 500), { timeoutMs: 3 * LEASE_MS, what: "a lease" });
  const abandoned = await leaseSoon(gone);
  const expiresAt = Date.parse(abandoned.lease.expires_at);
  const next = await leaseSoon(heir);
  // The grant's time, by the supervisors' clock (this machine's).
  const grantedAt = Date.parse(next.lease.expires_at) - LEASE_MS;
  t.ok(grantedAt >= expiresAt, `the other server's lease came once the first one expired unrenewed, not before (${grantedAt - expiresAt} ms after)`);
  t.equal((await heir.result(gateway, next, "ok")).status, 200);
  const last = await leaseSoon(heir);
  t.equal((await heir.result(gateway, last, "ok")).status, 200);
  const jobs = await allDone(ids, 10_000);
  t.same(
    jobs.map((j) => j.owner?.server_id),
    [heir.serverId, heir.serverId],
    "both jobs ran on the second server",
  );
  t.equal((await gone.result(gateway, abandoned, "late")).status, 409, "the expired lease's late result is refused");
});

t.test("a supervisor that stops while a lease it admitted runs on: the others count that lease until it ends", async (t) => {
  const queue = uniqueName("orphan");
  // Ranked first among the supervisors, it alone holds the share of a limit of 1.
  const granterId = `0${uniqueName("granter")}`;
  const granter = await startSupervisor(t, server.url, { queues: [uniqueName("local")], workerId: granterId, args });
  await waitFor(async () => (await http<unknown[]>(gw, "GET", "/api/platform/workers")).body.length === 3, { what: "three supervisors live" });
  await setQueue(queue, { max_concurrency: 1 });
  const [holder, heir] = await Promise.all([RemoteServer.enroll(gateway, [queue]), RemoteServer.enroll(gateway, [queue])]);
  const ids = await submit(queue, 2, "remote.work", 10);
  const leaseSoon = (srv: RemoteServer, timeoutMs = 3 * LEASE_MS) => waitFor(() => srv.lease(gateway, 500), { timeoutMs, what: "a lease" });
  const held = await leaseSoon(holder);
  const leases = await new Kvm(nc).open("bosun_leases");
  const entry = await leases.get(held.job.job_id);
  t.match(entry?.json(), { queue, granted_by: granterId }, "the lease names its queue and the supervisor that admitted it");
  const renewals: number[] = [];
  const renew = async () => renewals.push((await holder.heartbeat(gateway, held)).status);
  // Renewed while that supervisor stops too: its drain (execution processes retiring) can outlast a lease on a slow machine.
  let stopping = true;
  const stopped = granter.stop().finally(() => (stopping = false));
  while (stopping) await Promise.all([renew(), delay(LEASE_MS / 4)]);
  t.match(await stopped, { code: 0 }, "that supervisor stopped");
  // Well past the stopped supervisor's last heartbeats (three periods) and the others' settling with a new share.
  const until = Date.now() + 3 * LEASE_MS;
  const leasedMeanwhile: string[] = [];
  while (Date.now() < until) {
    await renew();
    const other = await heir.lease(gateway, 500);
    if (other) leasedMeanwhile.push(other.job.job_id);
  }
  t.ok(renewals.every((s) => s === 200), `the running lease was renewed ${renewals.length} times`);
  t.same(leasedMeanwhile, [], "no other job of the queue was leased meanwhile");
  t.equal((await holder.result(gateway, held, "ok")).status, 200, "the lease ends");
  const next = await leaseSoon(heir);
  t.not(next.job.job_id, held.job.job_id, "then the other job is leased");
  t.equal((await heir.result(gateway, next, "ok")).status, 200);
  await allDone(ids, 10_000);
});

t.test("a lease call reaching the supervisor without a share of its queue's limit is answered at once, empty; the one with the share waits", async (t) => {
  const queue = uniqueName("share");
  // A limit of 1 between two supervisors: one holds the share, the other none.
  await setQueue(queue, { max_concurrency: 1 });
  const srv = await RemoteServer.enroll(gateway, [queue]);
  const WAIT_MS = 3000;
  // Nothing is queued, so every call waits out wait_ms unless it is answered at once; twelve calls
  // miss the shareless supervisor only with a chance of 2^-12 (a gateway sends each call to any).
  const timed = await Promise.all(
    Array.from({ length: 12 }, async () => {
      const started = Date.now();
      const leased = await srv.lease(gateway, WAIT_MS);
      return { leased, ms: Date.now() - started };
    }),
  );
  t.ok(
    timed.every((c) => c.leased === undefined),
    "every call empty (204)",
  );
  const atOnce = timed.filter((c) => c.ms < WAIT_MS / 3).length;
  const waited = timed.filter((c) => c.ms >= WAIT_MS - 100).length;
  t.ok(atOnce > 0, `${atOnce} of 12 calls answered at once (the shareless supervisor)`);
  t.equal(atOnce + waited, 12, `the other ${waited} waited their wait_ms (the supervisor with the share)`);
});
