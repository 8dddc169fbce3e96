/**
 * Observability and maintenance against a real nats-server, supervisors and
 * gateways: Prometheus metrics (supervisor and gateway), the OpenAPI
 * document and /docs, a job's event stream with progress, the correlation
 * id from HTTP to records, results and log lines, and the maintenance tasks
 * that purge old job records and old temporary files.
 */
import { mkdir, mkdtemp, rm, stat, utimes, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import t from "tap";
import { startGateway, startSupervisor } from "./helpers/bosun.js";
import { http, type ErrorReply, type JobResult, type JobStatus, type SubmitReply } from "./helpers/http.js";
import { resultOf, runJob, submitNats } from "./helpers/jobs.js";
import { connectClient, requestJson } from "./helpers/nats-client.js";
import { NatsServer } from "./helpers/nats-server.js";
import { Gates, httpOps, httpQueue, httpWorkers, OPS_HANDLERS, scrape, SseStream, startMetricsSupervisor, type WorkerInfo } from "./helpers/ops.js";
import { promlint } from "./helpers/promlint.js";
import { uniqueName, waitFor, within } from "./helpers/wait.js";

const server = await NatsServer.start(t);
const nc = await connectClient(t, server.url);
const gateway = await startGateway(t, server.url);
const gw = gateway.baseUrl;

const small = (min = 1, max = 1) => ["--min", String(min), "--max", String(max), "--heartbeat-ms", "300"];

/** Polls GET /api/jobs/{id}/result on a gateway until the job has one. */
async function httpResult(base: string, jobId: string, timeoutMs = 20_000): Promise<JobResult & { correlation_id?: string }> {
  return waitFor(
    async () => {
      const res = await http<JobResult>(base, "GET", `/api/jobs/${jobId}/result`);
      if (res.status === 409) return undefined;
      if (res.status !== 200) throw new Error(`GET result of ${jobId}: ${res.status} ${res.text}`);
      return res.body;
    },
    { timeoutMs, intervalMs: 50, what: `the result of ${jobId}` },
  );
}

interface JobEventData {
  type: "state" | "progress";
  data: JobStatus & { progress: number | null; correlation_id: string };
}

t.test("metrics: supervisor and gateway counters move by exactly the jobs run", async (t) => {
  const queue = uniqueName("qm");
  const { metricsUrl } = await startMetricsSupervisor(t, server.url, { queues: [queue], workerId: uniqueName("wm"), args: small(1, 2) });
  const gwMetrics = `${gw}/metrics`;

  const before = await scrape(metricsUrl);
  t.match(before.contentType, /^text\/plain/, "supervisor /metrics is Prometheus text");
  const families: [string, string][] = [
    ["bosun_jobs_submitted_total", "counter"],
    ["bosun_jobs_succeeded_total", "counter"],
    ["bosun_job_attempts_failed_total", "counter"],
    ["bosun_jobs_retried_total", "counter"],
    ["bosun_jobs_dead_total", "counter"],
    ["bosun_jobs_cancelled_total", "counter"],
    ["bosun_job_duration_seconds", "histogram"],
    ["bosun_job_queue_wait_seconds", "histogram"],
    ["bosun_pool_size", "gauge"],
    ["bosun_pool_busy", "gauge"],
    ["bosun_pool_idle", "gauge"],
    ["bosun_process_restarts_total", "counter"],
    ["bosun_process_recycles_total", "counter"],
  ];
  for (const [name, type] of families) t.equal(before.types.get(name), type, `supervisor exposes ${name} (${type})`);
  const gwBefore = await scrape(gwMetrics);
  t.match(gwBefore.contentType, /^text\/plain/, "gateway /metrics is Prometheus text");
  t.equal(gwBefore.types.get("bosun_gateway_nats_request_seconds"), "histogram", "gateway exposes bosun_gateway_nats_request_seconds");
  t.equal(gwBefore.types.get("bosun_gateway_http_requests_total"), "counter", "gateway exposes bosun_gateway_http_requests_total");

  // 5 echo jobs over HTTP, 2 failing jobs with 2 attempts each, 1 crash, a running sleep
  // cancelled, a delayed noop cancelled before it ran.
  const n = 5;
  const echoes = await Promise.all(
    Array.from({ length: n }, (_, i) => http<JobResult>(gw, "POST", "/api/jobs?wait_ms=30000", { body: { type: "echo", queue, payload: { i } }, timeoutMs: 40_000 })),
  );
  t.same(echoes.map((r) => [r.status, r.body.state]), Array.from({ length: n }, () => [200, "succeeded"]), "5 echo jobs succeeded over HTTP");
  const fails = await Promise.all(
    [0, 1].map(() => runJob(nc, { type: "fail", queue, payload: { message: "no" }, max_attempts: 2, backoff: { type: "fixed", delay_ms: 50 } })),
  );
  t.same(fails.map((r) => [r.state, r.attempts]), [["dead", 2], ["dead", 2]], "2 failing jobs dead after 2 attempts each");
  const crash = await runJob(nc, { type: "crash", queue, max_attempts: 1 });
  t.match(crash, { state: "dead", error: { code: "crashed" } }, "a crash, dead");
  const sleeper = await submitNats(nc, { type: "sleep", queue, payload: { ms: 60_000 }, max_attempts: 1 });
  await waitFor(async () => (await requestJson<JobStatus>(nc, "bosun.api.jobs.get", { job_id: sleeper.job_id })).body.state === "running", {
    timeoutMs: 15_000,
    what: "the sleeper running",
  });
  const busy = await scrape(metricsUrl);
  t.equal(busy.value("bosun_pool_busy"), 1, "bosun_pool_busy is 1 while the sleeper runs");
  t.equal(busy.value("bosun_pool_size"), busy.value("bosun_pool_busy") + busy.value("bosun_pool_idle"), "size = busy + idle");
  const delayed = await submitNats(nc, { type: "noop", queue, delay_ms: 600_000 });
  for (const id of [sleeper.job_id, delayed.job_id]) t.equal((await http(gw, "POST", `/api/jobs/${id}/cancel`)).status, 202, `cancel ${id}`);
  t.equal((await resultOf(nc, sleeper.job_id)).state, "cancelled");
  t.equal((await resultOf(nc, delayed.job_id)).state, "cancelled");
  const missing = await http(gw, "GET", `/api/jobs/${uniqueName("nojob")}`);
  t.equal(missing.status, 404);

  const q = (type: string) => ({ queue, type });
  const expected: [string, Record<string, string>, number][] = [
    ["bosun_jobs_submitted_total", { queue }, n + 2 + 1 + 1 + 1],
    ["bosun_jobs_submitted_total", q("echo"), n],
    ["bosun_jobs_succeeded_total", { queue }, n],
    ["bosun_jobs_succeeded_total", q("echo"), n],
    ["bosun_job_attempts_failed_total", q("fail"), 4],
    ["bosun_job_attempts_failed_total", q("crash"), 1],
    ["bosun_job_attempts_failed_total", { queue }, 5],
    ["bosun_jobs_retried_total", { queue }, 2],
    ["bosun_jobs_retried_total", q("fail"), 2],
    ["bosun_jobs_dead_total", q("fail"), 2],
    ["bosun_jobs_dead_total", q("crash"), 1],
    ["bosun_jobs_dead_total", { queue }, 3],
    ["bosun_jobs_cancelled_total", q("sleep"), 1],
    ["bosun_jobs_cancelled_total", q("noop"), 1],
    ["bosun_job_duration_seconds_count", { queue }, n + 4 + 1 + 1],
    ["bosun_job_duration_seconds_count", q("echo"), n],
    ["bosun_job_queue_wait_seconds_count", { queue }, n + 4 + 1 + 1],
    ["bosun_job_duration_seconds_bucket", { ...q("echo"), le: "+Inf" }, n],
    ["bosun_process_restarts_total", {}, 1],
    ["bosun_process_recycles_total", { reason: "killed (cancelled)" }, 1],
  ];
  const delta = (after: Awaited<ReturnType<typeof scrape>>, name: string, labels: Record<string, string>) => after.value(name, labels) - before.value(name, labels);
  const settled = await waitFor(
    async () => {
      const after = await scrape(metricsUrl);
      return expected.every(([name, labels, want]) => delta(after, name, labels) === want) ? after : undefined;
    },
    { timeoutMs: 10_000, intervalMs: 100, what: "the supervisor's counters to reach the expected values" },
  ).catch(async () => scrape(metricsUrl));
  for (const [name, labels, want] of expected) t.equal(delta(settled, name, labels), want, `${name}${JSON.stringify(labels)} moved by ${want}`);
  const sum = settled.value("bosun_job_duration_seconds_sum", q("echo")) - before.value("bosun_job_duration_seconds_sum", q("echo"));
  t.ok(sum >= 0 && sum < 30, `the echo durations add up to a plausible ${sum.toFixed(3)} s`);

  // Pool gauges agree with the heartbeat.
  const idle = await waitFor(
    async () => {
      const m = await scrape(metricsUrl);
      const w = (await httpWorkers(gw)).find((x) => x.queues.includes(queue));
      const size = m.value("bosun_pool_size");
      // A process still starting counts in neither idle figure until the next heartbeat: wait for both to settle.
      return w && size >= 1 && m.value("bosun_pool_busy") === 0 && w.busy_count === 0 && size === w.pool_size && m.value("bosun_pool_idle") === w.idle_count ? { m, w } : undefined;
    },
    { timeoutMs: 15_000, what: "the pool back up, its gauges matching the workers list" },
  );
  t.equal(idle.m.value("bosun_pool_idle"), idle.w.idle_count, "bosun_pool_idle matches the workers list");
  t.equal(idle.m.value("bosun_pool_idle"), idle.m.value("bosun_pool_size"), "an idle pool: idle = size");

  // Gateway: one HTTP request counted per request, one NATS request per submit.
  const gwDelta = async (name: string, labels: Record<string, string>) => (await scrape(gwMetrics)).value(name, labels) - gwBefore.value(name, labels);
  const gwExpected: [string, Record<string, string>, number][] = [
    ["bosun_gateway_http_requests_total", { method: "POST", route: "/api/jobs", status: "200" }, n],
    ["bosun_gateway_http_requests_total", { method: "POST", route: "/api/jobs/:job_id/cancel", status: "202" }, 2],
    ["bosun_gateway_http_requests_total", { method: "GET", route: "/api/jobs/:job_id", status: "404" }, 1],
    ["bosun_gateway_nats_request_seconds_count", { subject: "bosun.api.jobs.submit", outcome: "ok" }, n],
    ["bosun_gateway_nats_request_seconds_count", { subject: "bosun.api.jobs.cancel", outcome: "ok" }, 2],
    ["bosun_gateway_nats_request_seconds_count", { subject: "bosun.api.jobs.get", outcome: "error_reply" }, 1],
  ];
  await waitFor(async () => (await Promise.all(gwExpected.map(([name, labels, want]) => gwDelta(name, labels).then((d) => d === want)))).every(Boolean), {
    timeoutMs: 5000,
    what: "the gateway's counters",
  }).catch(() => undefined);
  for (const [name, labels, want] of gwExpected) t.equal(await gwDelta(name, labels), want, `gateway ${name}${JSON.stringify(labels)} moved by ${want}`);
});

t.test("metrics: the gateway counts submits by outcome; every metric name of both passes promtool's checks", async (t) => {
  const queue = uniqueName("qp");
  const { metricsUrl } = await startMetricsSupervisor(t, server.url, { queues: [queue], workerId: uniqueName("wp"), args: small(1, 1) });
  const before = await scrape(`${gw}/metrics`);
  t.equal(before.types.get("bosun_gateway_job_submits_total"), "counter", "the gateway exposes bosun_gateway_job_submits_total");
  const submits: [Record<string, unknown>, string, number][] = [
    [{ type: "noop", queue }, "", 202],
    [{ type: "echo", queue, payload: { a: 1 } }, "?wait_ms=10000", 200],
    [{ type: "no.such.type", queue }, "", 422],
    [{ type: "echo", queue, timeout_ms: "soon" }, "", 400],
  ];
  for (const [body, query, status] of submits) t.equal((await http(gw, "POST", `/api/jobs${query}`, { body })).status, status, `submit ${JSON.stringify(body)}: ${status}`);
  const after = await scrape(`${gw}/metrics`);
  const moved = (outcome: string) => after.value("bosun_gateway_job_submits_total", { outcome }) - before.value("bosun_gateway_job_submits_total", { outcome });
  t.equal(moved("accepted"), 1, "accepted: 1");
  t.equal(moved("finished"), 1, "finished within wait_ms: 1");
  t.equal(moved("unknown_type"), 1, "unknown_type: 1");
  t.equal(moved("validation_error"), 1, "validation_error: 1");

  for (const [who, metrics] of [["gateway", after], ["supervisor", await scrape(metricsUrl)]] as const) {
    t.ok(metrics.types.size > 20, `${who}: ${metrics.types.size} metric families`);
    t.same(promlint(metrics), [], `${who}: no problem promtool check metrics would report`);
    t.ok([...metrics.types.keys()].some((n) => /nodejs_active_handles$/.test(n)), `${who}: the by-type nodejs_active_handles gauge stays`);
  }
});

t.test("OpenAPI: /openapi.json documents every route the gateway serves, from the same schemas; /docs is Swagger UI", async (t) => {
  await startSupervisor(t, server.url, { queues: [uniqueName("qo")], args: ["--min", "0", "--max", "1", "--heartbeat-ms", "300"] });
  const res = await http<{ openapi: string; info: { title: string }; paths: Record<string, Record<string, OpenApiOperation>> }>(gw, "GET", "/openapi.json");
  t.equal(res.status, 200);
  t.match(res.headers.get("content-type") ?? "", /application\/json/);
  t.match(res.body.openapi, /^3\.\d+\.\d+$/, "an OpenAPI 3 document");
  t.type(res.body.info?.title, "string");
  const doc = res.body.paths;

  // The routes of README's and CONTRACT's tables (a route the gateway answers with its
  // "no route" 404 is not implemented yet and may be missing from the document).
  const tables: [string, string][] = [
    ["post", "/api/jobs"],
    ["get", "/api/jobs"],
    ["get", "/api/jobs/{job_id}"],
    ["get", "/api/jobs/{job_id}/result"],
    ["post", "/api/jobs/{job_id}/retry"],
    ["post", "/api/jobs/{job_id}/cancel"],
    ["get", "/api/jobs/{job_id}/events"],
    ["get", "/api/jobs/{job_id}/files"],
    ["get", "/api/platform/workers"],
    ["get", "/api/platform/workers/stream"],
    ["post", "/api/platform/workers/{worker_id}/recycle"],
    ["get", "/api/platform/queue"],
    ["get", "/api/admin/ops"],
    ["patch", "/api/admin/ops"],
    ["post", "/api/system/maintenance/cleanup-runs"],
    ["post", "/api/system/maintenance/cleanup-temp-files"],
    ["get", "/healthz"],
    ["get", "/readyz"],
    ["get", "/metrics"],
    ["get", "/openapi.json"],
    ["post", "/api/compute/enroll-tokens"],
    ["post", "/api/compute/servers"],
    ["post", "/api/compute/jobs/lease"],
    ["post", "/api/compute/jobs/{job_id}/heartbeat"],
    ["post", "/api/compute/jobs/{job_id}/result"],
    ["post", "/api/compute/jobs/{job_id}/failed"],
    ["delete", "/api/compute/servers/{server_id}"],
    ["get", "/api/targets"],
    ["put", "/api/targets/{target_id}/active"],
  ];
  // The operator features of this release: these must be served.
  const mustServe = new Set(tables.slice(0, 20).map(([m, p]) => `${m} ${p}`));
  mustServe.delete("get /api/jobs/{job_id}/files");

  /** Whether the gateway serves METHOD PATH: anything but its own "no route" 404 (probes change nothing). */
  const served = async (method: string, template: string): Promise<{ served: boolean; status: number }> => {
    const url = template.replace(/\{[a-z_]+\}/g, (m) => `probe_${m.slice(1, -1)}`);
    const body = method === "get" || method === "delete" ? undefined : { probe_unknown_field: true };
    // Accept JSON only: the event streams answer 406 at once instead of streaming.
    const r = await http<ErrorReply>(gw, method.toUpperCase(), url, { body, headers: { accept: "application/json" }, timeoutMs: 10_000 });
    const noRoute = r.status === 404 && /^no route/.test(r.body?.error?.message ?? "");
    return { served: !noRoute, status: r.status };
  };

  for (const [method, template] of tables) {
    const probe = await served(method, template);
    const key = `${method} ${template}`;
    if (mustServe.has(key)) t.ok(probe.served, `the gateway serves ${key} (probe answered ${probe.status})`);
    if (probe.served) t.ok(doc[template]?.[method], `the document lists ${key}`);
    else t.notOk(doc[template]?.[method], `${key} is not served, and not documented either`);
  }
  // And the other way round: everything documented is served.
  for (const [template, ops] of Object.entries(doc)) {
    for (const method of Object.keys(ops)) {
      const probe = await served(method, template);
      t.ok(probe.served, `documented ${method} ${template} is served (probe answered ${probe.status})`);
    }
  }

  // The shapes come from the zod schemas the routes validate with.
  const submit = doc["/api/jobs"]?.post?.requestBody?.content?.["application/json"]?.schema;
  t.ok(submit, "POST /api/jobs documents its body");
  for (const field of ["type", "payload", "queue", "tenant", "idempotency_key", "delay_ms", "run_at", "timeout_ms", "max_attempts", "backoff", "priority", "correlation_id"]) {
    t.ok(submit?.properties?.[field], `the submit body documents ${field}`);
  }
  t.same(submit?.required, ["type"], "only type is required");
  t.equal(submit?.additionalProperties, false, "unknown fields are refused, as the route does");
  const opsPatch = doc["/api/admin/ops"]?.patch?.requestBody?.content?.["application/json"]?.schema;
  t.match(opsPatch, { additionalProperties: false, properties: { submissions_paused: { type: "boolean" }, queues: { type: "object" } } }, "PATCH /api/admin/ops documents the flags");
  t.ok(
    doc["/api/jobs/{job_id}"]?.get?.parameters?.some((p) => p.name === "job_id" && p.in === "path" && p.required),
    "path parameters are documented",
  );
  t.ok(doc["/api/platform/workers/{worker_id}/recycle"]?.post?.parameters?.some((p) => p.name === "pid" && p.in === "query"), "recycle documents ?pid=");

  // What the routes answer has exactly the documented fields.
  const propsOf = (method: string, p: string, status = "200") => Object.keys(doc[p]?.[method]?.responses?.[status]?.content?.["application/json"]?.schema?.properties ?? {}).sort();
  const ops = await httpOps(gw);
  t.same(Object.keys(ops).sort(), propsOf("get", "/api/admin/ops"), "GET /api/admin/ops answers the documented fields");
  const workers = await waitFor(async () => (await httpWorkers(gw)).find((w) => w.queues.length > 0), { timeoutMs: 10_000, what: "a worker" });
  const workerSchema = doc["/api/platform/workers"]?.get?.responses?.["200"]?.content?.["application/json"]?.schema?.items;
  t.same(Object.keys(workers as WorkerInfo).sort(), Object.keys(workerSchema?.properties ?? {}).sort(), "a WorkerInfo has exactly the documented fields");
  t.same([...(workerSchema?.required ?? [])].sort(), Object.keys(workerSchema?.properties ?? {}).sort(), "all of them required");
  const queues = await http<{ queues: object[] }>(gw, "GET", "/api/platform/queue");
  const queueSchema = doc["/api/platform/queue"]?.get?.responses?.["200"]?.content?.["application/json"]?.schema?.properties?.queues?.items;
  t.same(Object.keys(queues.body.queues[0] ?? {}).sort(), Object.keys(queueSchema?.properties ?? {}).sort(), "a queue status has exactly the documented fields");
  const recycleReply = doc["/api/platform/workers/{worker_id}/recycle"]?.post?.responses?.["200"]?.content?.["application/json"]?.schema?.properties;
  t.same(Object.keys(recycleReply ?? {}).sort(), ["pid", "status", "thread_id", "worker_id"], "the recycle reply is documented (thread_id: with thread isolation)");

  const docs = await fetch(`${gw}/docs`, { signal: AbortSignal.timeout(10_000) });
  const html = await docs.text();
  t.equal(docs.status, 200, "/docs answers 200 (after redirects)");
  t.match(docs.headers.get("content-type") ?? "", /text\/html/, "with HTML");
  t.match(html, /swagger-ui/i, "the Swagger UI page");
});

interface JsonSchema {
  type?: string;
  properties?: Record<string, JsonSchema>;
  items?: JsonSchema;
  required?: string[];
  additionalProperties?: unknown;
}
interface OpenApiOperation {
  parameters?: { name: string; in: string; required?: boolean }[];
  requestBody?: { content?: Record<string, { schema?: JsonSchema }> };
  responses?: Record<string, { content?: Record<string, { schema?: JsonSchema }> }>;
}


t.test("job events: SSE shows every state change and progress report in order, and ends with the job", async (t) => {
  const queue = uniqueName("qe");
  await startSupervisor(t, server.url, { queues: [queue], args: [...small(), "--handlers", OPS_HANDLERS] });
  // The only process is held by a gated job, so the watched job waits queued until the
  // stream is attached; it then runs, reports 0.5 and waits at its own gate while the
  // test reads its status.
  const gates = await Gates.create(t);
  const blocker = await submitNats(nc, { type: "test.progress", queue, payload: { gate_before: gates.path("blocker"), after_ms: 0 } });
  await waitFor(async () => (await requestJson<JobStatus>(nc, "bosun.api.jobs.get", { job_id: blocker.job_id })).body.state === "running", {
    timeoutMs: 15_000,
    what: "the blocker running",
  });
  const submitted = await http<SubmitReply>(gw, "POST", "/api/jobs", {
    body: { type: "test.progress", queue, payload: { before_ms: 50, progress: 0.5, gate_after: gates.path("job") } },
  });
  t.equal(submitted.status, 202);
  const jobId = submitted.body.job_id;
  const stream = await SseStream.open(t, `${gw}/api/jobs/${jobId}/events`);
  t.equal(stream.status, 200);
  t.match(stream.headers?.get("content-type") ?? "", /^text\/event-stream/);
  await stream.next(() => true, { what: "the first event" });
  await gates.open("blocker");

  const progress = await stream.next((e) => (e.data as JobEventData).type === "progress", { timeoutMs: 20_000, what: "a progress event" });
  const during = await http<JobStatus & { progress: number | null }>(gw, "GET", `/api/jobs/${jobId}`);
  t.match(during.body, { state: "running", progress: 0.5 }, "ctx.progress(0.5) shows in the job's status");
  t.match(progress.data, { type: "progress", data: { job_id: jobId, state: "running", progress: 0.5 } }, "the progress event carries the status");

  await gates.open("job");
  await within(stream.ended, 20_000, "the events stream ending by itself");
  t.ok(stream.closedByServer, "the server closed the stream once the job ended");
  const events = stream.events.map((e) => ({ event: e.event, ...(e.data as JobEventData) }));
  t.ok(events.every((e) => e.event === e.type && (e.type === "state" || e.type === "progress")), "each `event:` matches its data's type", { events });
  t.ok(events.every((e) => e.data.job_id === jobId), "every event is about this job");
  const sequence = events.map((e) => (e.type === "progress" ? `progress ${e.data.progress}` : e.data.state));
  t.same(sequence, ["queued", "running", "progress 0.5", "succeeded"], "queued -> running -> progress -> succeeded, in order", { sequence });
  t.equal(stream.events.at(-1)?.event, "state", "the last event is a state change");
  const final = await http<JobStatus>(gw, "GET", `/api/jobs/${jobId}`);
  t.match(final.body, { state: "succeeded", finished_at: String }, "the job's status at the end");
  t.same(events.at(-1)?.data, final.body, "the final event's data is the job's final status");

  // A finished job: one event (its final state), then the end.
  const again = await SseStream.open(t, `${gw}/api/jobs/${jobId}/events`);
  await within(again.ended, 10_000, "the stream of a finished job ending");
  t.same(
    again.events.map((e) => [e.event, (e.data as JobEventData).data.state]),
    [["state", "succeeded"]],
    "a finished job's stream is its final state, then the end",
  );

  // Two reports in a row (within the supervisor's 250 ms write gap), then the job waits at
  // its gate: the last report must show, in the status and on the stream, before it ends.
  const burst = await http<SubmitReply>(gw, "POST", "/api/jobs", { body: { type: "test.burst", queue, payload: { gate: gates.path("burst") } } });
  const burstStream = await SseStream.open(t, `${gw}/api/jobs/${burst.body.job_id}/events`);
  // (The stream may attach after the first report: then its first event already shows it.)
  await burstStream.next((e) => (e.data as JobEventData).data.progress !== null, { timeoutMs: 20_000, what: "an event showing progress" });
  const latest = await waitFor(
    async () => {
      const s = await http<JobStatus & { progress: number | null }>(gw, "GET", `/api/jobs/${burst.body.job_id}`);
      return s.body.progress === 0.75 ? s.body : undefined;
    },
    { timeoutMs: 2000, intervalMs: 50, what: "progress 0.75" },
  ).catch(() => http<JobStatus & { progress: number | null }>(gw, "GET", `/api/jobs/${burst.body.job_id}`).then((r) => r.body));
  t.match(latest, { state: "running", progress: 0.75 }, "the status shows the last report while the job still runs");
  await gates.open("burst");
  await within(burstStream.ended, 20_000, "the burst job's stream ending");
  const burstEvents = burstStream.events.map((e) => (e.data as JobEventData).data);
  t.ok(
    burstEvents.some((d) => d.state === "running" && d.progress === 0.75),
    "the stream shows the last report before the end",
    { burstEvents: burstEvents.map((d) => [d.state, d.progress]) },
  );
  t.equal(burstEvents.at(-1)?.state, "succeeded");

  const unknown = await http<ErrorReply>(gw, "GET", `/api/jobs/${uniqueName("nojob")}/events`);
  t.equal(unknown.status, 404, "an unknown job's events: 404", { body: unknown.text });
  t.equal(unknown.body.error?.code, "not_found");
});

t.test("job events: a stream that cannot start (no supervisor answers) leaves none of its subscriptions behind", async (t) => {
  const lone = await NatsServer.start(t, { monitor: true });
  const lonely = await startGateway(t, lone.url);
  const jobId = `AbCdEfGh${"0".repeat(22)}`;
  for (let i = 0; i < 3; i++) {
    const res = await http<ErrorReply>(lonely.baseUrl, "GET", `/api/jobs/${jobId}/events`);
    t.equal(res.status, 503, "no supervisor answers the first read: 503");
    t.equal(res.body.error?.code, "unavailable");
  }
  const subjects = await lone.subscribedSubjects();
  t.ok(subjects.length > 0, "the monitor lists the gateway's other subscriptions", { subjects });
  t.same(
    subjects.filter((s) => s.includes(jobId)),
    [],
    "no subject of the job is followed any more (each refused stream left three before)",
  );
});

t.test("correlation id: from x-correlation-id into the record, the result, the supervisor's and the handler's log lines", async (t) => {
  const queue = uniqueName("qc");
  const sup = await startSupervisor(t, server.url, { queues: [queue], args: [...small(), "--handlers", OPS_HANDLERS], env: { BOSUN_LOG_LEVEL: "debug" } });
  const cid = "abc-123";
  const marker = uniqueName("m");
  const res = await http<JobResult & { correlation_id: string }>(gw, "POST", "/api/jobs?wait_ms=20000", {
    body: { type: "test.log", queue, payload: { marker } },
    headers: { "x-correlation-id": cid },
    timeoutMs: 30_000,
  });
  t.equal(res.status, 200, "the job ran", { body: res.text });
  t.equal(res.headers.get("x-correlation-id"), cid, "the response echoes the correlation id");
  t.match(res.body, { state: "succeeded", result: { logged: marker }, correlation_id: cid }, "the waited result carries it");
  const jobId = res.body.job_id;
  const status = await http<JobStatus & { correlation_id: string }>(gw, "GET", `/api/jobs/${jobId}`);
  t.equal(status.body.correlation_id, cid, "the job's record carries it");
  const result = await httpResult(gw, jobId);
  t.equal(result.correlation_id, cid, "the stored result carries it");

  const logged = (msg: string) =>
    sup.proc.waitForLog((l) => l.json?.msg === msg && l.json.job_id === jobId, 10_000, `"${msg}" for ${jobId}`).then((l) => l.json!);
  const handlerLine = await logged("handler says hi");
  t.match(handlerLine, { correlation_id: cid, job_id: jobId, marker, attempt: 1 }, "the handler's ctx.log line carries the correlation id");
  const submittedLine = await logged("job submitted");
  t.match(submittedLine, { correlation_id: cid, level: 20 }, "the supervisor's debug line about the submit carries it");
  const succeededLine = await logged("job succeeded");
  t.match(succeededLine, { correlation_id: cid, level: 20 }, "the supervisor's debug line about the success carries it");
  const aboutJob = sup.proc.logs.filter((l) => l.job_id === jobId);
  t.same(aboutJob.filter((l) => l.correlation_id !== cid).map((l) => l.msg), [], `all ${aboutJob.length} log lines about the job carry it`);

  // A job whose process is killed (cancelled while running): every line about it too.
  const cid2 = "abc-456";
  const sleeper = await http<SubmitReply>(gw, "POST", "/api/jobs", { body: { type: "sleep", queue, payload: { ms: 60_000 }, max_attempts: 1 }, headers: { "x-correlation-id": cid2 } });
  await waitFor(async () => (await http<JobStatus>(gw, "GET", `/api/jobs/${sleeper.body.job_id}`)).body.state === "running", { timeoutMs: 15_000, what: "the sleeper running" });
  t.equal((await http(gw, "POST", `/api/jobs/${sleeper.body.job_id}/cancel`)).status, 202);
  t.match(await httpResult(gw, sleeper.body.job_id), { state: "cancelled", correlation_id: cid2 }, "the cancelled job's result carries its id");
  await sup.proc.waitForLog((l) => l.json?.msg === "job cancelled while running" && l.json.job_id === sleeper.body.job_id, 10_000, "the cancel in the log");
  const aboutSleeper = sup.proc.logs.filter((l) => l.job_id === sleeper.body.job_id);
  t.ok(aboutSleeper.some((l) => l.correlation_id === cid2), "the supervisor's lines about the cancelled job carry it");
  t.same(
    aboutSleeper.filter((l) => l.correlation_id !== cid2).map((l) => l.msg),
    [],
    "every supervisor line about the cancelled job carries it",
  );
  const notJson = sup.proc.stdoutLines.filter((l) => !l.json);
  t.same(notJson.map((l) => l.raw), [], "every log line is one JSON object");

  // Without a header: one is generated, echoed, and stored.
  const plain = await http<SubmitReply>(gw, "POST", "/api/jobs", { body: { type: "echo", queue } });
  const generated = plain.headers.get("x-correlation-id");
  t.ok(generated && generated.length > 0, `a correlation id is generated (${generated})`);
  t.equal((await httpResult(gw, plain.body.job_id)).correlation_id, generated, "and is the job's");
  // From a raw NATS submit's header; a body field wins over the header.
  const viaNats = await requestJson<SubmitReply>(nc, "bosun.api.jobs.submit", { type: "echo", queue }, { headers: { "x-correlation-id": "nats-cid-7" } });
  t.equal((await httpResult(gw, viaNats.body.job_id)).correlation_id, "nats-cid-7", "a NATS header sets it too");
  const both = await http<SubmitReply>(gw, "POST", "/api/jobs", { body: { type: "echo", queue, correlation_id: "from-body" }, headers: { "x-correlation-id": "from-header" } });
  t.equal((await httpResult(gw, both.body.job_id)).correlation_id, "from-body", "the body's correlation_id wins over the header");
});

t.test("maintenance: cleanup-runs purges exactly the old finished records and results; cleanup-temp-files exactly the old files", async (t) => {
  // Own server: every finished record in it is one this test made.
  const srv = await NatsServer.start(t);
  const nc2 = await connectClient(t, srv.url);
  // The temp files below live under os.tmpdir(); cleanup-temp-files only works below --temp-dir.
  const [, g] = await Promise.all([
    startSupervisor(t, srv.url, { queues: ["default"], args: [...small(1, 2), "--temp-dir", os.tmpdir()] }),
    startGateway(t, srv.url),
  ]);
  const base = g.baseUrl;
  const maxAgeHours = 0.0015; // 5.4 s
  const maxAgeMs = maxAgeHours * 3_600_000;

  const oldOk = await Promise.all([0, 1, 2].map((i) => runJob(nc2, { type: "echo", payload: { i } })));
  const oldDead = await runJob(nc2, { type: "fail", payload: { message: "old" }, max_attempts: 1 });
  const cancelled = await submitNats(nc2, { type: "noop", delay_ms: 600_000 });
  t.equal((await http(base, "POST", `/api/jobs/${cancelled.job_id}/cancel`)).status, 202);
  const notFinished = await submitNats(nc2, { type: "noop", delay_ms: 600_000 });
  const old = [...oldOk.map((r) => r.job_id), oldDead.job_id, cancelled.job_id];
  const finishedAt = async (id: string) => {
    const s = await http<JobStatus & { finished_at: string | null }>(base, "GET", `/api/jobs/${id}`);
    return Date.parse(s.body.finished_at ?? "");
  };
  const lastOld = Math.max(...(await Promise.all(old.map(finishedAt))));
  t.ok(Number.isFinite(lastOld), "the old jobs are finished");
  // Let the old ones age past max_age_hours (a clock condition, not an event to wait for).
  await waitFor(() => Date.now() > lastOld + maxAgeMs + 1000, { timeoutMs: maxAgeMs + 20_000, intervalMs: 100, what: "the old jobs to age" });

  const fresh = await Promise.all([0, 1].map((i) => runJob(nc2, { type: "echo", payload: { fresh: i } })));
  const queued = await http<{ status: string; task_id: string }>(base, "POST", "/api/system/maintenance/cleanup-runs", { body: { max_age_hours: maxAgeHours } });
  t.equal(queued.status, 202, "cleanup-runs answers 202", { body: queued.text });
  t.match(queued.body, { status: "queued", task_id: String });
  const task = await httpResult(base, queued.body.task_id);
  const taskStatus = await http<JobStatus & { started_at: string }>(base, "GET", `/api/jobs/${queued.body.task_id}`);
  const freshFinished = Math.min(...(await Promise.all(fresh.map((r) => finishedAt(r.job_id)))));
  t.ok(Date.parse(taskStatus.body.started_at) - freshFinished < maxAgeMs, "precondition: the task ran before the fresh jobs aged");
  t.match(task, { state: "succeeded", result: { records_removed: old.length, dead_letters_removed: 1, max_age_hours: maxAgeHours } }, "the result counts the 5 old jobs and the 1 dead letter", { task });
  t.type((task.result as { duration_ms?: unknown }).duration_ms, "number", "and the time taken");

  for (const id of old) {
    t.equal((await http(base, "GET", `/api/jobs/${id}`)).status, 404, `old job ${id}: record gone`);
    t.equal((await http(base, "GET", `/api/jobs/${id}/result`)).status, 404, `old job ${id}: result gone`);
  }
  for (const r of fresh) {
    t.equal((await http(base, "GET", `/api/jobs/${r.job_id}`)).status, 200, `fresh job ${r.job_id}: record kept`);
    t.match((await http(base, "GET", `/api/jobs/${r.job_id}/result`)).body, { state: "succeeded" }, `fresh job ${r.job_id}: result kept`);
  }
  t.match((await http(base, "GET", `/api/jobs/${notFinished.job_id}`)).body, { state: "scheduled" }, "an old job not finished yet is kept");
  const deadListed = await http<{ jobs: JobStatus[] }>(base, "GET", "/api/jobs?state=dead");
  t.notOk(
    deadListed.body.jobs.some((j) => j.job_id === oldDead.job_id),
    "the purged dead job is not listed among the dead any more",
  );
  const listed = await http<{ jobs: JobStatus[] }>(base, "GET", "/api/jobs?limit=1000");
  const ids = new Set(listed.body.jobs.map((j) => j.job_id));
  t.ok(old.every((id) => !ids.has(id)), "the list no longer has the old jobs");
  t.ok([...fresh.map((r) => r.job_id), notFinished.job_id, queued.body.task_id].every((id) => ids.has(id)), "and still has the others");

  // Temporary files: old ones (by mtime) go, at any depth; fresh ones and directories stay.
  const dir = await mkdtemp(path.join(os.tmpdir(), "bosun-test-cleanup-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await mkdir(path.join(dir, "sub", "deeper"), { recursive: true });
  const threeHoursAgo = new Date(Date.now() - 3 * 3_600_000);
  const files: [string, number, boolean][] = [
    ["old1.txt", 100, true],
    ["sub/old2.log", 50, true],
    ["sub/deeper/old3", 25, true],
    ["fresh1.txt", 10, false],
    ["sub/fresh2.txt", 20, false],
  ];
  for (const [name, size, isOld] of files) {
    const file = path.join(dir, name);
    await writeFile(file, "x".repeat(size));
    if (isOld) await utimes(file, threeHoursAgo, threeHoursAgo);
  }
  await utimes(path.join(dir, "sub"), threeHoursAgo, threeHoursAgo);
  const filesTask = await http<{ status: string; task_id: string }>(base, "POST", "/api/system/maintenance/cleanup-temp-files", { body: { dir, max_age_hours: 1 } });
  t.equal(filesTask.status, 202, { body: filesTask.text });
  t.match(filesTask.body, { status: "queued", task_id: String });
  const filesResult = await httpResult(base, filesTask.body.task_id);
  t.match(filesResult, { state: "succeeded", result: { dir, files_removed: 3, bytes_freed: 175, max_age_hours: 1 } }, "3 old files, 175 bytes", { filesResult });
  const exists = (name: string) => stat(path.join(dir, name)).then(() => true, () => false);
  for (const [name, , isOld] of files) t.equal(await exists(name), !isOld, `${name} ${isOld ? "removed" : "kept"}`);
  t.ok((await exists("sub")) && (await exists("sub/deeper")), "directories are kept");

  const nowhere = await http<{ task_id: string }>(base, "POST", "/api/system/maintenance/cleanup-temp-files", { body: { dir: path.join(dir, "missing"), max_age_hours: 1 } });
  t.match(await httpResult(base, nowhere.body.task_id), { state: "succeeded", result: { files_removed: 0, bytes_freed: 0 } }, "a missing directory: nothing to remove");
  const outside = await http<ErrorReply>(base, "POST", "/api/system/maintenance/cleanup-temp-files", { body: { dir: "/", max_age_hours: 1 } });
  t.equal(outside.status, 400, "a dir outside --temp-dir is refused at submit", { body: outside.text });
  t.match(outside.body.error.message, /inside the temp dir/);

  for (const [route, body] of [
    ["cleanup-runs", { max_age_hours: -1 }],
    ["cleanup-runs", { max_age_hours: "1" }],
    ["cleanup-runs", { bogus: true }],
    ["cleanup-temp-files", { dir: 5 }],
  ] as const) {
    const res = await http<ErrorReply>(base, "POST", `/api/system/maintenance/${route}`, { body });
    t.equal(res.status, 400, `${route} ${JSON.stringify(body)}: 400`, { body: res.text });
  }
  const badQueue = await http<ErrorReply>(base, "POST", "/api/system/maintenance/cleanup-runs?queue=no%20spaces", { body: {} });
  t.equal(badQueue.status, 400, "an invalid ?queue= is 400", { body: badQueue.text });
  t.match(await httpQueue(base, "default"), { pending: 0 }, "the refused ones queued nothing");

  // ?queue= picks the queue: one no supervisor serves is refused, another one runs the task.
  const unserved = await http<ErrorReply>(base, "POST", `/api/system/maintenance/cleanup-runs?queue=${uniqueName("nobody")}`, { body: {} });
  t.equal(unserved.status, 422, "a queue no supervisor serves: 422", { body: unserved.text });
  const opsQueue = uniqueName("ops");
  await startSupervisor(t, srv.url, { queues: [opsQueue], args: small(1, 1) });
  const onOps = await http<{ task_id: string }>(base, "POST", `/api/system/maintenance/cleanup-temp-files?queue=${opsQueue}`, { body: { max_age_hours: 1 } });
  t.equal(onOps.status, 202, "a task on another queue is accepted", { body: onOps.text });
  t.match(await httpResult(base, onOps.body.task_id), { state: "succeeded" }, "and runs there");
  t.match((await http<JobStatus>(base, "GET", `/api/jobs/${onOps.body.task_id}`)).body, { queue: opsQueue }, "its record names that queue");
});
