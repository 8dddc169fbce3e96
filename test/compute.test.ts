/**
 * Remote compute servers over real HTTP against two gateways, a real
 * supervisor and a real nats-server: enroll, lease, heartbeat, result and
 * failure; single-use and expired enroll tokens; stale leases refused with
 * nothing changed; an expired lease rerun on another server with a higher
 * fencing token, the late result of the first refused; revoke; a lease
 * granted to a server that went away handed back at once; a gateway
 * SIGKILLed while 20 jobs are leased.
 */
import net from "node:net";
import t from "tap";
import { api } from "../src/contract/index.js";
import { startGateway, startSupervisor } from "./helpers/bosun.js";
import { http, type ErrorReply } from "./helpers/http.js";
import { connectClient } from "./helpers/nats-client.js";
import { NatsServer } from "./helpers/nats-server.js";
import { uniqueName, waitFor } from "./helpers/wait.js";
import { RemoteServer, type Leased } from "./helpers/compute.js";

const LEASE_MS = 2000;
const server = await NatsServer.start(t);
// The supervisor serves other queues only: a remote queue's jobs can run on compute servers alone.
await startSupervisor(t, server.url, { queues: ["local"], args: ["--lease-ms", String(LEASE_MS), "--heartbeat-ms", "300"] });
const gwA = await startGateway(t, server.url);
const gwB = await startGateway(t, server.url);

interface Status {
  state: string;
  attempts: number;
  owner: { server_id?: string; worker_id?: string } | null;
  error: { code: string } | null;
}

const submit = async (queue: string, body: Record<string, unknown> = {}): Promise<string> => {
  const res = await http<{ job_id: string }>(gwA.baseUrl, "POST", "/api/jobs", { body: { type: "remote.echo", queue, payload: { n: 1 }, ...body } });
  if (res.status !== 202) throw new Error(`submit: ${res.status} ${res.text}`);
  return res.body.job_id;
};
const status = async (jobId: string) => (await http<Status>(gwB.baseUrl, "GET", `/api/jobs/${jobId}`)).body;
const result = async (jobId: string) => http<{ result: unknown; state: string; attempts: number }>(gwB.baseUrl, "GET", `/api/jobs/${jobId}/result`);

t.test("enroll, lease on one gateway, heartbeat and result on the other", async (t) => {
  const queue = uniqueName("q");
  const srv = await RemoteServer.enroll(gwA, [queue]);
  const jobId = await submit(queue, { payload: { hello: "remote" } });
  const leased = await srv.lease(gwA);
  t.ok(leased, "a job was leased");
  t.equal(leased!.job.job_id, jobId);
  t.same(leased!.job.payload, { hello: "remote" });
  t.equal(leased!.job.attempt, 1);
  t.ok(leased!.lease.fencing_token > 0, "a fencing token");
  // Shown running once its lease has lasted SHOW_RUNNING_AFTER_MS (a quick job never is).
  const running = await waitFor(async () => {
    const s = await status(jobId);
    return s.state === "running" ? s : undefined;
  }, { what: "the leased job shown running" });
  t.same(running.owner, { server_id: srv.serverId }, "owned by the compute server");
  const beat = await srv.heartbeat(gwB, leased!, 0.5);
  t.equal(beat.status, 200, beat.text);
  t.ok(Date.parse(beat.body.expires_at) > Date.now(), "the lease was extended");
  await waitFor(async () => (await status(jobId)).owner && (await http<{ progress: number }>(gwA.baseUrl, "GET", `/api/jobs/${jobId}`)).body.progress === 0.5, { what: "progress shown" });
  const done = await srv.result(gwB, leased!, { echoed: true });
  t.equal(done.status, 200, done.text);
  t.equal(done.body.state, "succeeded");
  const final = await result(jobId);
  t.equal(final.status, 200);
  t.same(final.body.result, { echoed: true });
  const finished = await status(jobId);
  t.equal(finished.state, "succeeded");
  t.same(finished.owner, { server_id: srv.serverId }, "the finished job keeps its owner");
  // Nothing left to do: 204 once the wait runs out.
  const started = Date.now();
  t.equal(await srv.lease(gwA, 300), undefined, "nothing to do: 204");
  t.ok(Date.now() - started >= 250, "the lease request long-polled");
  const listed = await http<{ servers: { server_id: string; leased_jobs: string[]; last_heartbeat_at: string | null }[] }>(gwA.baseUrl, "GET", "/api/compute/servers");
  const me = listed.body.servers.find((s) => s.server_id === srv.serverId);
  t.ok(me, "listed");
  t.same(me!.leased_jobs, [], "no job leased any more");
  t.ok(me!.last_heartbeat_at, "last seen");
});

t.test("a used or expired enroll token is refused with 401, and a bad credential too", async (t) => {
  const queue = uniqueName("q");
  const token = await http<{ token: string }>(gwA.baseUrl, "POST", "/api/compute/enroll-tokens", { body: { queues: [queue] } });
  t.equal(token.status, 201);
  const first = await http(gwA.baseUrl, "POST", "/api/compute/servers", { body: { enroll_token: token.body.token, name: "one" } });
  t.equal(first.status, 201);
  const again = await http<ErrorReply>(gwB.baseUrl, "POST", "/api/compute/servers", { body: { enroll_token: token.body.token, name: "two" } });
  t.equal(again.status, 401, "single use");
  t.equal(again.body.error.code, "unauthorized");
  const short = await http<{ token: string }>(gwA.baseUrl, "POST", "/api/compute/enroll-tokens", { body: { queues: [queue], ttl_ms: 1 } });
  await waitFor(() => Date.parse((short.body as unknown as { expires_at: string }).expires_at) < Date.now(), { what: "token expired" });
  const expired = await http<ErrorReply>(gwA.baseUrl, "POST", "/api/compute/servers", { body: { enroll_token: short.body.token, name: "late" } });
  t.equal(expired.status, 401, "expired");
  for (const credential of ["", "nope", "cs_x.y", `${(first.body as { server_id: string }).server_id}.wrong`]) {
    const res = await http<ErrorReply>(gwA.baseUrl, "POST", "/api/compute/jobs/lease", { body: { wait_ms: 0 }, headers: { authorization: `Bearer ${credential}` } });
    t.equal(res.status, 401, `credential ${JSON.stringify(credential)}: 401`);
  }
  const bad = await http<ErrorReply>(gwA.baseUrl, "POST", "/api/compute/enroll-tokens", { body: { queues: [] } });
  t.equal(bad.status, 400, "no queues: 400");
});

t.test("a stale lease gets 409 and changes nothing; an expired lease reruns the job on another server, and the first server's late result is refused", async (t) => {
  const queue = uniqueName("q");
  const one = await RemoteServer.enroll(gwA, [queue]);
  const two = await RemoteServer.enroll(gwB, [queue]);
  const jobId = await submit(queue, { max_attempts: 3 });
  const first = (await one.lease(gwA))!;
  await waitFor(async () => (await status(jobId)).state === "running", { what: "the leased job shown running" });
  const wrong = await one.call<ErrorReply>(gwA, "POST", `/api/compute/jobs/${jobId}/result`, { lease_id: "notmylease", result: 1 });
  t.equal(wrong.status, 409);
  t.equal(wrong.body.error.code, "lease_stale");
  const other = await two.result(gwA, first, "stolen");
  t.equal(other.status, 409, "another server's lease");
  t.equal((await status(jobId)).state, "running", "nothing changed");
  // One stops heartbeating: JetStream puts the job back after the lease, and two gets it.
  const second = (await two.lease(gwB, 10_000))!;
  t.ok(second, "re-leased after the lease expired");
  t.equal(second.job.job_id, jobId);
  t.ok(second.lease.fencing_token > first.lease.fencing_token, "a higher fencing token");
  t.equal(second.job.attempt, 2, "the expired lease counts as an attempt");
  const late = await one.result(gwA, first, "late");
  t.equal(late.status, 409, "the late result of the expired lease is refused");
  const lateBeat = await one.heartbeat(gwA, first);
  t.equal(lateBeat.status, 409, "so is its heartbeat");
  t.equal((await two.result(gwB, second, "newer")).status, 200);
  const final = await result(jobId);
  t.same(final.body.result, "newer", "the newer result stands");
  t.equal(final.body.attempts, 2);
});

t.test("max_jobs leases several jobs in one call, and one outcomes call ends them, each answered alone", async (t) => {
  const queue = uniqueName("q");
  const srv = await RemoteServer.enroll(gwA, [queue]);
  const ids = await Promise.all(Array.from({ length: 5 }, (_, n) => submit(queue, { payload: { n }, max_attempts: 2 })));
  const res = await srv.call<Leased & { more?: Leased[] }>(gwA, "POST", "/api/compute/jobs/lease", { wait_ms: 5000, max_jobs: 8 });
  t.equal(res.status, 200, res.text);
  const grants = [{ job: res.body.job, lease: res.body.lease }, ...(res.body.more ?? [])];
  t.same(grants.map((g) => g.job.job_id).sort(), [...ids].sort(), "the five waiting jobs in one answer");
  t.equal(new Set(grants.map((g) => g.lease.lease_id)).size, 5, "each with its own lease");
  const [a, b, c, d, e] = grants as [Leased, Leased, Leased, Leased, Leased];
  t.equal((await srv.result(gwB, e, "alone")).status, 200, "a lease of a batch ends on its own too");
  const ended = await srv.call<{ outcomes: ({ job_id: string; state: string } | { job_id: string; error: { code: string } })[] }>(gwB, "POST", "/api/compute/jobs/outcomes", {
    outcomes: [
      { job_id: a.job.job_id, lease_id: a.lease.lease_id, result: { done: "a" } },
      { job_id: b.job.job_id, lease_id: b.lease.lease_id, error: { code: "boom", message: "no" } },
      { job_id: c.job.job_id, lease_id: c.lease.lease_id, error: { code: "fatal", message: "no" }, retryable: false },
      { job_id: d.job.job_id, lease_id: "NotItsLease", result: 1 },
      { job_id: e.job.job_id, lease_id: e.lease.lease_id, result: "again" },
    ],
  });
  t.equal(ended.status, 200, ended.text);
  t.same(
    ended.body.outcomes.map((o) => ("state" in o ? o.state : o.error.code)),
    ["succeeded", "failed", "dead", "lease_stale", "succeeded"],
    "one answer per outcome, in order: stored, retried, dead, another lease's refused, and a repeat answered with what its lease stored",
  );
  t.same((await result(a.job.job_id)).body.result, { done: "a" });
  t.same((await result(e.job.job_id)).body.result, "alone", "the repeat changed nothing");
  t.equal((await status(c.job.job_id)).state, "dead");
  await waitFor(async () => (await status(d.job.job_id)).state === "running", { what: "the refused outcome left its lease running" });
  t.equal((await srv.result(gwA, d, "d")).status, 200);
  const again = (await srv.lease(gwA))!;
  t.equal(again.job.job_id, b.job.job_id, "the failed one comes back for its second attempt");
  t.equal(again.job.attempt, 2);
  t.equal((await srv.result(gwA, again, "b")).status, 200);

  const dup = await srv.call<ErrorReply>(gwA, "POST", "/api/compute/jobs/outcomes", {
    outcomes: [
      { job_id: a.job.job_id, lease_id: a.lease.lease_id, result: 1 },
      { job_id: a.job.job_id, lease_id: a.lease.lease_id, result: 2 },
    ],
  });
  t.equal(dup.status, 400, "a job twice in one call is refused");
  t.equal((await srv.call<ErrorReply>(gwA, "POST", "/api/compute/jobs/lease", { wait_ms: 0, max_jobs: 65 })).status, 400, "max_jobs past 64 is refused");
  t.equal((await srv.call<ErrorReply>(gwA, "POST", "/api/compute/jobs/outcomes", { outcomes: [] })).status, 400, "an empty batch is refused");
});

t.test("failed attempts retry per the job's attempts; a non-retryable one is dead at once", async (t) => {
  const queue = uniqueName("q");
  const srv = await RemoteServer.enroll(gwA, [queue]);
  const jobId = await submit(queue, { max_attempts: 2, backoff: { type: "fixed", delay_ms: 50 } });
  const first = (await srv.lease(gwA))!;
  const failed = await srv.failed(gwA, first, { code: "boom", message: "first try" });
  t.equal(failed.status, 200, failed.text);
  t.equal(failed.body.state, "failed");
  const second = (await srv.lease(gwA))!;
  t.equal(second.job.attempt, 2);
  t.equal((await srv.result(gwA, second, "ok")).status, 200);
  t.equal((await result(jobId)).body.attempts, 2);
  const doomed = await submit(queue, { max_attempts: 5 });
  const only = (await srv.lease(gwA))!;
  t.equal(only.job.job_id, doomed);
  const dead = await srv.failed(gwA, only, { code: "bad_input", message: "never works" }, false);
  t.equal(dead.body.state, "dead");
  const s = await status(doomed);
  t.equal(s.state, "dead");
  t.equal(s.error?.code, "bad_input");
});

t.test("a cancel reaches the remote run through its heartbeat's 409 cancelled", async (t) => {
  const queue = uniqueName("q");
  const srv = await RemoteServer.enroll(gwA, [queue]);
  const jobId = await submit(queue);
  const leased = (await srv.lease(gwA))!;
  const cancel = await http(gwA.baseUrl, "POST", `/api/jobs/${jobId}/cancel`);
  t.equal(cancel.status, 202, cancel.text);
  const beat = await waitFor(async () => {
    const res = await srv.heartbeat(gwB, leased);
    return res.status === 409 ? res : undefined;
  }, { what: "heartbeat refused" });
  t.equal(beat.body.error.code, "cancelled");
  await waitFor(async () => (await status(jobId)).state === "cancelled", { what: "cancelled" });
  t.equal((await srv.result(gwA, leased, "too late")).status, 409, "its result is refused after");
});

t.test("revoke: the credential is refused at once and the server's leased jobs run again, none lost", async (t) => {
  const queue = uniqueName("q");
  const bad = await RemoteServer.enroll(gwA, [queue]);
  const good = await RemoteServer.enroll(gwA, [queue]);
  const ids = await Promise.all(Array.from({ length: 5 }, () => submit(queue)));
  const held: Leased[] = [];
  for (let i = 0; i < 5; i++) held.push((await bad.lease(gwA))!);
  const revoked = await http<{ requeued: number }>(gwB.baseUrl, "DELETE", `/api/compute/servers/${bad.serverId}`);
  t.equal(revoked.status, 200, revoked.text);
  t.equal(revoked.body.requeued, 5);
  const refused = await bad.heartbeat(gwA, held[0]!);
  t.equal(refused.status, 401, "the credential is refused at once");
  const rerun = new Set<string>();
  const started = Date.now();
  while (rerun.size < 5) {
    const l = await good.lease(gwB, 5000);
    if (!l) break;
    rerun.add(l.job.job_id);
    await good.result(gwB, l, "rerun");
  }
  t.ok(Date.now() - started < 5000, "back in the queue at once");
  t.same([...rerun].sort(), [...ids].sort(), "every revoked job ran again");
  for (const id of ids) t.equal((await status(id)).state, "succeeded", `${id} succeeded`);
  t.equal((await http(gwA.baseUrl, "DELETE", `/api/compute/servers/${bad.serverId}`)).status, 404, "revoking twice: 404");
});

t.test("a lease granted after its compute server went away is handed back at once, not left to expire", async (t) => {
  const queue = uniqueName("rq");
  const gone = await RemoteServer.enroll(gwA, [queue]);
  const heir = await RemoteServer.enroll(gwA, [queue]);
  // The server's long poll reaches the supervisors (seen on NATS), then its connection closes, as a killed worker's does.
  const nc = await connectClient(t, server.url);
  const forwarded = nc.subscribe(api.computeLease, { max: 1 });
  await nc.flush();
  const body = JSON.stringify({ wait_ms: 20_000 });
  const socket = net.connect(gwA.port, "127.0.0.1");
  socket.on("error", () => undefined);
  socket.write(`POST /api/compute/jobs/lease HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${gone.credential}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
  for await (const _ of forwarded) break;
  socket.destroy();
  const jobId = await submit(queue);
  await waitFor(() => gwA.proc.logs.some((l) => typeof l.msg === "string" && l.msg.startsWith("lease handed back") && l.job_id === jobId), { timeoutMs: 10_000, what: "the gateway handing the orphaned lease back" });
  const startedAt = Date.now();
  const leased = await heir.lease(gwB, 5000);
  t.equal(leased?.job.job_id, jobId, "another server leases the job");
  t.ok(Date.now() - startedAt < LEASE_MS, `at once, not after the orphaned lease's ${LEASE_MS} ms (${Date.now() - startedAt} ms)`);
  t.equal((await heir.result(gwB, leased!, { ok: 1 })).status, 200);
  t.match(await status(jobId), { state: "succeeded" }, "and it succeeds there");
});

t.test("a gateway SIGKILLed while 20 jobs are leased loses none", async (t) => {
  const queue = uniqueName("q");
  const doomedGw = await startGateway(t, server.url);
  const srv = await RemoteServer.enroll(gwA, [queue]);
  const ids = await Promise.all(Array.from({ length: 20 }, () => submit(queue)));
  const held: Leased[] = [];
  while (held.length < 20) held.push((await srv.lease(doomedGw))!);
  await doomedGw.proc.kill();
  for (const l of held) {
    t.equal((await srv.heartbeat(gwA, l)).status, 200, "heartbeat on another gateway");
    t.equal((await srv.result(gwB, l, l.job.job_id)).status, 200, "result on another");
  }
  for (const id of ids) {
    const r = await result(id);
    t.equal(r.body.result, id, `${id}: its own result`);
    t.equal(r.body.attempts, 1, "ran once");
  }
});
