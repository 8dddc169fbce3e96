/**
 * Targets and cutover against a real nats-server, real supervisors of two
 * targets and a real gateway: a queue's active target switched mid-stream
 * (jobs before it run on the old target, after it on the new one, each
 * once), GET /api/targets, a target only named as active, the
 * compute_endpoints_enabled switch over HTTP, NATS and the CLI, and bad
 * input and junk in the ops bucket that change nothing.
 */
import t from "tap";
import { Kvm } from "@nats-io/kv";
import { runCli, startGateway, startSupervisor } from "./helpers/bosun.js";
import { http, type ErrorReply, type JobStatus, type SubmitReply } from "./helpers/http.js";
import { connectClient, requestJson } from "./helpers/nats-client.js";
import { NatsServer } from "./helpers/nats-server.js";
import { uniqueName, waitFor } from "./helpers/wait.js";
import { buckets, laneCode, opsKeys } from "../src/contract/index.js";

const server = await NatsServer.start(t);
const nc = await connectClient(t, server.url);
const gateway = await startGateway(t, server.url);
const gw = gateway.baseUrl;
const nats = ["--nats", server.url];

interface TargetInfo {
  target_id: string;
  supervisors: string[];
  servers: string[];
  active_for: string[];
  queues: string[];
}
interface Flags {
  submissions_paused: boolean;
  compute_endpoints_enabled: boolean;
  queues: Record<string, { submissions_paused: boolean; active_target?: string }>;
}

const pool = (target: string, n = 1) => ["--target", target, "--min", String(n), "--max", String(n), "--heartbeat-ms", "300"];
const targets = async (): Promise<TargetInfo[]> => {
  const res = await http<{ targets: TargetInfo[] }>(gw, "GET", "/api/targets");
  if (res.status !== 200) throw new Error(`GET /api/targets: ${res.status} ${res.text}`);
  return res.body.targets;
};
const targetOf = async (id: string) => (await targets()).find((x) => x.target_id === id);
const opsFlags = async (): Promise<Flags> => (await http<Flags>(gw, "GET", "/api/admin/ops")).body;
const activate = (target: string, queue: string) => http<{ target_id: string; queue: string; previous: string } & ErrorReply>(gw, "PUT", `/api/targets/${target}/active`, { body: { queue } });
const status = async (jobId: string) => (await http<JobStatus>(gw, "GET", `/api/jobs/${jobId}`)).body;

t.test("a queue's active target switched mid-stream: jobs before it run on the old target, after it on the new, each exactly once, none lost", async (t) => {
  const queue = uniqueName("cut");
  const [a, b] = [uniqueName("a"), uniqueName("b")];
  // Two supervisors of the old target: a submit they take after the switch must go to b's, never to each other.
  const ids = { a: [uniqueName("sa"), uniqueName("sa")], b: [uniqueName("sb")] };
  await Promise.all([
    ...ids.a.map((workerId) => startSupervisor(t, server.url, { queues: [queue], workerId, args: pool(a) })),
    ...ids.b.map((workerId) => startSupervisor(t, server.url, { queues: [queue], workerId, args: pool(b, 2) })),
  ]);
  const first = await activate(a, queue);
  t.equal(first.status, 200, "PUT /api/targets/{a}/active");
  t.same(first.body, { target_id: a, queue, previous: "default" }, "the queue was on the default target before");
  // Every supervisor has heard from every other and from the ops bucket before the stream begins.
  await waitFor(async () => {
    const [ta, tb] = [await targetOf(a), await targetOf(b)];
    return ta?.supervisors.length === 2 && tb?.supervisors.length === 1 && ta.active_for.includes(queue);
  }, { timeoutMs: 15_000, what: "both targets listed with their supervisors" });

  // Sleeps of 40 ms on one process per old-target supervisor: its lane still holds a backlog at the switch.
  const sent: { jobId: string; sentAt: number; answeredAt: number }[] = [];
  const submit = async (ms = 40) => {
    const sentAt = Date.now();
    const res = await http<SubmitReply>(gw, "POST", "/api/jobs", { body: { type: "sleep", queue, payload: { ms } } });
    if (res.status !== 202) throw new Error(`submit: ${res.status} ${res.text}`);
    sent.push({ jobId: res.body.job_id, sentAt, answeredAt: Date.now() });
  };
  for (let i = 0; i < 40; i++) await submit();
  const switchSentAt = Date.now();
  const [switched] = await Promise.all([activate(b, queue), submit(), submit()]);
  const switchedAt = Date.now();
  t.equal(switched.status, 200, "PUT /api/targets/{b}/active mid-stream");
  t.same(switched.body, { target_id: b, queue, previous: a }, "it answers the target it replaced");
  const backlog = (await http<{ queues: { queue: string; pending: number }[] }>(gw, "GET", "/api/platform/queue")).body.queues.find((q) => q.queue === queue)?.pending ?? 0;
  // Every process applies the switch within a second: submits from then on are checked strictly.
  const appliedBy = switchedAt + 1000;
  while (Date.now() < appliedBy + 500 || sent.filter((s) => s.sentAt > appliedBy).length < 30) await submit(1);

  const byId = new Map<string, JobStatus>();
  await waitFor(async () => {
    for (const { jobId } of sent) if (byId.get(jobId)?.state !== "succeeded") byId.set(jobId, await status(jobId));
    return [...byId.values()].every((j) => j.state === "succeeded");
  }, { timeoutMs: 60_000, intervalMs: 200, what: "every job succeeded" });

  const ranOn = (jobId: string) => (ids.a.includes(byId.get(jobId)!.owner!.worker_id) ? a : ids.b.includes(byId.get(jobId)!.owner!.worker_id) ? b : "elsewhere");
  const before = sent.filter((s) => s.answeredAt <= switchSentAt);
  const after = sent.filter((s) => s.sentAt > appliedBy);
  const during = sent.filter((s) => !before.includes(s) && !after.includes(s));
  t.equal(before.length, 40, "40 submits answered before the switch was sent");
  t.same(before.filter((s) => ranOn(s.jobId) !== a), [], `every job submitted before the switch ran on ${a} (${backlog} were still waiting there at the switch)`);
  t.same(after.filter((s) => ranOn(s.jobId) !== b), [], `every one of the ${after.length} jobs submitted after it ran on ${b}`);
  const lateOnA = during.filter((s) => s.sentAt > switchedAt && ranOn(s.jobId) === a).length;
  t.same(during.filter((s) => ranOn(s.jobId) === "elsewhere"), [], `the ${during.length} submitted while it applied ran on one of the two (${lateOnA} sent after the switch's reply on ${a})`);
  t.ok(backlog > 0, `jobs were still queued for ${a} at the switch (${backlog}): they drained there`);
  // A job's lane is its target's, for life: its id says which.
  const lanes = { [a]: laneCode(queue, a, "n", null), [b]: laneCode(queue, b, "n", null) };
  t.same(sent.filter((s) => !s.jobId.startsWith(lanes[ranOn(s.jobId)]!)), [], "each job's id is in the lane of the target it ran on");
  const jobs = [...byId.values()];
  t.same(jobs.filter((j) => j.attempts !== 1), [], "every job ran once (attempts 1)");
  const listed: string[] = [];
  for (let cursor: string | null = ""; cursor !== null; ) {
    const page: { jobs: { job_id: string }[]; next_cursor: string | null } = (await http<{ jobs: { job_id: string }[]; next_cursor: string | null }>(gw, "GET", `/api/jobs?queue=${queue}&limit=500${cursor ? `&cursor=${cursor}` : ""}`)).body;
    listed.push(...page.jobs.map((j) => j.job_id));
    cursor = page.next_cursor;
  }
  t.equal(listed.length, sent.length, `the queue holds ${sent.length} jobs: each written once, none lost`);
  t.same([...new Set(listed)].sort(), sent.map((s) => s.jobId).sort(), "exactly the jobs submitted, none twice");
  t.comment(`${before.length} before, ${during.length} while applying, ${after.length} after; ${backlog} queued for ${a} at the switch`);

  const listedTargets = await targets();
  t.match(listedTargets.find((x) => x.target_id === a), { supervisors: [...ids.a].sort(), servers: [], active_for: [], queues: [queue] }, `GET /api/targets: ${a} with its supervisors, active for nothing now`);
  t.match(listedTargets.find((x) => x.target_id === b), { supervisors: ids.b, servers: [], active_for: [queue], queues: [queue] }, `GET /api/targets: ${b} active for ${queue}`);
  t.equal((await opsFlags()).queues[queue]?.active_target, b, "GET /api/admin/ops shows the queue's active target");
  const workers = (await http<{ worker_id: string; target: string }[]>(gw, "GET", "/api/platform/workers")).body;
  t.equal(workers.find((w) => w.worker_id === ids.b[0])?.target, b, "heartbeats carry the target");
});

t.test("a queue switched to a target nobody serves: listed with nobody in it, submits refused 422 as before; switched back, accepted again", async (t) => {
  const queue = uniqueName("empty");
  const nobody = uniqueName("nobody");
  await startSupervisor(t, server.url, { queues: [queue], args: pool("default") });
  t.equal((await activate(nobody, queue)).status, 200, "a target may be switched to before its pool is up");
  t.match(await targetOf(nobody), { supervisors: [], servers: [], active_for: [queue], queues: [] }, "GET /api/targets lists a target only named as active");
  const refused = await waitFor(async () => {
    const res = await http<ErrorReply>(gw, "POST", "/api/jobs", { body: { type: "echo", queue } });
    return res.status === 422 && res;
  }, { timeoutMs: 1000, what: "a 422" });
  t.equal(refused.body.error.code, "unknown_type", "unknown_type, as for a type nobody serves");
  t.match(refused.body.error.message, nobody, `the message names the target: ${refused.body.error.message}`);
  const overNats = await requestJson<ErrorReply>(nc, "bosun.api.jobs.submit", { type: "echo", queue });
  t.equal(overNats.errorCode, "422", "the same over NATS");
  t.same((await activate("default", queue)).body, { target_id: "default", queue, previous: nobody }, "switched back");
  t.equal((await opsFlags()).queues[queue], undefined, "the default target is no key at all: the queue reads as before any switch");
  const accepted = await waitFor(async () => {
    const res = await http<{ state: string; result: unknown }>(gw, "POST", "/api/jobs?wait_ms=5000", { body: { type: "echo", queue, payload: { back: 1 } } });
    return res.status === 200 && res;
  }, { timeoutMs: 3000, what: "a submit accepted and run" });
  t.same(accepted.body.result, { back: 1 }, "and runs on the default target");

  // The same switch as an ops flag: PATCH, and the CLI; null is the default again.
  const patched = await http<Flags>(gw, "PATCH", "/api/admin/ops", { body: { queues: { [queue]: { active_target: nobody } } } });
  t.equal(patched.body.queues[queue]?.active_target, nobody, "PATCH /api/admin/ops sets it too");
  await waitFor(async () => (await http(gw, "POST", "/api/jobs", { body: { type: "echo", queue } })).status === 422, { timeoutMs: 1000, what: "422 again" });
  const cli = await runCli(["ops", "set", `${queue}.active_target=null`, ...nats]);
  t.equal(cli.code, 0, "bosun ops set QUEUE.active_target=null", { stderr: cli.stderr });
  await waitFor(async () => (await http(gw, "POST", "/api/jobs", { body: { type: "echo", queue } })).status === 202, { timeoutMs: 1000, what: "accepted again" });
});

t.test("compute_endpoints_enabled=false: the compute routes answer 404 within a second over HTTP and NATS; true again, they are back", async (t) => {
  await startSupervisor(t, server.url, { queues: ["default"], args: pool("default") });
  t.teardown(() => http(gw, "PATCH", "/api/admin/ops", { body: { compute_endpoints_enabled: true } }).then(() => undefined));
  t.equal((await opsFlags()).compute_endpoints_enabled, true, "enabled by default");
  const overHttp = () => http(gw, "POST", "/api/compute/jobs/lease", { body: { wait_ms: 0 } });
  const overNats = () => requestJson(nc, "bosun.api.compute.jobs.lease", { wait_ms: 0 });
  const servers = () => http(gw, "GET", "/api/compute/servers");
  const within = async (what: string, is404: boolean) => {
    const started = Date.now();
    await waitFor(async () => ((await overHttp()).status === 404) === is404 && ((await overNats()).errorCode === "404") === is404 && ((await servers()).status === 404) === is404, {
      timeoutMs: 1000,
      intervalMs: 10,
      what,
    });
    return Date.now() - started;
  };
  t.not((await overHttp()).status, 404, "enabled: the lease route is there");

  const off = await http<Flags>(gw, "PATCH", "/api/admin/ops", { body: { compute_endpoints_enabled: false } });
  t.equal(off.status, 200, "PATCH /api/admin/ops {compute_endpoints_enabled: false}");
  t.equal(off.body.compute_endpoints_enabled, false, "the reply shows it");
  const offMs = await within("404 everywhere", true);
  t.pass(`HTTP POST /api/compute/jobs/lease, GET /api/compute/servers and NATS bosun.api.compute.jobs.lease answer 404 ${offMs} ms after the patch`);
  const body = (await overHttp()).body as ErrorReply;
  t.equal(body.error.code, "not_found", "with code not_found");
  t.equal((await opsFlags()).compute_endpoints_enabled, false, "GET /api/admin/ops shows it");
  t.equal((await http(gw, "GET", "/api/targets")).status, 200, "routes outside compute are untouched");

  const on = await http<Flags>(gw, "PATCH", "/api/admin/ops", { body: { compute_endpoints_enabled: true } });
  t.equal(on.body.compute_endpoints_enabled, true, "set true again");
  t.pass(`not 404 again ${await within("the compute routes back", false)} ms later`);

  const cliOff = await runCli(["ops", "set", "compute_endpoints_enabled=false", ...nats]);
  t.equal(cliOff.code, 0, "bosun ops set compute_endpoints_enabled=false", { stderr: cliOff.stderr });
  t.match(cliOff.stdout, /compute_endpoints_enabled=false/, "and prints it");
  await within("404 after the CLI's set", true);
  t.equal((await runCli(["ops", "set", "compute_endpoints_enabled=true", ...nats])).code, 0, "and back to true");
  await within("back after the CLI's set", false);
  t.equal((await runCli(["ops", "set", "q1.compute_endpoints_enabled=false", ...nats])).code, 2, "not a per-queue flag: usage error");
});

t.test("bad input: unknown fields, bad target or queue names, bad flag values → 400 and nothing changed; junk in the ops bucket is ignored", async (t) => {
  const queue = uniqueName("bad");
  await startSupervisor(t, server.url, { queues: [queue], args: pool("default") });
  const flagsBefore = await opsFlags();
  const targetsBefore = await targets();
  const refusals: [string, () => Promise<{ status: number; code?: string }>][] = [
    ["a target name with a dot", () => activate("bad.name", queue)],
    ["a target name with a space", () => activate("bad%20name", queue)],
    ["a target name of 65 characters", () => activate("x".repeat(65), queue)],
    ["an unknown field", () => http(gw, "PUT", "/api/targets/t1/active", { body: { queue, force: true } })],
    ["no queue", () => http(gw, "PUT", "/api/targets/t1/active", { body: {} })],
    ["a bad queue name", () => activate("t1", "no/such")],
    ["a queue that is not a string", () => http(gw, "PUT", "/api/targets/t1/active", { body: { queue: 7 } })],
    ["compute_endpoints_enabled not a boolean", () => http(gw, "PATCH", "/api/admin/ops", { body: { compute_endpoints_enabled: "no" } })],
    ["a bad active_target through PATCH", () => http(gw, "PATCH", "/api/admin/ops", { body: { queues: { [queue]: { active_target: "a.b" } } } })],
  ].map(([what, call]) => [what as string, async () => {
    const res = await (call as () => Promise<{ status: number; body: unknown }>)();
    return { status: res.status, code: (res.body as ErrorReply).error?.code };
  }]);
  for (const [what, call] of refusals) t.match(await call(), { status: 400, code: "validation_error" }, `HTTP, ${what}: 400 validation_error`);
  for (const [what, body] of [
    ["an unknown field", { target_id: "t1", queue, force: true }],
    ["a bad target name", { target_id: "a.b", queue }],
    ["no target", { queue }],
  ] as const) {
    t.equal((await requestJson(nc, "bosun.api.targets.activate", body)).errorCode, "400", `NATS, ${what}: 400`);
  }
  t.same(await opsFlags(), flagsBefore, "the ops flags are as they were");
  t.same(await targets(), targetsBefore, "the targets are as they were");

  // The bucket is wire too: a value no API call could have written is ignored with a warning.
  const kv = await new Kvm(nc).open(buckets.ops);
  await kv.put(opsKeys.queueActiveTarget(queue), "not a target!");
  await kv.put(opsKeys.computeEndpointsEnabled, "maybe");
  t.teardown(() => kv.delete(opsKeys.computeEndpointsEnabled).then(() => undefined));
  await waitFor(async () => (await opsFlags()).queues[queue] === undefined && (await opsFlags()).compute_endpoints_enabled, { timeoutMs: 3000, what: "the junk read as unset" });
  const ran = await http<{ result: unknown }>(gw, "POST", "/api/jobs?wait_ms=5000", { body: { type: "echo", queue, payload: { junk: "ignored" } } });
  t.same(ran.body.result, { junk: "ignored" }, "a junk active target sends jobs to the default target");
  t.not((await http(gw, "POST", "/api/compute/jobs/lease", { body: { wait_ms: 0 } })).status, 404, "a junk compute_endpoints_enabled leaves the routes enabled");
  t.same((await activate("t1", queue)).body, { target_id: "t1", queue, previous: "default" }, "a switch over a junk value: the previous target is the default");
});
