/**
 * Schedules against a real nats-server and real supervisors: exactly one
 * job per tick while supervisors are SIGKILLed and SIGTERMed, six-field
 * cron, misfire run_once vs skip after a total outage, and pause / resume /
 * trigger / delete acting within a second (over HTTP and NATS).
 */
import t from "tap";
import type { NatsConnection } from "@nats-io/nats-core";
import { runCli, startGateway, startSupervisor } from "./helpers/bosun.js";
import { http } from "./helpers/http.js";
import { connectClient, requestJson } from "./helpers/nats-client.js";
import { NatsServer } from "./helpers/nats-server.js";
import { uniqueName, waitFor } from "./helpers/wait.js";

const server = await NatsServer.start(t);
const nc = await connectClient(t, server.url);

interface TickJob {
  job_id: string;
  created_at: string;
  schedule_id?: string;
  tick_at?: string;
}
interface Schedule {
  schedule_id: string;
  paused: boolean;
  next_run_at: string | null;
  last_run_at: string | null;
  last_job_id: string | null;
}

async function call<T>(conn: NatsConnection, op: string, body: unknown): Promise<T> {
  const reply = await requestJson<T>(conn, `bosun.api.schedules.${op}`, body);
  if (reply.errorCode) throw new Error(`schedules.${op}: ${reply.errorCode} ${JSON.stringify(reply.body)}`);
  return reply.body;
}

/** Every job a schedule made on its queue, oldest tick first. */
async function jobsOf(queue: string, scheduleId: string): Promise<TickJob[]> {
  const reply = await requestJson<{ jobs: TickJob[] }>(nc, "bosun.api.jobs.list", { queue, limit: 1000 });
  if (reply.errorCode) throw new Error(`jobs.list: ${JSON.stringify(reply.body)}`);
  return reply.body.jobs.filter((j) => j.schedule_id === scheduleId).sort((a, b) => Date.parse(a.tick_at!) - Date.parse(b.tick_at!));
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const supervisorArgs = ["--min", "1", "--max", "2", "--heartbeat-ms", "300"];

t.test("every_ms 1000 on 3 supervisors, one SIGKILLed and one SIGTERMed: exactly one job per tick, none missing", async (t) => {
  const queue = uniqueName("sched");
  const sups = await Promise.all([0, 1, 2].map(() => startSupervisor(t, server.url, { queues: [queue], args: supervisorArgs })));
  const id = uniqueName("every");
  await call(nc, "create", { schedule_id: id, every_ms: 1000, job: { type: "echo", queue, payload: { tick: true } } });
  await sleep(5000);
  await sups[0]!.kill();
  await sleep(5000);
  await sups[1]!.stop();
  await sleep(5000);
  await call(nc, "delete", { schedule_id: id });
  const jobs = await jobsOf(queue, id);
  const ticks = jobs.map((j) => Date.parse(j.tick_at!));
  t.equal(new Set(ticks).size, ticks.length, `one job per tick (${ticks.length} jobs)`);
  const gaps = ticks.slice(1).map((tick, i) => tick - ticks[i]!);
  t.ok(gaps.every((g) => g === 1000), `consecutive ticks, none missing (gaps ${JSON.stringify([...new Set(gaps)])})`);
  t.ok(ticks.length >= 13, `about 15 ticks in 15 s (${ticks.length})`);
  const late = jobs.map((j) => Date.parse(j.created_at) - Date.parse(j.tick_at!)).sort((a, b) => a - b);
  t.ok(late[Math.floor(late.length / 2)]! < 200, `median lateness ${late[Math.floor(late.length / 2)]} ms`);
});

t.test("six-field cron */2 * * * * *: jobs 2 s apart, on even seconds", async (t) => {
  const queue = uniqueName("cron");
  await startSupervisor(t, server.url, { queues: [queue], args: supervisorArgs });
  const id = uniqueName("cron");
  const created = await call<Schedule>(nc, "create", { schedule_id: id, cron: "*/2 * * * * *", timezone: "Europe/Paris", job: { type: "echo", queue } });
  t.equal(new Date(created.next_run_at!).getUTCSeconds() % 2, 0, "next_run_at is an even second");
  const jobs = await waitFor(async () => {
    const js = await jobsOf(queue, id);
    return js.length >= 3 && js;
  }, { timeoutMs: 10_000, what: "3 cron ticks" });
  await call(nc, "delete", { schedule_id: id });
  const ticks = jobs.map((j) => Date.parse(j.tick_at!));
  t.ok(ticks.every((tick) => tick % 2000 === 0), "every tick on an even second");
  t.ok(ticks.slice(1).every((tick, i) => tick - ticks[i]! === 2000), "2 s apart");
});

t.test("ticks missed while every supervisor was down: run_once makes one job on recovery, skip none", async (t) => {
  const queue = uniqueName("misfire");
  const first = await startSupervisor(t, server.url, { queues: [queue], args: supervisorArgs });
  const once = uniqueName("once");
  const skip = uniqueName("skip");
  await call(nc, "create", { schedule_id: once, every_ms: 1000, misfire: "run_once", job: { type: "echo", queue } });
  await call(nc, "create", { schedule_id: skip, every_ms: 1000, misfire: "skip", job: { type: "echo", queue } });
  await waitFor(async () => (await jobsOf(queue, once)).length > 0 && (await jobsOf(queue, skip)).length > 0, { timeoutMs: 5000, what: "first ticks" });
  await first.stop();
  const downAt = Date.now();
  await sleep(4500);
  const upAt = Date.now();
  await startSupervisor(t, server.url, { queues: [queue], args: supervisorArgs });
  const inOutage = (j: TickJob) => Date.parse(j.tick_at!) > downAt && Date.parse(j.tick_at!) < upAt;
  await waitFor(async () => (await jobsOf(queue, once)).some((j) => Date.parse(j.tick_at!) > upAt) && (await jobsOf(queue, skip)).some((j) => Date.parse(j.tick_at!) > upAt), {
    timeoutMs: 10_000,
    what: "ticks after recovery",
  });
  const caughtUp = (await jobsOf(queue, once)).filter(inOutage);
  t.equal(caughtUp.length, 1, "run_once: one job for the ticks missed");
  t.ok(caughtUp.every((j) => Date.parse(j.created_at) >= upAt), "made on recovery");
  t.equal((await jobsOf(queue, skip)).filter(inOutage).length, 0, "skip: none");
  await call(nc, "delete", { schedule_id: once });
  await call(nc, "delete", { schedule_id: skip });
});

t.test("pause, resume, trigger and delete act within a second (HTTP); bad schedules are refused", async (t) => {
  const queue = uniqueName("ctl");
  await startSupervisor(t, server.url, { queues: [queue], args: supervisorArgs });
  const gw = (await startGateway(t, server.url)).baseUrl;
  const id = uniqueName("ctl");
  const created = await http<Schedule>(gw, "POST", "/api/schedules", { body: { schedule_id: id, every_ms: 200, job: { type: "echo", queue } } });
  t.equal(created.status, 201, "created");
  await waitFor(async () => (await jobsOf(queue, id)).length >= 2, { timeoutMs: 5000, what: "ticks" });

  const paused = await http<Schedule>(gw, "POST", `/api/schedules/${id}/pause`);
  t.equal(paused.body.paused, true);
  t.equal(paused.body.next_run_at, null, "no next run while paused");
  const pausedAt = Date.now();
  await sleep(1500);
  const afterPause = (await jobsOf(queue, id)).filter((j) => Date.parse(j.created_at) > pausedAt + 1000);
  t.equal(afterPause.length, 0, "no ticks a second after the pause");

  const triggered = await http<{ job_id: string }>(gw, "POST", `/api/schedules/${id}/trigger`);
  t.equal(triggered.status, 202, "trigger while paused");
  const job = await waitFor(async () => (await jobsOf(queue, id)).find((j) => j.job_id === triggered.body.job_id), { timeoutMs: 1000, what: "the triggered job" });
  t.equal(job.schedule_id, id, "the triggered job names its schedule");
  const shown = await http<Schedule>(gw, "GET", `/api/schedules/${id}`);
  t.equal(shown.body.last_job_id, triggered.body.job_id, "last_job_id is the triggered job");

  const resumedAt = Date.now();
  await http(gw, "POST", `/api/schedules/${id}/resume`);
  await waitFor(async () => (await jobsOf(queue, id)).some((j) => Date.parse(j.tick_at!) > resumedAt), { timeoutMs: 1000, what: "a tick within a second of resume" });
  const workers = await waitFor(async () => {
    const ws = (await http<{ schedules?: { active: number; next_run_at: string | null } }[]>(gw, "GET", "/api/platform/workers")).body;
    return ws.some((w) => (w.schedules?.active ?? 0) >= 1 && w.schedules?.next_run_at) && ws;
  }, { timeoutMs: 3000, what: "heartbeats showing the schedule" });
  t.ok(workers.length >= 1, "heartbeats show active schedules and their next run");
  const listed = await http<{ schedules: Schedule[] }>(gw, "GET", "/api/schedules");
  const mine = listed.body.schedules.find((s) => s.schedule_id === id);
  t.ok(mine && mine.next_run_at && Date.parse(mine.next_run_at) > resumedAt, "listed with its next run");

  const deleted = await http(gw, "DELETE", `/api/schedules/${id}`);
  t.equal(deleted.status, 200, "deleted");
  const deletedAt = Date.now();
  await sleep(1500);
  t.equal((await jobsOf(queue, id)).filter((j) => Date.parse(j.created_at) > deletedAt + 1000).length, 0, "no ticks a second after delete");
  t.equal((await http(gw, "GET", `/api/schedules/${id}`)).status, 404, "gone");

  for (const bad of [
    { schedule_id: id, cron: "* * * *", job: { type: "echo" } },
    { schedule_id: id, cron: "*/5 * * * *", timezone: "Mars/Olympus", job: { type: "echo" } },
    { schedule_id: id, cron: "*/5 * * * *", every_ms: 1000, job: { type: "echo" } },
    { schedule_id: id, every_ms: 10, job: { type: "echo" } },
    { schedule_id: "no spaces", every_ms: 1000, job: { type: "echo" } },
    { schedule_id: id, every_ms: 1000, job: { type: "echo", idempotency_key: "k" } },
  ]) {
    const reply = await http<{ error: { code: string } }>(gw, "POST", "/api/schedules", { body: bad });
    t.equal(reply.status, 400, `refused: ${JSON.stringify(bad)}`);
  }
  t.equal((await http(gw, "GET", `/api/schedules/${id}`)).status, 404, "nothing written by a refused schedule");
});

t.test("bosun schedules create|list|get|pause|trigger|resume|delete from the CLI", async (t) => {
  const queue = uniqueName("cli");
  await startSupervisor(t, server.url, { queues: [queue], args: supervisorArgs });
  const id = uniqueName("cli");
  const cli = (...args: string[]) => runCli(["schedules", ...args], { env: { NATS_URL: server.url } });
  const created = await cli("create", id, "echo", '{"from":"cli"}', "--cron", "0 3 * * *", "--timezone", "Europe/Paris", "--queue", queue, "--json");
  t.equal(created.code, 0, "create exits 0", { stderr: created.stderr });
  t.match(JSON.parse(created.stdout), { schedule_id: id, cron: "0 3 * * *", timezone: "Europe/Paris", paused: false }, "the schedule as stored");
  t.match((await cli("list")).stdout, id, "list shows it");
  t.match((await cli("pause", id, "--json")).stdout, /"paused":\s*true/, "pause");
  const triggered = await cli("trigger", id);
  t.equal(triggered.code, 0, "trigger exits 0");
  const jobId = triggered.stdout.trim();
  await waitFor(async () => (await jobsOf(queue, id)).some((j) => j.job_id === jobId), { timeoutMs: 5000, what: "the triggered job" });
  t.pass("trigger made a job of the schedule");
  t.match(JSON.parse((await cli("get", id, "--json")).stdout), { last_job_id: jobId }, "get shows it as the last job");
  t.match((await cli("resume", id, "--json")).stdout, /"paused":\s*false/, "resume");
  t.equal((await cli("create", id, "echo")).code, 2, "neither --cron nor --every-ms: a usage error");
  t.equal((await cli("delete", id)).code, 0, "delete exits 0");
  t.notMatch((await cli("list")).stdout, id, "gone from the list");
});
