/**
 * Targets and cutover against a real nats-server, real supervisors and a
 * gateway: a queue switched from target a to b mid-stream (old jobs drain
 * on a, new ones run on b, none twice, none lost), GET /api/targets, and
 * the ops flag compute_endpoints_enabled turning every compute route 404.
 */
import t from "tap";
import { startGateway, startSupervisor } from "./helpers/bosun.js";
import { http, type ErrorReply } from "./helpers/http.js";
import { connectClient, requestJson } from "./helpers/nats-client.js";
import { NatsServer } from "./helpers/nats-server.js";
import { uniqueName, waitFor } from "./helpers/wait.js";

const server = await NatsServer.start(t);
const nc = await connectClient(t, server.url);
const gateway = await startGateway(t, server.url);
const gw = gateway.baseUrl;

interface Job {
  state: string;
  attempts: number;
  owner: { worker_id?: string } | null;
}

t.test("a queue switched from target a to b mid-stream: old jobs drain on a, new ones run on b, each once", async (t) => {
  const queue = uniqueName("q");
  const args = (target: string) => ["--target", target, "--min", "2", "--max", "2", "--heartbeat-ms", "300"];
  const a = await startSupervisor(t, server.url, { queues: [queue], workerId: uniqueName("a"), args: args("a") });
  const b = await startSupervisor(t, server.url, { queues: [queue], workerId: uniqueName("b"), args: args("b") });
  const aId = a.workerId!;
  const bId = b.workerId!;
  const activate = (target: string) => http<{ previous: string }>(gw, "PUT", `/api/targets/${target}/active`, { body: { queue } });
  t.equal((await activate("a")).status, 200, "a is active");
  await waitFor(async () => ((await http<{ targets: { target_id: string; supervisors: string[] }[] }>(gw, "GET", "/api/targets")).body.targets.find((x) => x.target_id === "b")?.supervisors.length ?? 0) > 0, { what: "both targets live" });
  const submit = async () => {
    const res = await http<{ job_id: string }>(gw, "POST", "/api/jobs", { body: { type: "sleep", queue, payload: { ms: 20 } } });
    if (res.status !== 202) throw new Error(`submit: ${res.status} ${res.text}`);
    return res.body.job_id;
  };
  const before: string[] = [];
  for (let i = 0; i < 40; i++) before.push(await submit());
  const switched = await activate("b");
  t.equal(switched.status, 200);
  t.equal(switched.body.previous, "a");
  await waitFor(async () => (await http<{ queues: Record<string, { active_target?: string }> }>(gw, "GET", "/api/admin/ops")).body.queues[queue]?.active_target === "b", { what: "the switch seen" });
  const after: string[] = [];
  for (let i = 0; i < 40; i++) after.push(await submit());
  const final = async (id: string) => waitFor(async () => {
    const job = (await http<Job>(gw, "GET", `/api/jobs/${id}`)).body;
    return job.state === "succeeded" ? job : undefined;
  }, { timeoutMs: 30_000, what: `${id} succeeded` });
  for (const id of before) {
    const job = await final(id);
    t.equal(job.owner?.worker_id, aId, "submitted before the switch: ran on a");
    t.equal(job.attempts, 1, "once");
  }
  for (const id of after) {
    const job = await final(id);
    t.equal(job.owner?.worker_id, bId, "submitted after: ran on b");
    t.equal(job.attempts, 1, "once");
  }
  const listed = (await http<{ targets: { target_id: string; supervisors: string[]; active_for: string[] }[] }>(gw, "GET", "/api/targets")).body.targets;
  t.same(listed.find((x) => x.target_id === "a")?.supervisors, [aId]);
  t.ok(listed.find((x) => x.target_id === "b")?.active_for.includes(queue), "b is active for the queue");
  const bad = await http<ErrorReply>(gw, "PUT", "/api/targets/no%20spaces/active", { body: { queue } });
  t.equal(bad.status, 400, "a bad target name: 400");
  const unknownField = await http<ErrorReply>(gw, "PUT", "/api/targets/a/active", { body: { queue, extra: 1 } });
  t.equal(unknownField.status, 400, "an unknown field: 400");
  t.equal((await http<{ queues: Record<string, { active_target?: string }> }>(gw, "GET", "/api/admin/ops")).body.queues[queue]?.active_target, "b", "nothing changed");
  // Back to the default target: no supervisor serves it, so submits are refused rather than left waiting.
  await activate("default");
  await waitFor(async () => (await http(gw, "POST", "/api/jobs", { body: { type: "sleep", queue, payload: { ms: 1 } } })).status === 422, { what: "422 with no supervisor of the active target" });
});

t.test("compute_endpoints_enabled=false: every compute route answers 404 within a second, over HTTP and NATS; true brings them back", async (t) => {
  await startSupervisor(t, server.url, { queues: ["default"], args: ["--heartbeat-ms", "300"] });
  const lease = () => http(gw, "POST", "/api/compute/jobs/lease", { body: { wait_ms: 0 }, headers: { authorization: "Bearer cs_x.y" } });
  t.equal((await lease()).status, 401, "on: the route is there (no credential)");
  const off = await http<{ compute_endpoints_enabled: boolean }>(gw, "PATCH", "/api/admin/ops", { body: { compute_endpoints_enabled: false } });
  t.equal(off.status, 200);
  t.equal(off.body.compute_endpoints_enabled, false);
  const offAt = Date.now();
  await waitFor(async () => (await lease()).status === 404, { timeoutMs: 1000, what: "404 within a second" });
  t.ok(Date.now() - offAt < 1000);
  t.equal((await http(gw, "GET", "/api/compute/servers")).status, 404, "an admin compute route too");
  t.equal((await requestJson(nc, "bosun.api.compute.jobs.lease", { wait_ms: 0 })).errorCode, "404", "and over NATS");
  t.equal((await http(gw, "GET", "/api/targets")).status, 200, "other routes are untouched");
  await http(gw, "PATCH", "/api/admin/ops", { body: { compute_endpoints_enabled: true } });
  await waitFor(async () => (await lease()).status === 401, { timeoutMs: 1000, what: "back within a second" });
});
