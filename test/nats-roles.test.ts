/**
 * NATS roles: nats.conf's users and the docs' table are what
 * src/platform/nats-roles.ts renders; a nats-server on that config runs a
 * supervisor and a gateway under their own users through their normal work
 * (the server logs no permissions violation), and each role's forbidden
 * publish and subscribe are refused by the server.
 */
import t from "tap";
import { rmSync } from "node:fs";
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { connect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/nats-core";
import { startGateway, startSupervisor } from "./helpers/bosun.js";
import { http, type JobResult, type SubmitReply } from "./helpers/http.js";
import { NatsServer } from "./helpers/nats-server.js";
import { waitFor } from "./helpers/wait.js";
import { natsUser, passwordEnv, renderAuthorization, renderRoleTable, roles, type Role } from "../src/platform/nats-roles.js";

const ROOT = new URL("../", import.meta.url);
const conf = await readFile(new URL("nats.conf", ROOT), "utf8");

const passwords = Object.fromEntries((Object.keys(roles) as Role[]).map((r) => [passwordEnv(r), `pw-${r}-${Math.random().toString(36).slice(2)}`]));
const as = (role: Role) => ({ NATS_USER: natsUser(role), NATS_PASSWORD: passwords[passwordEnv(role)]! });
const dir = await mkdtemp(path.join(os.tmpdir(), "bosun-roles-"));
const file = path.join(dir, "nats.conf");
// The test server's own port, no monitoring port (tests run side by side).
await writeFile(file, conf.replace(/^listen:.*$/m, "").replace(/^http:.*$/m, "").replace(/store_dir: .*$/m, `store_dir: ${JSON.stringify(path.join(dir, "js"))}`));
// At exit: a top-level teardown would run as soon as the first subtest ends.
process.once("exit", () => rmSync(dir, { recursive: true, force: true }));
const server = await NatsServer.start(t, { configFile: file, env: passwords, probeAs: { user: natsUser("admin"), pass: passwords[passwordEnv("admin")]! } });
const ADMIN_KEY = "roles-test-admin-key-0123456789";
const HANDLERS = path.resolve(import.meta.dirname, "fixtures/files-handlers.js");
const sup = await startSupervisor(t, server.url, { queues: ["default"], workerId: "roles-s1", env: { ...as("supervisor"), BOSUN_ADMIN_KEY: ADMIN_KEY }, args: ["--min", "1", "--handlers", HANDLERS] });
const gateway = await startGateway(t, server.url, { env: { ...as("gateway"), BOSUN_ADMIN_KEY: ADMIN_KEY } });
const gw = gateway.baseUrl;
const key = { authorization: `Bearer ${ADMIN_KEY}` };
const violations = () => (server.process?.tail(400) ?? "").split("\n").filter((l) => /Permissions Violation/i.test(l));

// Every subtest is defined after the awaits above: tap ends the file once its queued subtests are done.
t.test("nats.conf's and the cluster's users and docs/security.md's table are rendered from the roles module", async (t) => {
  const block = conf.slice(conf.indexOf("# BEGIN roles"), conf.indexOf("# END roles") + "# END roles".length);
  t.equal(block, renderAuthorization(), "nats.conf: `npm run build && node scripts/render-roles.mjs` renders it");
  const cluster = await readFile(new URL("nats-cluster/roles.conf", ROOT), "utf8");
  t.ok(cluster.includes(renderAuthorization()), "nats-cluster/roles.conf too");
  for (const n of [1, 2, 3]) t.match(await readFile(new URL(`nats-cluster/node-${n}.conf`, ROOT), "utf8"), /^include \.\/roles\.conf$/m, `node-${n}.conf includes it`);
  const docs = await readFile(new URL("docs/security.md", ROOT), "utf8");
  t.ok(docs.includes(renderRoleTable()), "docs/security.md has the rendered table");
});

t.test("a supervisor and a gateway do their normal work under their own users", async (t) => {
  const done = await http<JobResult>(gw, "POST", "/api/jobs?wait_ms=10000", { body: { type: "echo", payload: { hi: 1 } }, headers: key });
  t.equal(done.status, 200, "submit and wait");
  const id = done.body.job_id;
  t.equal((await http(gw, "GET", `/api/jobs/${id}`, { headers: key })).status, 200, "status");
  t.equal((await http(gw, "GET", `/api/jobs/${id}/result`, { headers: key })).status, 200, "result");
  t.equal((await http(gw, "GET", "/api/jobs?limit=10", { headers: key })).status, 200, "list");
  const events = await fetch(`${gw}/api/jobs/${id}/events`, { headers: { ...key, accept: "text/event-stream" }, signal: AbortSignal.timeout(5000) });
  t.match(await events.text(), /succeeded/, "events of a finished job");
  const delayed = await http<SubmitReply>(gw, "POST", "/api/jobs", { body: { type: "echo", delay_ms: 1500 }, headers: key });
  const live = await fetch(`${gw}/api/jobs/${delayed.body.job_id}/events`, { headers: { ...key, accept: "text/event-stream" }, signal: AbortSignal.timeout(10_000) });
  const text = await live.text();
  t.match(text, /scheduled[\s\S]*succeeded/, "events of a delayed job: from scheduled to its end");
  const later = await http<SubmitReply>(gw, "POST", "/api/jobs", { body: { type: "echo", delay_ms: 60_000 }, headers: key });
  t.equal((await http(gw, "POST", `/api/jobs/${later.body.job_id}/cancel`, { headers: key })).status, 202, "cancel");
  t.equal((await http(gw, "GET", "/api/platform/workers", { headers: key })).status, 200, "workers");
  t.equal((await http(gw, "GET", "/api/platform/queue", { headers: key })).status, 200, "queue status");
  t.equal((await http(gw, "PATCH", "/api/admin/ops", { body: { queues: { other: { submissions_paused: true } } }, headers: key })).status, 200, "ops set");
  const created = await http<{ key_id: string; key: string }>(gw, "POST", "/api/admin/keys", { body: { tenant: "acme" }, headers: key });
  t.equal(created.status, 201, "key created");
  t.equal((await http(gw, "GET", "/api/jobs", { headers: { authorization: `Bearer ${created.body.key}` } })).status, 200, "and used");
  t.equal((await http(gw, "DELETE", `/api/admin/keys/${created.body.key_id}`, { headers: key })).status, 200, "and revoked");
  const cleanup = await http<{ task_id: string }>(gw, "POST", "/api/system/maintenance/cleanup-runs", { body: {}, headers: key });
  await waitFor(async () => (await http<{ state: string }>(gw, "GET", `/api/jobs/${cleanup.body.task_id}`, { headers: key })).body.state === "succeeded", {
    timeoutMs: 10_000,
    what: "a maintenance task (its execution process connects as the supervisor)",
  });
  const stream = await fetch(`${gw}/api/platform/workers/stream`, { headers: { ...key, accept: "text/event-stream" }, signal: AbortSignal.timeout(10_000) });
  const reader = stream.body!.getReader();
  const first = new TextDecoder().decode((await reader.read()).value);
  await reader.cancel();
  t.match(first, /worker_heartbeat|:/, "workers stream");
  const files = await http<JobResult>(gw, "POST", "/api/jobs?wait_ms=10000", { body: { type: "files.write", payload: { files: [{ name: "a.bin", bytes: 300_000 }] } }, headers: key });
  t.equal(files.status, 200, "a handler writes a file (its execution process connects as the supervisor)");
  t.equal((await http(gw, "GET", `/api/jobs/${files.body.job_id}/files`, { headers: key })).status, 200, "its files listed");
  const file = await fetch(`${gw}/api/jobs/${files.body.job_id}/files/a.bin`, { headers: key, signal: AbortSignal.timeout(5000) });
  t.equal((await file.arrayBuffer()).byteLength, 300_000, "and downloaded (the gateway reads the object store)");
  const token = await http<{ token: string }>(gw, "POST", "/api/compute/enroll-tokens", { body: { queues: ["remote"] }, headers: key });
  const srv = await http<{ credential: string }>(gw, "POST", "/api/compute/servers", { body: { enroll_token: token.body.token, name: "roles-srv" } });
  const cred = { authorization: `Bearer ${srv.body.credential}` };
  const remote = await http<SubmitReply>(gw, "POST", "/api/jobs", { body: { type: "remote.x", queue: "remote" }, headers: key });
  const lease = await http<{ lease: { lease_id: string } }>(gw, "POST", "/api/compute/jobs/lease", { body: { wait_ms: 5000 }, headers: cred });
  const put = await fetch(`${gw}/api/compute/jobs/${remote.body.job_id}/files/up.bin`, { method: "PUT", body: Buffer.alloc(200_000, 1), headers: { ...cred, "bosun-lease-id": lease.body.lease.lease_id }, signal: AbortSignal.timeout(5000) });
  t.equal(put.status, 201, "a compute server uploads a file (the gateway writes the object store)");
  t.equal((await http(gw, "POST", `/api/compute/jobs/${remote.body.job_id}/result`, { body: { lease_id: lease.body.lease.lease_id }, headers: cred })).status, 200, "and ends its lease");
  t.equal((await http(gw, "GET", "/readyz")).status, 200, "readyz");
  t.same(violations(), [], "the server logged no permissions violation");
  t.notOk(JSON.stringify(sup.proc.logs).includes("Permissions Violation"), "nor did the supervisor");
  t.notOk(JSON.stringify(gateway.proc.logs).includes("Permissions Violation"), "nor the gateway");
});

async function connectAs(t: { teardown(fn: () => unknown): void }, role: Role): Promise<NatsConnection> {
  const nc = await connect({ servers: server.url, user: natsUser(role), pass: passwords[passwordEnv(role)]!, noAsyncTraces: true });
  t.teardown(() => nc.close());
  return nc;
}
const refusedPublish = async (nc: NatsConnection, subject: string) => {
  const err = await nc.request(subject, "{}", { timeout: 3000 }).then(
    () => undefined,
    (e: Error) => e,
  );
  return /Permissions Violation for Publish/i.test(String(err?.message));
};
const refusedSubscribe = async (nc: NatsConnection, subject: string) => {
  let seen: Error | undefined;
  nc.subscribe(subject, {
    callback: (err) => {
      seen ??= err ?? undefined;
    },
  });
  await nc.flush();
  await waitFor(() => seen, { timeoutMs: 3000, what: `the server to refuse a subscription to ${subject}` }).catch(() => undefined);
  return /Permissions Violation for Subscription/i.test(String(seen?.message));
};

const forbidden: Record<Exclude<Role, "admin">, { publish: string[]; subscribe: string[] }> = {
  gateway: { publish: ["$JS.API.STREAM.DELETE.BOSUN_JOBS", "bosun.results.x.y", "$KV.bosun_keys.x"], subscribe: ["bosun.jobs.>", "bosun.api.>"] },
  supervisor: { publish: ["$JS.API.STREAM.DELETE.BOSUN_JOBS", "$JS.API.ACCOUNT.PURGE.x", "$SYS.REQ.SERVER.PING"], subscribe: ["$SYS.>"] },
  compute: { publish: ["bosun.jobs.x.y", "bosun.results.x.y", "bosun.heartbeats.x", "$KV.bosun_jobs.x"], subscribe: ["bosun.jobs.>"] },
};

for (const role of Object.keys(forbidden) as (keyof typeof forbidden)[]) {
  t.test(`${role}: forbidden publishes and subscriptions are refused by the server`, async (t) => {
    const nc = await connectAs(t, role);
    for (const subject of forbidden[role].publish) t.ok(await refusedPublish(nc, subject), `publish ${subject}`);
    for (const subject of forbidden[role].subscribe) t.ok(await refusedSubscribe(nc, subject), `subscribe ${subject}`);
  });
}

t.test("the admin user may do anything; no user, no connection", async (t) => {
  const nc = await connectAs(t, "admin");
  t.notOk(await refusedSubscribe(nc, "bosun.jobs.>"), "admin reads the job flow");
  const err = await connect({ servers: server.url, noAsyncTraces: true, reconnect: false }).then(
    (c) => c.close(),
    (e: Error) => e,
  );
  t.match(String(err), /Authorization/i, "an anonymous client is refused");
});
