/**
 * Tenants and auth against real servers: two supervisors and two gateways
 * with auth on. Every request/reply route of the gateway's own table
 * (httpRoutes), plus the event streams, is tried with no key, a junk key, a
 * key revoked through the other gateway, a tenant key on an admin route and
 * tenant A's key on tenant B's job; every NATS operation the same way over
 * NATS; then tenant isolation of listing, events, idempotency and submits.
 */
import t from "tap";
import { runCli, startGateway, startSupervisor } from "./helpers/bosun.js";
import { http, type HttpReply, type SubmitReply } from "./helpers/http.js";
import { connectClient, requestJson } from "./helpers/nats-client.js";
import { NatsServer } from "./helpers/nats-server.js";
import { waitFor } from "./helpers/wait.js";
import { accessOf, httpRoutes, operations, type OperationName } from "../src/contract/index.js";
import { tenantScopes } from "../src/auth/gate.js";
import { authorizationHeaderOf } from "../src/auth/settings.js";
import { headers as natsHeaders } from "@nats-io/nats-core";

const ADMIN_KEY = "test-admin-key-0123456789abcdef";
const env = { BOSUN_ADMIN_KEY: ADMIN_KEY };
const server = await NatsServer.start(t);
const nc = await connectClient(t, server.url);
const sup1 = await startSupervisor(t, server.url, { queues: ["default"], workerId: "auth-s1", env, args: ["--min", "1", "--max", "2"] });
await startSupervisor(t, server.url, { queues: ["default"], workerId: "auth-s2", env, args: ["--min", "1", "--max", "2"] });
const gw1 = (await startGateway(t, server.url, { env })).baseUrl;
const gw2 = (await startGateway(t, server.url, { env })).baseUrl;

const bearer = (key: string) => ({ authorization: `Bearer ${key}` });
const as = (key: string | undefined) => (key === undefined ? {} : { headers: bearer(key) });
interface CreatedKey {
  key_id: string;
  key: string;
  tenant: string | null;
  admin: boolean;
}
async function createKey(body: object, gw = gw1): Promise<CreatedKey> {
  const res = await http<CreatedKey>(gw, "POST", "/api/admin/keys", { body, ...as(ADMIN_KEY) });
  if (res.status !== 201) throw new Error(`create key: ${res.status} ${res.text}`);
  return res.body;
}
const submit = async (key: string, body: object): Promise<string> => {
  const res = await http<SubmitReply>(gw1, "POST", "/api/jobs?wait_ms=5000", { body, ...as(key) });
  if (res.status !== 200) throw new Error(`submit: ${res.status} ${res.text}`);
  return res.body.job_id;
};

const keyA = await createKey({ tenant: "ta", label: "tenant A" });
const keyB = await createKey({ tenant: "tb" });
const revoked = await createKey({ tenant: "ta" });
const jobA = await submit(keyA.key, { type: "echo", payload: { a: 1 } });
const jobB = await submit(keyB.key, { type: "echo", payload: { b: 1 } });

t.test("supervisors and gateways say at start that auth is on", async (t) => {
  t.ok(sup1.proc.logs.some((l) => l.msg?.toString().startsWith("auth on")), "one line says auth on");
});

t.test("keys: shown once, listed without secrets, bound to a tenant or admin", async (t) => {
  t.match(keyA, { key_id: /^[A-Za-z0-9]{16}$/, key: /^bsk_/, tenant: "ta", admin: false });
  const list = await http<{ keys: Record<string, unknown>[] }>(gw2, "GET", "/api/admin/keys", as(ADMIN_KEY));
  t.equal(list.status, 200);
  const listedA = list.body.keys.find((k) => k.key_id === keyA.key_id);
  t.match(listedA, { tenant: "ta", admin: false, label: "tenant A" }, "listed through the other gateway");
  t.notOk(JSON.stringify(list.body).includes(keyA.key.slice(-20)), "no secret in the listing");
  t.notOk(list.body.keys.some((k) => "hash" in k || "key" in k), "no hash either");
  for (const bad of [{}, { tenant: "x", admin: true }, { admin: false }, { tenant: "a.b" }, { tenant: "_" }]) {
    t.equal((await http(gw1, "POST", "/api/admin/keys", { body: bad, ...as(ADMIN_KEY) })).status, 400, `refused: ${JSON.stringify(bad)}`);
  }
  const admin = await createKey({ admin: true });
  t.equal((await http(gw2, "GET", "/api/admin/ops", as(admin.key))).status, 200, "a created admin key works at once, elsewhere");
  t.equal((await http(gw1, "DELETE", "/api/admin/keys/bootstrap", as(ADMIN_KEY))).status, 409, "the bootstrap key is revoked in the environment");
  t.equal((await http(gw1, "DELETE", "/api/admin/keys/NoSuchKey0000000", as(ADMIN_KEY))).status, 404, "unknown key id: 404");
});

t.test("bosun keys create|list|revoke: the key printed once, listed without it, refused once revoked", async (t) => {
  const cli = (args: string[], key = ADMIN_KEY) => runCli(args, { env: { NATS_URL: server.url, BOSUN_API_KEY: key } });
  const created = await cli(["keys", "create", "--tenant", "cli-t", "--label", "from the CLI", "--json"]);
  t.equal(created.code, 0, "create exits 0", { stderr: created.stderr });
  const key = JSON.parse(created.stdout) as CreatedKey;
  t.match(key, { tenant: "cli-t", admin: false }, "a tenant key");
  const listed = await cli(["keys", "list"]);
  t.equal(listed.code, 0, "list exits 0");
  t.match(listed.stdout, key.key_id, "list names it");
  t.notMatch(listed.stdout, key.key, "without its secret");
  const denied = await cli(["keys", "list"], key.key);
  t.equal(denied.code === 0, false, "a tenant key may not list keys");
  t.match(denied.stderr, /403|forbidden|admin/i, "and is told why");
  const usage = await cli(["keys", "create"]);
  t.equal(usage.code, 2, "create without --tenant or --admin is a usage error");
  const revoked = await cli(["keys", "revoke", key.key_id]);
  t.equal(revoked.code, 0, "revoke exits 0");
  await waitFor(async () => (await http(gw1, "GET", "/api/jobs", as(key.key))).status === 401, { timeoutMs: 1000, what: "the revoked key refused" });
  t.pass("the revoked key is refused within a second");
});

t.test("a key revoked through one gateway is refused through the other within a second", async (t) => {
  t.equal((await http(gw2, "GET", `/api/jobs/${jobA}`, as(revoked.key))).status, 200, "works before");
  const started = Date.now();
  t.equal((await http(gw1, "DELETE", `/api/admin/keys/${revoked.key_id}`, as(ADMIN_KEY))).status, 200, "revoked");
  await waitFor(async () => (await http(gw2, "GET", `/api/jobs/${jobA}`, as(revoked.key))).status === 401, { timeoutMs: 1000, intervalMs: 10, what: "the revoke everywhere" });
  t.ok(Date.now() - started < 1000, `refused after ${Date.now() - started} ms`);
  // Both supervisors answer in turn: every one of these must be refused.
  for (let i = 0; i < 20; i++) t.equal((await http(gw2, "GET", `/api/jobs/${jobA}`, as(revoked.key))).status, 401);
});

t.test("an open event stream ends when its key is revoked", async (t) => {
  const admin = await createKey({ admin: true });
  const tenant = await createKey({ tenant: "ta" });
  const slow = await http<SubmitReply>(gw1, "POST", "/api/jobs", { body: { type: "sleep", payload: { ms: 20_000 } }, ...as(tenant.key) });
  const open = async (url: string, key: string) => {
    const res = await fetch(`${gw2}${url}`, { headers: { ...bearer(key), accept: "text/event-stream" }, signal: AbortSignal.timeout(15_000) });
    t.equal(res.status, 200, `${url} streams`);
    const reader = res.body!.getReader();
    await reader.read();
    return async () => {
      while (!(await reader.read()).done);
    };
  };
  for (const [url, key] of [
    ["/api/platform/workers/stream", admin],
    [`/api/jobs/${slow.body.job_id}/events`, tenant],
  ] as const) {
    const ended = (await open(url, key.key))();
    const started = Date.now();
    t.equal((await http(gw1, "DELETE", `/api/admin/keys/${key.key_id}`, as(ADMIN_KEY))).status, 200, "revoked through the other gateway");
    await ended;
    t.ok(Date.now() - started < 1000, `${url} ended ${Date.now() - started} ms after the revoke`);
  }
  await http(gw1, "POST", `/api/jobs/${slow.body.job_id}/cancel`, as(ADMIN_KEY));
});

/** A valid request for every route: a new route without one here fails this test. */
type Sample = { body?: unknown; query?: string; headers?: Record<string, string> };
const samples: Record<string, Sample> = {
  submitJob: { body: { type: "echo", payload: {} } },
  submitJobs: { body: { jobs: [{ type: "echo", payload: {} }] } },
  listJobs: {},
  getJob: {},
  getJobResult: {},
  cancelJob: {},
  retryJob: {},
  listWorkers: {},
  recycleWorker: {},
  getQueueStatus: {},
  getOpsFlags: {},
  setOpsFlags: { body: { queues: { unused_q: { submissions_paused: false } } } },
  createKey: { body: { tenant: "tz" } },
  listKeys: {},
  revokeKey: {},
  listSchedules: {},
  createSchedule: { body: { schedule_id: "auth-sched", every_ms: 60_000, job: { type: "echo" } } },
  getSchedule: {},
  deleteSchedule: {},
  pauseSchedule: {},
  resumeSchedule: {},
  triggerSchedule: {},
  cleanupRuns: { body: {} },
  cleanupTempFiles: { body: {} },
  listJobFiles: {},
  createEnrollToken: { body: { queues: ["unused_q"] } },
  enrollServer: { body: { enroll_token: "not-a-token", name: "auth-srv" } },
  listServers: {},
  revokeServer: {},
  leaseJob: { body: { wait_ms: 0 } },
  heartbeatLease: { body: { lease_id: "NoSuchLease" } },
  postLeaseResult: { body: { lease_id: "NoSuchLease", result: null } },
  postLeaseFailure: { body: { lease_id: "NoSuchLease", error: { code: "x", message: "y" } } },
  postLeaseOutcomes: { body: { outcomes: [{ job_id: "nosuchjob", lease_id: "NoSuchLease", result: null }] } },
  listTargets: {},
  activateTarget: { body: { queue: "unused_q" } },
};
const pathOf = (url: string, jobId: string) => url.replace(":job_id", jobId).replace(":worker_id", "auth-s1").replace(":key_id", "NoSuchKey0000000").replace(":schedule_id", "auth-sched").replace(":server_id", "cs_none").replace(":target_id", "auth-target").replace(":name", "out.txt");
const streams = [
  { url: "/api/jobs/:job_id/events", access: "tenant" as const, jobParam: true },
  { url: "/api/platform/workers/stream", access: "admin" as const, jobParam: false },
];
/** The routes that carry a job file's bytes (not in the table: the gateway streams them). */
const fileRoutes = [
  { method: "GET" as const, url: "/api/jobs/:job_id/files/:name", access: "tenant" as const, jobParam: true, sample: {} as Sample },
  { method: "PUT" as const, url: "/api/compute/jobs/:job_id/files/:name", access: "compute" as const, jobParam: true, sample: { body: "bytes", headers: { "bosun-lease-id": "NoSuchLease" } } as Sample },
  { method: "GET" as const, url: "/api/compute/jobs/:job_id/files/:name", access: "compute" as const, jobParam: true, sample: { headers: { "bosun-lease-id": "NoSuchLease" } } as Sample },
];

t.test("every HTTP route: 401 without a usable key, 403 for a tenant key on admin routes, 404 on another tenant's job", async (t) => {
  const routes = [
    ...httpRoutes.map((r) => ({ method: r.method, url: r.url, access: accessOf(r), jobParam: r.url.includes(":job_id"), sample: samples[r.operationId], name: r.operationId })),
    ...streams.map((s) => ({ method: "GET" as const, url: s.url, access: s.access, jobParam: s.jobParam, sample: {} as Sample | undefined, name: s.url })),
    ...fileRoutes.map((f) => ({ ...f, sample: f.sample as Sample | undefined, name: `${f.method} ${f.url}` })),
  ];
  for (const route of routes) {
    t.ok(route.sample, `${route.name} has a sample request in this test`);
    const send = (key: string | undefined, jobId = jobB): Promise<HttpReply<{ error?: { code: string; message: string } }>> =>
      http(route.name === route.url ? gw2 : gw1, route.method, pathOf(route.url, jobId) + (route.sample?.query ?? ""), {
        body: route.sample?.body,
        headers: { ...(key === undefined ? {} : bearer(key)), accept: "application/json, text/event-stream", ...route.sample?.headers },
      });
    const label = `${route.method} ${route.url}`;
    t.equal((await send(undefined)).status, 401, `${label}: no key`);
    t.equal((await send("not-a-key-at-all-but-long-enough")).status, 401, `${label}: unknown key`);
    t.equal((await send(revoked.key)).status, 401, `${label}: revoked key`);
    const malformed = await http(gw1, route.method, pathOf(route.url, jobB), { body: route.sample?.body, headers: { authorization: "Basic abc", ...route.sample?.headers } });
    t.equal(malformed.status, 401, `${label}: not a bearer key`);
    if (route.access === "admin") {
      const res = await send(keyA.key);
      t.equal(res.status, 403, `${label}: tenant key on an admin route`);
      t.equal(res.body.error?.code, "forbidden");
    } else if (route.access === "compute" || route.access === "enroll") {
      // A compute server's credential or an enroll token, never an API key, opens these.
      t.equal((await send(ADMIN_KEY)).status, 401, `${label}: an API key is no compute credential`);
    } else if (route.jobParam) {
      const theirs = await send(keyA.key, jobB);
      // An id in A's own lane that was never given out: what "not there" looks like to A.
      const unknown = await send(keyA.key, `${jobA.slice(0, 8)}${"Z".repeat(22)}`);
      t.equal(theirs.status, 404, `${label}: tenant A on tenant B's job`);
      t.same(theirs.body.error?.message.replace(jobB, "ID"), unknown.body.error?.message.replace(/\S{30}/, "ID"), `${label}: the same answer as an unknown id`);
    }
  }
});

/** A valid NATS request for every operation. */
const natsSamples = (jobId: string): Record<OperationName, unknown> => ({
  jobs_submit: { type: "echo" },
  jobs_submit_batch: { jobs: [{ type: "echo" }] },
  jobs_get: { job_id: jobId },
  jobs_result: { job_id: jobId },
  jobs_cancel: { job_id: jobId },
  jobs_retry: { job_id: jobId },
  jobs_list: {},
  workers_list: {},
  workers_recycle: { worker_id: "auth-s1" },
  queue_status: {},
  ops_get: {},
  ops_set: {},
  keys_create: { tenant: "tz" },
  keys_list: {},
  keys_revoke: { key_id: "NoSuchKey0000000" },
  schedules_create: { schedule_id: "auth-sched", every_ms: 60_000, job: { type: "echo" } },
  schedules_list: {},
  schedules_get: { schedule_id: "auth-sched" },
  schedules_delete: { schedule_id: "auth-sched" },
  schedules_pause: { schedule_id: "auth-sched" },
  schedules_resume: { schedule_id: "auth-sched" },
  schedules_trigger: { schedule_id: "auth-sched" },
  jobs_files_list: { job_id: jobId },
  jobs_files_get: { job_id: jobId, name: "out.txt" },
  compute_enroll_tokens_create: { queues: ["default"] },
  compute_servers_enroll: { enroll_token: "x", name: "s1" },
  compute_servers_list: {},
  compute_servers_revoke: { server_id: "s1" },
  compute_lease: { wait_ms: 0 },
  compute_heartbeat: { job_id: jobId, lease_id: "L1" },
  compute_result: { job_id: jobId, lease_id: "L1" },
  compute_failed: { job_id: jobId, lease_id: "L1", error: { code: "x", message: "y" } },
  compute_file_check: { job_id: jobId, lease_id: "L1", name: "out.txt" },
  compute_outcomes: { outcomes: [{ job_id: jobId, lease_id: "L1", result: null }] },
  compute_file_get: { job_id: jobId, lease_id: "L1", name: "out.txt" },
  targets_list: {},
  targets_activate: { target_id: "default", queue: "default" },
});

t.test("every NATS operation and the control subjects: the same answers as over HTTP", async (t) => {
  const sample = natsSamples(jobB);
  for (const name of Object.keys(operations) as OperationName[]) {
    const subject = operations[name].subject;
    const ask = (key?: string) => requestJson<{ error?: { code: string } }>(nc, subject, sample[name], key ? { headers: bearer(key) } : {});
    t.equal((await ask()).errorCode, "401", `${name}: no header`);
    t.equal((await ask("junk-key-junk-key-junk-key-junk")).errorCode, "401", `${name}: unknown key`);
    if (operations[name].access === "admin") t.equal((await ask(keyA.key)).errorCode, "403", `${name}: tenant key on an admin operation`);
    else if (operations[name].access !== "tenant") t.equal((await ask(ADMIN_KEY)).errorCode, "401", `${name}: an API key is no compute credential`);
    else if ("job_id" in (sample[name] as object)) t.equal((await ask(keyA.key)).errorCode, "404", `${name}: tenant A on tenant B's job`);
    else t.equal((await ask(keyA.key)).errorCode, undefined, `${name}: tenant A's own`);
  }
  for (const subject of ["bosun.control.auth-s1.submit", "bosun.control.auth-s1.recycle"]) {
    const body = subject.endsWith("submit") ? { type: "echo" } : { worker_id: "auth-s1" };
    t.equal((await requestJson(nc, subject, body)).errorCode, "401", `${subject}: no key`);
    t.equal((await requestJson(nc, subject, body, { headers: bearer(keyA.key) })).errorCode, subject.endsWith("submit") ? undefined : "403", `${subject}: tenant key`);
  }
  t.equal((await requestJson(nc, "bosun.control.auth-s1.submit", { type: "echo", tenant: "tb" }, { headers: bearer(keyA.key) })).errorCode, "403", "a forwarded submit for another tenant");
});

t.test("a NATS request's Authorization header is read whatever its case (one reader for the gate, forwarded submits and compute credentials)", async (t) => {
  for (const name of ["Authorization", "authorization", "AUTHORIZATION"]) {
    const h = natsHeaders();
    h.set(name, "Bearer some-key");
    t.equal(authorizationHeaderOf(h), "Bearer some-key", name);
  }
  t.equal(authorizationHeaderOf(undefined), undefined, "no headers");
});

t.test("every tenant operation says how a tenant key is confined", async (t) => {
  for (const name of Object.keys(operations) as OperationName[]) {
    if (operations[name].access === "tenant") t.ok(tenantScopes[name], `${name} has a tenant scope`);
  }
});

t.test("submits: a tenant key's jobs are its tenant's; another tenant or an admin job type is 403", async (t) => {
  const own = await http<{ tenant: string }>(gw1, "GET", `/api/jobs/${jobA}`, as(keyA.key));
  t.equal(own.status, 200);
  t.equal(own.body.tenant, "ta", "submitted without a tenant: its key's");
  t.equal((await http(gw1, "POST", "/api/jobs", { body: { type: "echo", tenant: "tb" }, ...as(keyA.key) })).status, 403, "another tenant in the body");
  t.equal((await http(gw1, "POST", "/api/jobs", { body: { type: "echo", tenant: "ta" }, ...as(keyA.key) })).status, 202, "its own tenant named");
  t.equal((await http(gw1, "POST", "/api/jobs", { body: { type: "maintenance.cleanup_runs" }, ...as(keyA.key) })).status, 403, "maintenance.* by the submit route");
  t.equal((await http(gw1, "POST", "/api/jobs/batch", { body: { jobs: [{ type: "echo" }, { type: "echo", tenant: "tb" }] }, ...as(keyA.key) })).status, 403, "batch with another tenant's entry");
  t.equal((await http(gw1, "POST", "/api/jobs/batch", { body: { jobs: [{ type: "maintenance.cleanup_runs" }] }, ...as(keyA.key) })).status, 403, "batch with a maintenance job");
  const batch = await http<{ jobs: SubmitReply[] }>(gw1, "POST", "/api/jobs/batch", { body: { jobs: [{ type: "echo" }] }, ...as(keyA.key) });
  const batched = await http<{ tenant: string }>(gw1, "GET", `/api/jobs/${batch.body.jobs[0]!.job_id}`, as(ADMIN_KEY));
  t.equal(batched.body.tenant, "ta", "a batch entry is its key's tenant's");
  t.equal((await http(gw1, "POST", "/api/jobs", { body: { type: "maintenance.cleanup_runs" }, ...as(ADMIN_KEY) })).status, 202, "an admin may");
});

t.test("listing, idempotency and events are per tenant", async (t) => {
  const listA = await http<{ jobs: { job_id: string; tenant: string | null }[] }>(gw1, "GET", "/api/jobs?limit=1000", as(keyA.key));
  t.equal(listA.status, 200);
  t.ok(listA.body.jobs.some((j) => j.job_id === jobA), "A sees its job");
  t.ok(listA.body.jobs.every((j) => j.tenant === "ta"), "and only its tenant's");
  t.equal((await http(gw1, "GET", "/api/jobs?tenant=tb", as(keyA.key))).status, 403, "asking for another tenant's listing");
  const all = await http<{ jobs: { job_id: string }[] }>(gw1, "GET", "/api/jobs?limit=1000", as(ADMIN_KEY));
  t.ok(all.body.jobs.some((j) => j.job_id === jobB) && all.body.jobs.some((j) => j.job_id === jobA), "an admin sees both");

  const idem = { type: "echo", payload: { same: true }, idempotency_key: "shared-key" };
  const a = await http<SubmitReply & { duplicate?: boolean }>(gw1, "POST", "/api/jobs", { body: idem, ...as(keyA.key) });
  const b = await http<SubmitReply & { duplicate?: boolean }>(gw1, "POST", "/api/jobs", { body: idem, ...as(keyB.key) });
  t.not(a.body.job_id, b.body.job_id, "the same idempotency key in two tenants: two jobs");
  t.notOk(b.body.duplicate, "B's is not a duplicate of A's");

  const events = await fetch(`${gw1}/api/jobs/${jobA}/events`, { headers: { ...bearer(keyA.key), accept: "text/event-stream" }, signal: AbortSignal.timeout(5000) });
  t.equal(events.status, 200, "A streams its own job's events");
  t.match(await events.text(), /succeeded/, "up to its end");
});

t.test("start-up refusals, one clear line each", async (t) => {
  // A value that is not one of the flag's (BOSUN_AUTH=maybe) is a bad flag like any other: exit 2.
  const cases: { args: string[]; env: Record<string, string>; says: RegExp; code?: number }[] = [
    { args: ["supervisor"], env: { BOSUN_AUTH: "on" }, says: /BOSUN_ADMIN_KEY is not set/ },
    { args: ["supervisor"], env: { BOSUN_AUTH: "maybe", BOSUN_ADMIN_KEY: ADMIN_KEY }, says: /BOSUN_AUTH.*on or off/, code: 2 },
    { args: ["supervisor"], env: { BOSUN_ADMIN_KEY: "short" }, says: /not a usable admin key/ },
    { args: ["gateway"], env: { BOSUN_AUTH: "on" }, says: /BOSUN_ADMIN_KEY is not set/ },
    { args: ["gateway", "--host", "0.0.0.0"], env: {}, says: /refusing to listen on 0\.0\.0\.0 with auth off/ },
  ];
  for (const c of cases) {
    const res = await runCli(c.args, { env: { NATS_URL: server.url, ...c.env }, timeoutMs: 10_000 });
    t.equal(res.code, c.code ?? 1, `${c.args.join(" ")} ${JSON.stringify(c.env)}: exits ${c.code ?? 1}`);
    t.match(res.stderr, c.says, "and says why");
    t.equal(res.stderr.trim().split("\n").length, 1, "in one line");
  }
  const open = await startGateway(t, server.url, { args: ["--host", "0.0.0.0", "--insecure-no-auth"] });
  t.ok(open.proc.logs.some((l) => String(l.msg).startsWith("auth OFF")), "--insecure-no-auth starts it, saying auth is off");
});
