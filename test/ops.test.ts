/**
 * Operator features against a real nats-server, real supervisors and real
 * gateways: the workers list from heartbeats (and its SSE stream), recycling
 * execution processes, per-queue status, the ops flags (submissions paused,
 * applied live by every gateway and supervisor), and the operator commands
 * of the CLI.
 */
import os from "node:os";
import t from "tap";
import { defaultLaneConsumer } from "./helpers/subjects.js";
import { runCli, startGateway, startSupervisor } from "./helpers/bosun.js";
import { http, type ErrorReply, type JobStatus, type SubmitReply } from "./helpers/http.js";
import { resultOf, runJob, submitNats } from "./helpers/jobs.js";
import { connectClient, requestJson } from "./helpers/nats-client.js";
import { NatsServer } from "./helpers/nats-server.js";
import {
  Gates,
  httpOps,
  httpQueue,
  httpWorkers,
  OPS_HANDLERS,
  parseJsonDocuments,
  scrape,
  SseStream,
  startCli,
  startMetricsSupervisor,
  type OpsFlags,
  type QueueStatus,
  type WorkerInfo,
} from "./helpers/ops.js";
import { isAlive, uniqueName, waitFor, within } from "./helpers/wait.js";

const server = await NatsServer.start(t);
const nc = await connectClient(t, server.url);
const gateway = await startGateway(t, server.url);
const gw = gateway.baseUrl;

/** Supervisor flags for a small pool that beats often. */
const small = (heartbeatMs = 300, min = 1, max = 1) => ["--min", String(min), "--max", String(max), "--heartbeat-ms", String(heartbeatMs)];

/** Status of a job over NATS. */
async function statusOf(jobId: string): Promise<JobStatus> {
  const reply = await requestJson<JobStatus>(nc, "bosun.api.jobs.get", { job_id: jobId });
  if (reply.errorCode) throw new Error(`get ${jobId}: ${reply.errorCode} ${JSON.stringify(reply.body)}`);
  return reply.body;
}

/**
 * Reads the workers list repeatedly for at least `spanMs` (and `minReads`
 * reads), failing on the first read where `check` is false.
 */
async function holdsFor(spanMs: number, minReads: number, check: (ws: WorkerInfo[]) => boolean): Promise<{ reads: number; bad: WorkerInfo[] | undefined }> {
  const started = Date.now();
  let reads = 0;
  while (Date.now() - started < spanMs || reads < minReads) {
    const ws = await httpWorkers(gw);
    reads++;
    if (!check(ws)) return { reads, bad: ws };
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return { reads, bad: undefined };
}

t.test("workers: every live supervisor is listed, a SIGKILLed one drops out after 3 heartbeat periods, the SSE stream pushes heartbeats", async (t) => {
  const queue = uniqueName("q");
  const idA = uniqueName("wa");
  const idB = uniqueName("wb");
  const [a, b] = await Promise.all([
    startSupervisor(t, server.url, { queues: [queue], workerId: idA, args: small() }),
    startSupervisor(t, server.url, { queues: [queue], workerId: idB, args: small() }),
  ]);
  const stream = await SseStream.open(t, `${gw}/api/platform/workers/stream`);
  t.equal(stream.status, 200, "the workers stream answers 200");
  t.match(stream.headers?.get("content-type") ?? "", /^text\/event-stream/, "as text/event-stream");

  const workers = await waitFor(
    async () => {
      const ws = await httpWorkers(gw);
      const both = [idA, idB].map((id) => ws.find((w) => w.worker_id === id));
      return both.every((w) => w && w.pool_size === 1 && w.idle_count === 1) ? ws : undefined;
    },
    { timeoutMs: 15_000, what: "both supervisors listed with one idle process each" },
  );
  const infoA = workers.find((w) => w.worker_id === idA)!;
  t.match(infoA, { worker_id: idA, hostname: os.hostname(), min_workers: 1, max_workers: 1, pool_size: 1, idle_count: 1, busy_count: 0, queues: [queue] }, "WorkerInfo fields");
  t.ok(Number.isFinite(Date.parse(infoA.started_at)), "started_at is a time");
  t.ok(infoA.job_types.includes("echo"), "job_types lists the built-ins");
  t.equal(infoA.processes.length, 1);
  const proc = infoA.processes[0]!;
  t.match(proc, { state: "idle", executions_completed: 0, execution: null }, "ProcessInfo of an idle process");
  t.ok(a.childPids().includes(proc.pid), "the listed pid is the supervisor's execution process");
  t.type(proc.process_id, "string");
  t.ok(proc.memory_mb > 0, "memory_mb reported");
  t.ok(proc.uptime_seconds >= 0, "uptime_seconds reported");

  const overNats = await requestJson<{ workers: WorkerInfo[] }>(nc, "bosun.api.workers.list", {});
  t.equal(overNats.errorCode, undefined);
  const natsIds = overNats.body.workers.map((w) => w.worker_id);
  t.ok(natsIds.includes(idA) && natsIds.includes(idB), "bosun.api.workers.list answers both too");

  // Live supervisors stay listed on every read, for longer than 3 heartbeat periods.
  const steady = await holdsFor(1200, 6, (ws) => [idA, idB].every((id) => ws.some((w) => w.worker_id === id)));
  t.equal(steady.bad, undefined, `both stay listed on ${steady.reads} consecutive reads over 1.2 s`, { bad: steady.bad?.map((w) => w.worker_id) });

  // The SSE stream: `event: worker_heartbeat`, data {"type":"worker_heartbeat","data":WorkerInfo}.
  for (const id of [idA, idB]) {
    const e = await stream.next((e) => (e.data as { data?: WorkerInfo }).data?.worker_id === id && (e.data as { data: WorkerInfo }).data.pool_size === 1, {
      what: `a heartbeat of ${id} with its process up on the stream`,
    });
    t.equal(e.event, "worker_heartbeat", `event name for ${id}`);
    t.match(e.data, { type: "worker_heartbeat", data: { worker_id: id, queues: [queue], pool_size: 1, idle_count: 1, processes: [{ state: "idle" }] } }, `event data for ${id}`);
  }

  const killedAt = Date.now();
  await a.kill();
  const after = await waitFor(
    async () => {
      // A request the nats-server routes to the killed one before it sees its socket close gets no reply: the gateway would
      // wait out its 5 s request timeout. Given up after 1 s, the next read goes to the survivor.
      const ws = await httpWorkers(gw, 1000);
      return ws.some((w) => w.worker_id === idA) ? undefined : ws;
    },
    { timeoutMs: 10_000, intervalMs: 50, what: `the killed supervisor ${idA} to drop out of the list` },
  );
  const goneAt = Date.now();
  t.ok(goneAt - killedAt < 5000, `the killed supervisor dropped out ${goneAt - killedAt} ms after SIGKILL (3 periods = 900 ms)`);
  t.ok(after.some((w) => w.worker_id === idB), "the other supervisor is still listed in that same answer");
  const stays = await holdsFor(1200, 6, (ws) => ws.some((w) => w.worker_id === idB) && !ws.some((w) => w.worker_id === idA));
  t.equal(stays.bad, undefined, `afterwards the live one stays and the dead one stays gone (${stays.reads} reads)`);

  // The stream goes on with the survivor's heartbeats only.
  const from = stream.events.length;
  for (let i = 0; i < 2; i++) {
    await stream.next((e) => (e.data as { data?: WorkerInfo }).data?.worker_id === idB && e.at > goneAt, {
      from: from + i,
      what: `heartbeat ${i + 1} of ${idB} after ${idA} died`,
    });
  }
  const lateA = stream.events.filter((e) => (e.data as { data?: WorkerInfo }).data?.worker_id === idA && e.at > goneAt);
  t.equal(lateA.length, 0, "no heartbeat of the killed supervisor after it dropped out");
  t.ok(b.proc.running, "the survivor is still running");
});


t.test(
  "workers: supervisors with different --heartbeat-ms each count as gone after 3 of their own periods",
  async (t) => {
    const shared = uniqueName("q");
    const slowOnly = uniqueName("qs");
    const slow = uniqueName("wslow");
    const fast = uniqueName("wfast");
    const [, fastSup] = await Promise.all([
      startSupervisor(t, server.url, { queues: [shared, slowOnly], workerId: slow, args: small(2000) }),
      startSupervisor(t, server.url, { queues: [shared], workerId: fast, args: small(300) }),
    ]);
    await waitFor(
      async () => {
        const ws = await httpWorkers(gw);
        return ws.some((w) => w.worker_id === slow) && ws.some((w) => w.worker_id === fast);
      },
      { timeoutMs: 15_000, what: "both listed" },
    );
    // Both supervisors answer the API (one queue group). Whichever answers, the live
    // slow-beating supervisor must be listed, and the queue only it serves must accept jobs
    // (delayed ones: a job that ran would change its pool, and a pool change sends a heartbeat).
    const submits = async () => {
      const codes: string[] = [];
      const until = Date.now() + 3000;
      while (Date.now() < until || codes.length < 15) {
        codes.push((await requestJson(nc, "bosun.api.jobs.submit", { type: "noop", queue: slowOnly, delay_ms: 600_000 })).errorCode ?? "ok");
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      return codes;
    };
    const [steady, codes] = await Promise.all([
      holdsFor(3000, 15, (ws) => ws.some((w) => w.worker_id === slow) && ws.some((w) => w.worker_id === fast)),
      submits(),
    ]);
    t.equal(steady.bad, undefined, `a live supervisor beating every 2 s stays listed (${steady.reads} reads over 3 s)`, {
      listed: steady.bad?.map((w) => w.worker_id),
    });
    const refused = codes.filter((c) => c !== "ok");
    t.same(refused, [], `submits to the queue only it serves are accepted (${codes.length} over 3 s)`);

    const killedAt = Date.now();
    await fastSup.kill();
    const gone = await waitFor(async () => !(await httpWorkers(gw)).some((w) => w.worker_id === fast), {
      timeoutMs: 3000,
      intervalMs: 50,
      what: `${fast} to drop out`,
    }).then(
      () => Date.now() - killedAt,
      () => undefined,
    );
    t.ok(gone !== undefined, `a dead supervisor beating every 300 ms drops out within 3 s, not after the observer's 3 periods of 2 s (took ${gone ?? "> 3000"} ms)`, {
    });
  },
);

t.test("recycle: by pid (idle and busy), without pid (any idle one), over NATS; unknown worker 404", async (t) => {
  const queue = uniqueName("q");
  const id = uniqueName("wr");
  const { sup, metricsUrl } = await startMetricsSupervisor(t, server.url, { queues: [queue], workerId: id, args: [...small(300, 2, 2), "--handlers", OPS_HANDLERS] });
  const gates = await Gates.create(t);
  const workerOf = async () => (await httpWorkers(gw)).find((w) => w.worker_id === id);
  /** Waits until the pool is back to 2 idle processes without `gonePid`, and returns their pids. */
  const replaced = async (gonePid: number) => {
    await waitFor(() => !isAlive(gonePid), { timeoutMs: 10_000, what: `process ${gonePid} to exit` });
    return waitFor(
      async () => {
        const w = await workerOf();
        const pids = w?.processes.map((p) => p.pid) ?? [];
        return w && w.pool_size === 2 && w.idle_count === 2 && !pids.includes(gonePid) ? pids : undefined;
      },
      { timeoutMs: 15_000, what: `a pool of 2 idle processes without ${gonePid}` },
    );
  };
  const recycles = async (reason?: string) => (await scrape(metricsUrl)).value("bosun_process_recycles_total", reason ? { reason } : {});

  const initial = await waitFor(
    async () => {
      const w = await workerOf();
      return w && w.pool_size === 2 && w.idle_count === 2 ? w.processes.map((p) => p.pid) : undefined;
    },
    { timeoutMs: 15_000, what: "2 idle processes" },
  );

  // By pid, an idle process: it goes at once and the pool tops up.
  const recyclesBefore = await recycles();
  const target = initial[0]!;
  const byPid = await http<{ status: string; worker_id: string; pid: number }>(gw, "POST", `/api/platform/workers/${id}/recycle?pid=${target}`);
  t.equal(byPid.status, 200, "recycle?pid= answers 200", { body: byPid.text });
  t.same(byPid.body, { status: "recycle_requested", worker_id: id, pid: target });
  const afterPid = await replaced(target);
  t.pass(`process ${target} exited and was replaced (${afterPid.join(", ")})`);
  t.ok(afterPid.every((p) => sup.childPids().includes(p)), "the replacements are the supervisor's own processes");
  t.equal(await recycles(), recyclesBefore + 1, "bosun_process_recycles_total counts a recycle of an idle process", {
  });

  // Without pid: any idle process.
  const anyIdle = await http<{ status: string; worker_id: string; pid: number }>(gw, "POST", `/api/platform/workers/${id}/recycle`);
  t.equal(anyIdle.status, 200, "recycle without pid answers 200", { body: anyIdle.text });
  t.match(anyIdle.body, { status: "recycle_requested", worker_id: id });
  t.ok(afterPid.includes(anyIdle.body.pid), `the pid answered (${anyIdle.body.pid}) was one of the idle processes`);
  const afterAny = await replaced(anyIdle.body.pid);

  // Over NATS, same shape.
  const overNats = await requestJson<{ status: string; worker_id: string; pid: number }>(nc, "bosun.api.workers.recycle", { worker_id: id, pid: afterAny[1] });
  t.equal(overNats.errorCode, undefined, "bosun.api.workers.recycle answers without error", { body: overNats.body });
  t.same(overNats.body, { status: "recycle_requested", worker_id: id, pid: afterAny[1] });
  const afterNats = await replaced(afterAny[1]!);

  // Busy processes: without pid there is no idle one (409); by pid, the process finishes its job first.
  const busyRecyclesBefore = await recycles("recycle requested");
  // Two jobs that hold both processes until the test opens their gate.
  const jobs = await Promise.all([0, 1].map(() => submitNats(nc, { type: "test.progress", queue, payload: { gate_before: gates.path("busy"), after_ms: 0 }, max_attempts: 1 })));
  const owners = await Promise.all(
    jobs.map((j) =>
      waitFor(
        async () => {
          const s = await statusOf(j.job_id);
          return s.state === "running" && s.owner ? s.owner.pid : undefined;
        },
        { timeoutMs: 15_000, what: `job ${j.job_id} running` },
      ),
    ),
  );
  t.same([...owners].sort(), [...afterNats].sort(), "both processes are busy");
  const none = await http<ErrorReply>(gw, "POST", `/api/platform/workers/${id}/recycle`);
  t.equal(none.status, 409, "no idle process: 409", { body: none.text });
  t.equal(none.body.error?.code, "conflict");
  const busy = await http<{ status: string; pid: number }>(gw, "POST", `/api/platform/workers/${id}/recycle?pid=${owners[0]}`);
  t.equal(busy.status, 200, "recycling a busy process by pid answers 200", { body: busy.text });
  t.same(busy.body, { status: "recycle_requested", worker_id: id, pid: owners[0] });
  t.ok(isAlive(owners[0]!), "the busy process is not killed: it finishes its job first");
  const stillRunning = await statusOf(jobs[0]!.job_id);
  t.match(stillRunning, { state: "running", owner: { pid: owners[0] } }, "and its job is still running");
  await gates.open("busy");
  const results = await Promise.all(jobs.map((j) => resultOf(nc, j.job_id, 20_000)));
  t.same(results.map((r) => r.state), ["succeeded", "succeeded"], "both jobs succeed");
  const afterBusy = await replaced(owners[0]!);
  t.ok(afterBusy.includes(owners[1]!), "the other busy process was left alone");
  t.equal(await recycles("recycle requested"), busyRecyclesBefore + 1, "bosun_process_recycles_total{reason=\"recycle requested\"} counts the recycle after the job");

  // Errors.
  const unknown = await http<ErrorReply>(gw, "POST", `/api/platform/workers/${uniqueName("nobody")}/recycle`);
  t.equal(unknown.status, 404, "unknown worker: 404", { body: unknown.text });
  t.equal(unknown.body.error?.code, "not_found");
  const unknownNats = await requestJson<ErrorReply>(nc, "bosun.api.workers.recycle", { worker_id: uniqueName("nobody") });
  t.equal(unknownNats.errorCode, "404", "unknown worker over NATS: 404");
  const unknownPid = await http<ErrorReply>(gw, "POST", `/api/platform/workers/${id}/recycle?pid=1`);
  t.equal(unknownPid.status, 404, "a pid that is not one of its processes: 404", { body: unknownPid.text });
  const badPid = await http<ErrorReply>(gw, "POST", `/api/platform/workers/${id}/recycle?pid=abc`);
  t.equal(badPid.status, 400, "a pid that is not a number: 400", { body: badPid.text });
  const final = await workerOf();
  t.equal(final?.pool_size, 2, "the pool is intact after the refused requests");
});

t.test("queue status: pending, scheduled, running and dead counts, consumers, and a queue whose supervisor left", async (t) => {
  const queue = uniqueName("q");
  const id = uniqueName("wq");
  const sup = await startSupervisor(t, server.url, { queues: [queue], workerId: id, args: small() });
  // Another supervisor (other queue) keeps answering the API once ours is gone.
  const other = uniqueName("q");
  await startSupervisor(t, server.url, { queues: [other], workerId: uniqueName("wo"), args: small() });

  // dead: 2 jobs that fail their only attempt
  const dead = await Promise.all([0, 1].map(() => runJob(nc, { type: "fail", queue, payload: { message: "no" }, max_attempts: 1 })));
  t.same(dead.map((r) => r.state), ["dead", "dead"]);
  // running: the only process is busy with a long sleep
  const sleeper = await submitNats(nc, { type: "sleep", queue, payload: { ms: 60_000 }, max_attempts: 1 });
  await waitFor(async () => (await statusOf(sleeper.job_id)).state === "running", { timeoutMs: 15_000, what: "the sleeper running" });
  // pending: 3 more wait behind it; scheduled: 2 delayed ones
  const pending = await Promise.all([0, 1, 2].map((i) => submitNats(nc, { type: "echo", queue, payload: { i } })));
  await Promise.all([0, 1].map(() => submitNats(nc, { type: "echo", queue, delay_ms: 600_000 })));

  const expected: QueueStatus = { queue, pending: 3, pending_by_band: { h: 0, n: 3, l: 0 }, scheduled: 2, running: 1, dead: 2, consumers: { durable: defaultLaneConsumer(queue), waiting_pulls: 0, workers: [id] }, limits: {}, use: { running: 0, window_starts: 0 } };
  const status = await waitFor(
    async () => {
      const s = await httpQueue(gw, queue);
      return s && s.pending === 3 && s.running === 1 && s.scheduled === 2 && s.dead === 2 && s.consumers.waiting_pulls === 0 ? s : undefined;
    },
    { timeoutMs: 10_000, what: "the queue's counts" },
  ).catch(async (err: unknown) => {
    t.comment(`last status: ${JSON.stringify(await httpQueue(gw, queue))}`);
    throw err;
  });
  t.same(status, expected, "GET /api/platform/queue: 3 pending, 2 scheduled, 1 running, 2 dead, read by our supervisor");
  const overNats = await requestJson<{ queues: QueueStatus[] }>(nc, "bosun.api.queue.status", {});
  t.equal(overNats.errorCode, undefined);
  t.same(overNats.body.queues.find((q) => q.queue === queue), expected, "bosun.api.queue.status answers the same");
  const all = await http<{ queues: QueueStatus[] }>(gw, "GET", "/api/platform/queue");
  t.ok(all.body.queues.some((q) => q.queue === other), "every queue with a consumer is listed");

  // The sleeper cancelled, the pending jobs run; the idle supervisor waits with a pull open.
  const cancel = await http(gw, "POST", `/api/jobs/${sleeper.job_id}/cancel`);
  t.equal(cancel.status, 202);
  await Promise.all(pending.map((p) => resultOf(nc, p.job_id)));
  const drained = await waitFor(
    async () => {
      const s = await httpQueue(gw, queue);
      return s && s.pending === 0 && s.running === 0 && s.consumers.waiting_pulls >= 1 ? s : undefined;
    },
    { timeoutMs: 15_000, what: "the queue drained, with a pull waiting" },
  );
  t.match(drained, { pending: 0, running: 0, scheduled: 2, dead: 2, consumers: { workers: [id] } }, "drained: scheduled and dead stay");

  // Its supervisor leaves: the queue is still listed, with no workers, and its counts kept.
  await sup.stop();
  const orphan = await waitFor(
    async () => {
      const s = await httpQueue(gw, queue);
      return s && s.consumers.workers.length === 0 ? s : undefined;
    },
    { timeoutMs: 10_000, what: "the queue listed without workers" },
  );
  t.match(orphan, { queue, pending: 0, running: 0, scheduled: 2, dead: 2, consumers: { durable: defaultLaneConsumer(queue), workers: [] } }, "a queue with no supervisor");
  const refused = await http<ErrorReply>(gw, "POST", "/api/jobs", { body: { type: "echo", queue } });
  t.equal(refused.status, 422, "submitting to it is refused: no live supervisor serves it", { body: refused.text });
});

t.test("ops flags: submissions paused per queue and globally, applied live by two gateways and the supervisors; bad patches change nothing", async (t) => {
  const paused = uniqueName("qp");
  const open = uniqueName("qo");
  await startSupervisor(t, server.url, { queues: [paused, open], args: small() });
  const gateway2 = await startGateway(t, server.url);
  const gw1 = gw;
  const gw2 = gateway2.baseUrl;
  t.teardown(async () => {
    // Never leave the global flag on for the next test.
    await http(gw1, "PATCH", "/api/admin/ops", { body: { submissions_paused: false } }).catch(() => undefined);
  });

  /**
   * Refused or not, without storing anything: a type nobody serves is 422
   * when submissions are open, and 503 while paused (the pause is checked first).
   */
  const probe = async (base: string, queue: string) => (await http(base, "POST", "/api/jobs", { body: { type: "no.such.type", queue } })).status;
  const probeNats = async (queue: string) => (await requestJson(nc, "bosun.api.jobs.submit", { type: "no.such.type", queue })).errorCode;
  /** Waits for `cond` and returns how long it took. */
  const timed = async (cond: () => Promise<boolean>, what: string) => {
    const started = Date.now();
    await waitFor(async () => ((await cond()) ? true : undefined), { timeoutMs: 5000, intervalMs: 20, what });
    return Date.now() - started;
  };
  /** The spec says within a second; a loaded 2-core machine gets twice that. */
  const LIVE_MS = 2000;

  // Both gateways have the ops bucket open (a gateway started before any supervisor retries each second).
  await timed(async () => (await probe(gw2, paused)) === 422 && (await probe(gw1, paused)) === 422, "both gateways answering");
  const initial = await httpOps(gw1);
  t.equal(initial.submissions_paused, false, "not paused globally at first");
  t.notOk(initial.queues[paused], "no flag for the queue yet");

  // Pause one queue through gateway 1.
  const patched = await http<OpsFlags>(gw1, "PATCH", "/api/admin/ops", { body: { queues: { [paused]: { submissions_paused: true } } } });
  t.equal(patched.status, 200, "PATCH answers 200", { body: patched.text });
  t.match(patched.body, { submissions_paused: false, queues: { [paused]: { submissions_paused: true } } }, "and the flags as they now are");
  const seenBy2 = await timed(async () => (await probe(gw2, paused)) === 503, "gateway 2 to refuse the paused queue");
  t.ok(seenBy2 <= LIVE_MS, `gateway 2 applied the pause within ${seenBy2} ms`);
  const seenByNats = await timed(async () => (await probeNats(paused)) === "503", "a raw NATS submit to be refused");
  t.ok(seenByNats <= LIVE_MS, `the supervisor applied it within ${seenByNats} ms`);

  const nats2Before = (await scrape(`${gw2}/metrics`)).value("bosun_gateway_nats_request_seconds_count", { subject: "bosun.api.jobs.submit" });
  for (const [name, base] of [["gateway 1", gw1], ["gateway 2", gw2]] as const) {
    const res = await http<ErrorReply>(base, "POST", "/api/jobs", { body: { type: "echo", queue: paused, payload: { n: 1 } } });
    t.equal(res.status, 503, `${name}: a submit to the paused queue is 503`, { body: res.text });
    t.equal(res.headers.get("retry-after"), "1", `${name}: with Retry-After`);
    t.equal(res.body.error?.code, "unavailable", `${name}: code unavailable`);
  }
  const nats2After = (await scrape(`${gw2}/metrics`)).value("bosun_gateway_nats_request_seconds_count", { subject: "bosun.api.jobs.submit" });
  t.equal(nats2After, nats2Before, "gateway 2 refused it itself, without a NATS request (its own watch of the flags)");
  const raw = await requestJson<ErrorReply>(nc, "bosun.api.jobs.submit", { type: "echo", queue: paused });
  t.equal(raw.errorCode, "503", "a raw NATS submit to the paused queue is refused with 503");
  t.equal(raw.body.error?.code, "unavailable");
  const accepted = await http<SubmitReply>(gw2, "POST", "/api/jobs", { body: { type: "echo", queue: open, payload: { ok: true } } });
  t.equal(accepted.status, 202, "another queue still accepts", { body: accepted.text });
  t.equal((await resultOf(nc, accepted.body.job_id)).state, "succeeded");

  // Nothing was stored for the paused queue.
  const listed = await http<{ jobs: JobStatus[] }>(gw1, "GET", `/api/jobs?queue=${paused}`);
  t.same(listed.body.jobs, [], "no job of the paused queue was stored");
  t.match(await httpQueue(gw1, paused), { pending: 0, scheduled: 0, running: 0, dead: 0 }, "and its queue is empty");
  t.match(await httpOps(gw2), { queues: { [paused]: { submissions_paused: true } } }, "GET through gateway 2 shows the flag");

  // Unpause through gateway 2: gateway 1 and the supervisors accept again.
  const unpause = await http<OpsFlags>(gw2, "PATCH", "/api/admin/ops", { body: { queues: { [paused]: { submissions_paused: false } } } });
  t.equal(unpause.status, 200);
  const reopened = await timed(async () => (await probe(gw1, paused)) === 422, "gateway 1 to accept the queue again");
  t.ok(reopened <= LIVE_MS, `gateway 1 applied the unpause within ${reopened} ms`);
  await timed(async () => (await probeNats(paused)) === "422", "a raw NATS submit to be accepted again");
  const resumed = await http<SubmitReply>(gw1, "POST", "/api/jobs", { body: { type: "echo", queue: paused, payload: { again: true } } });
  t.equal(resumed.status, 202, "the unpaused queue accepts", { body: resumed.text });
  t.equal((await resultOf(nc, resumed.body.job_id)).state, "succeeded");

  // Globally paused: every queue refuses, on both gateways and over NATS.
  const global = await http<OpsFlags>(gw2, "PATCH", "/api/admin/ops", { body: { submissions_paused: true } });
  t.equal(global.status, 200);
  t.equal(global.body.submissions_paused, true);
  await timed(async () => (await probe(gw1, open)) === 503 && (await probe(gw2, paused)) === 503, "both gateways to refuse every queue");
  await timed(async () => (await probeNats(open)) === "503", "NATS submits to be refused");
  const globalRefused = await http(gw1, "POST", "/api/jobs", { body: { type: "echo", queue: open } });
  t.equal(globalRefused.status, 503, "globally paused: 503");
  t.equal(globalRefused.headers.get("retry-after"), "1");
  const overNatsGet = await requestJson<OpsFlags>(nc, "bosun.api.ops.get", {});
  t.equal(overNatsGet.body.submissions_paused, true, "bosun.api.ops.get shows the global flag");
  const natsSet = await requestJson<OpsFlags>(nc, "bosun.api.ops.set", { submissions_paused: false });
  t.equal(natsSet.errorCode, undefined, "bosun.api.ops.set answers");
  t.equal(natsSet.body.submissions_paused, false);
  await timed(async () => (await probe(gw1, open)) === 422 && (await probe(gw2, open)) === 422, "both gateways to accept again");

  // Bad patches: 400, and nothing changes.
  const before = await httpOps(gw1);
  const bad: [string, unknown][] = [
    ["unknown flag", { submissions_paused: true, bogus: true }],
    ["wrong type", { submissions_paused: "yes" }],
    ["wrong type in a queue", { queues: { [open]: { submissions_paused: 1 } } }],
    ["unknown flag in a queue", { queues: { [open]: { submissions_paused: true, drain: true } } }],
    ["bad queue name", { queues: { "no such queue!": { submissions_paused: true } } }],
    ["one good flag and one bad", { submissions_paused: true, queues: { [open]: { submissions_paused: "true" } } }],
    ["not an object", [true]],
    ["not JSON", "{submissions_paused: true"],
    ["max_concurrency not an integer", { queues: { [open]: { max_concurrency: 2.5 } } }],
    ["max_concurrency negative", { queues: { [open]: { max_concurrency: -1 } } }],
    ["max_concurrency too large", { queues: { [open]: { max_concurrency: 1e9 } } }],
    ["max_concurrency a string", { queues: { [open]: { max_concurrency: "3" } } }],
    ["rate_limit without per_ms", { queues: { [open]: { rate_limit: { max: 10 } } } }],
    ["rate_limit max 0", { queues: { [open]: { rate_limit: { max: 0, per_ms: 1000 } } } }],
    ["rate_limit with an unknown field", { queues: { [open]: { rate_limit: { max: 1, per_ms: 1000, burst: 2 } } } }],
    ["rate_limit a number", { queues: { [open]: { rate_limit: 10 } } }],
    ["max_pending fractional", { queues: { [open]: { max_pending: 0.5 } } }],
    ["a queue patch naming nothing", { queues: { [open]: {} } }],
    ["one good limit and one bad", { queues: { [open]: { max_concurrency: 3, max_pending: -5 } } }],
  ];
  for (const [what, body] of bad) {
    const res = await http<ErrorReply>(gw1, "PATCH", "/api/admin/ops", { body });
    t.equal(res.status, 400, `${what}: 400`, { body: res.text });
    t.match(res.body.error?.code, /^(validation_error|invalid_json)$/, `${what}: validation code`);
  }
  const tooFast = await http<ErrorReply>(gw1, "PATCH", "/api/admin/ops", { body: { queues: { [open]: { rate_limit: { max: 5, per_ms: 0 } } } } });
  t.match(tooFast.body.error?.message, /per_ms.*at least 1/, `a bad limit's message names the field and bound: ${tooFast.body.error?.message}`);
  const natsBadLimit = await requestJson<ErrorReply>(nc, "bosun.api.ops.set", { queues: { [open]: { max_concurrency: 1.5 } } });
  t.equal(natsBadLimit.errorCode, "400", "bosun.api.ops.set with a fractional max_concurrency: 400");
  t.equal(natsBadLimit.body.error?.code, "validation_error");
  const natsBad = await requestJson<ErrorReply>(nc, "bosun.api.ops.set", { submissions_paused: true, bogus: 1 });
  t.equal(natsBad.errorCode, "400", "bosun.api.ops.set with an unknown flag: 400");
  t.same(await httpOps(gw1), before, "the flags are unchanged");
  t.same(await httpOps(gw2), before, "also read through the other gateway");
  t.equal(await probe(gw2, open), 422, "and submissions are still open");
});

t.test("CLI: workers, queue, ops get|set, status and watch, with --json, against this nats-server", async (t) => {
  const queue = uniqueName("qc");
  const id = uniqueName("wc");
  await startSupervisor(t, server.url, { queues: [queue], workerId: id, args: [...small(), "--handlers", OPS_HANDLERS] });
  const nats = ["--nats", server.url];
  t.teardown(async () => {
    await requestJson(nc, "bosun.api.ops.set", { queues: { [queue]: { submissions_paused: false } } }).catch(() => undefined);
  });
  const done = await runJob(nc, { type: "echo", queue, payload: { cli: true } });
  await waitFor(async () => (await httpWorkers(gw)).some((w) => w.worker_id === id && w.idle_count === 1), { timeoutMs: 10_000, what: "worker listed" });

  const [workersJson, workersText, queueJson, statusJson, missing] = await Promise.all([
    runCli(["workers", "--json", ...nats]),
    runCli(["workers", ...nats]),
    runCli(["queue", "--json", ...nats]),
    runCli(["status", done.job_id, "--json", ...nats]),
    runCli(["status", "no_such_job", "--json", ...nats]),
  ]);
  t.equal(workersJson.code, 0, "workers --json exits 0", { stderr: workersJson.stderr });
  const workers = JSON.parse(workersJson.stdout) as WorkerInfo[];
  t.match(workers.find((w) => w.worker_id === id), { worker_id: id, queues: [queue], pool_size: 1, min_workers: 1, max_workers: 1 }, "workers --json lists our supervisor");
  t.equal(workersText.code, 0);
  t.match(workersText.stdout, /^WORKER\s/m, "the text form is a table");
  t.match(workersText.stdout, new RegExp(`^${id}\\s`, "m"), "with our supervisor on a row");

  t.equal(queueJson.code, 0, "queue --json exits 0", { stderr: queueJson.stderr });
  const queues = JSON.parse(queueJson.stdout) as QueueStatus[];
  t.match(queues.find((q) => q.queue === queue), { queue, pending: 0, running: 0, scheduled: 0, dead: 0, consumers: { durable: defaultLaneConsumer(queue), workers: [id] } }, "queue --json lists the queue");

  t.equal(statusJson.code, 0, "status --json exits 0", { stderr: statusJson.stderr });
  t.match(JSON.parse(statusJson.stdout), { job_id: done.job_id, type: "echo", queue, state: "succeeded", attempts: 1 }, "status --json is the job's status");
  t.equal(missing.code, 1, "status of an unknown job exits 1");
  t.match(missing.stderr, /not_found/, "and says not_found");

  const set = await runCli(["ops", "set", `${queue}.submissions_paused=true`, ...nats]);
  t.equal(set.code, 0, "ops set exits 0", { stderr: set.stderr });
  t.match(set.stdout, new RegExp(`^${queue}\\.submissions_paused=true$`, "m"), "and prints the flags");
  const got = await waitFor(
    async () => {
      const r = await runCli(["ops", "get", "--json", ...nats]);
      const flags = r.code === 0 ? (JSON.parse(r.stdout) as OpsFlags) : undefined;
      return flags?.queues[queue]?.submissions_paused === true ? flags : undefined;
    },
    { timeoutMs: 10_000, intervalMs: 100, what: "ops get --json to show the flag" },
  );
  t.match(got, { submissions_paused: false, queues: { [queue]: { submissions_paused: true } } }, "ops get --json shows the queue paused");
  const refused = await requestJson<ErrorReply>(nc, "bosun.api.jobs.submit", { type: "echo", queue });
  t.equal(refused.errorCode, "503", "a submit to that queue is refused");
  const unset = await runCli(["ops", "set", `${queue}.submissions_paused=false`, "--json", ...nats]);
  t.equal(unset.code, 0);
  t.match(JSON.parse(unset.stdout), { queues: { [queue]: { submissions_paused: false } } }, "ops set --json prints JSON");
  const badSet = await runCli(["ops", "set", "submissions_paused=maybe", ...nats]);
  t.equal(badSet.code, 2, "ops set with a bad assignment exits 2");
  t.match(badSet.stderr, /submissions_paused=true\|false/);

  // watch: every state change of a job until it ends, then exits by itself.
  await waitFor(async () => (await requestJson(nc, "bosun.api.jobs.submit", { type: "no.such.type", queue })).errorCode === "422", {
    timeoutMs: 5000,
    what: "the queue open again",
  });
  // The only process is held by a gated job, so the watched job waits queued until the
  // watch is attached; it then runs, reports 0.5 and waits at its own gate.
  const gates = await Gates.create(t);
  const blocker = await submitNats(nc, { type: "test.progress", queue, payload: { gate_before: gates.path("blocker"), after_ms: 0 } });
  await waitFor(async () => (await statusOf(blocker.job_id)).state === "running", { timeoutMs: 15_000, what: "the blocker running" });
  const job = await submitNats(nc, { type: "test.progress", queue, payload: { before_ms: 50, gate_after: gates.path("job") } });
  const watch = startCli(t, ["watch", job.job_id, "--json", ...nats]);
  await watch.waitForLog((l) => /"state": "queued"/.test(l.raw), 20_000, "watch printing the queued state");
  await gates.open("blocker");
  await watch.waitForLog((l) => /"progress": 0\.5/.test(l.raw), 20_000, "watch printing the progress");
  await gates.open("job");
  const exit = await within(watch.exited, 20_000, "watch exiting by itself once the job ended");
  const watched = { code: exit.code, stdout: watch.stdoutLines.map((l) => l.raw).join("\n"), stderr: watch.stderrLines.join("\n") };
  t.equal(watched.code, 0, "watch exits 0 once the job ended", { stderr: watched.stderr, stdout: watched.stdout });
  const events = parseJsonDocuments(watched.stdout) as { type: string; data: JobStatus & { progress: number | null } }[];
  const states = events.filter((e) => e.type === "state").map((e) => e.data.state);
  const sequence = events.map((e) => (e.type === "progress" ? `progress ${e.data.progress}` : e.data.state));
  t.same(sequence, ["queued", "running", "progress 0.5", "succeeded"], "watch --json prints queued, running, the progress, succeeded", { events });
  t.same(states, ["queued", "running", "succeeded"]);
  t.ok(events.every((e) => e.data.job_id === job.job_id), "all about the watched job");
  const result = await resultOf(nc, job.job_id);
  t.match(result, { state: "succeeded", result: { done: true } });
});

t.test("a supervisor stopped with SIGTERM leaves the workers list at once, and submits for its queue get 422, not 503", async (t) => {
  const queue = uniqueName("ql");
  const idA = uniqueName("wl");
  const idB = uniqueName("wk");
  // Long heartbeat periods: a supervisor that merely stopped beating would stay listed for 15 s.
  const slow = ["--min", "1", "--max", "1", "--heartbeat-ms", "5000"];
  const [a] = await Promise.all([
    startSupervisor(t, server.url, { queues: [queue], workerId: idA, args: slow }),
    startSupervisor(t, server.url, { queues: [uniqueName("qother")], workerId: idB, args: slow }),
  ]);
  await waitFor(async () => {
    const ws = await httpWorkers(gw);
    return ws.some((w) => w.worker_id === idA) && ws.some((w) => w.worker_id === idB);
  }, { timeoutMs: 15_000, what: "both supervisors listed" });
  const accepted = await http<SubmitReply>(gw, "POST", "/api/jobs", { body: { type: "echo", queue } });
  t.equal(accepted.status, 202, "while it runs, its queue takes submits");

  const stoppedAt = Date.now();
  const exit = a.stop();
  const gone = await waitFor(async () => !(await httpWorkers(gw)).some((w) => w.worker_id === idA) && Date.now(), {
    timeoutMs: 10_000,
    intervalMs: 50,
    what: `${idA} to leave the list`,
  });
  t.ok(gone - stoppedAt < 2000, `it left the list ${gone - stoppedAt} ms after SIGTERM (three heartbeat periods would be 15 s)`);
  const refused = await http<ErrorReply>(gw, "POST", "/api/jobs", { body: { type: "echo", queue } });
  t.ok(Date.now() - stoppedAt < 4000, "and right after that");
  t.equal(refused.status, 422, "a submit for the queue nobody serves now is 422", { body: refused.text });
  t.equal(refused.body.error?.code, "unknown_type");
  t.ok((await httpWorkers(gw)).some((w) => w.worker_id === idB), "the other supervisor is still listed");
  t.same(await exit, { code: 0, signal: null }, "the stopped supervisor exited 0");
});
