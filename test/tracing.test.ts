/**
 * Tracing across processes. With an SDK in every process (test/fixtures/
 * trace-to-file.mjs, exporting each span as a JSON line) one submit makes one
 * connected trace: the caller's span -> gateway -> NATS API (supervisor) ->
 * run (supervisor) -> a span the handler makes (execution process); the run
 * span lasts until the result is stored and names the job. Without an SDK, the traceparent still travels through
 * unchanged, and none is made when the request has none.
 */
import { mkdtemp, readFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import t from "tap";
import { context, SpanKind, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from "@opentelemetry/sdk-trace";
import { connectHttp } from "../src/client/index.js";
import { startGateway, startSupervisor } from "./helpers/bosun.js";
import { http } from "./helpers/http.js";
import { NatsServer } from "./helpers/nats-server.js";
import { uniqueName, waitFor } from "./helpers/wait.js";

const HANDLERS = fileURLToPath(new URL("./fixtures/trace-handlers.js", import.meta.url));
const SETUP = fileURLToPath(new URL("./fixtures/trace-to-file.mjs", import.meta.url));

interface SpanLine {
  name: string;
  trace_id: string;
  span_id: string;
  parent_span_id: string | null;
  pid: number;
  attributes: Record<string, unknown>;
}

interface TraceResult {
  ctx_trace: { traceparent: string; trace_id: string; span_id: string } | null;
  active_span_id: string | null;
  active_trace_id: string | null;
}

const server = await NatsServer.start(t);

// This process's own spans go to the SDK's in-memory exporter.
const memory = new InMemorySpanExporter();
context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
trace.setGlobalTracerProvider(new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter: memory })] }));
t.teardown(() => {
  trace.disable();
  context.disable();
});

t.test("one submit makes one connected trace across gateway, supervisor and execution process", async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), "bosun-trace-"));
  const spansFile = path.join(dir, "spans.jsonl");
  const queue = uniqueName("traced");
  const traced = { nodeArgs: ["--import", SETUP], env: { BOSUN_TEST_SPANS_FILE: spansFile } };
  await startSupervisor(t, server.url, { queues: [queue], args: ["--handlers", HANDLERS, "--min", "1", "--max", "1"], ...traced });
  const gateway = await startGateway(t, server.url, traced);
  const client = connectHttp(gateway.baseUrl);

  const root = trace.getTracer("test").startSpan("test submit", { kind: SpanKind.CLIENT });
  const { job_id } = await context.with(trace.setSpan(context.active(), root), () => client.submit({ type: "test.trace", queue }));
  root.end();
  const result = await client.wait(job_id, { timeoutMs: 15_000 });
  const seen = result.result as TraceResult;
  const traceId = root.spanContext().traceId;
  t.equal(memory.getFinishedSpans()[0]?.spanContext().traceId, traceId, "the in-memory exporter has the caller's span");

  const spansOf = async (id: string | undefined) => {
    const text = await readFile(spansFile, "utf8").catch(() => "");
    return text.split("\n").filter(Boolean).map((l) => JSON.parse(l) as SpanLine).filter((s) => s.trace_id === id);
  };
  const spans = await waitFor(async () => {
    const all = await spansOf(traceId);
    return ["POST /api/jobs", "bosun.api jobs_submit", "bosun.run test.trace", "handler work"].every((n) => all.some((s) => s.name === n)) && all;
  }, { timeoutMs: 10_000, what: "the four spans of the job" });
  const named = (name: string) => spans.find((s) => s.name === name)!;
  const gatewaySpan = named("POST /api/jobs");
  const apiSpan = named("bosun.api jobs_submit");
  const runSpan = named("bosun.run test.trace");
  const handlerSpan = named("handler work");
  t.equal(gatewaySpan.parent_span_id, root.spanContext().spanId, "gateway span <- caller span");
  t.equal(apiSpan.parent_span_id, gatewaySpan.span_id, "NATS API span <- gateway span");
  t.equal(runSpan.parent_span_id, apiSpan.span_id, "run span <- submit's API span");
  t.equal(handlerSpan.parent_span_id, runSpan.span_id, "a span made in the handler <- run span");
  t.notOk(spans.some((s) => s.name.startsWith("bosun.handler")), "the execution process records no span of its own");
  t.equal(runSpan.attributes["bosun.job_id"], job_id, "the run span names the job, which ties its result to the trace");
  t.equal(new Set([gatewaySpan.pid, runSpan.pid, handlerSpan.pid]).size, 3, "three processes took part");
  t.equal(apiSpan.pid, runSpan.pid, "the supervisor served the API and ran the job");

  t.equal(seen.ctx_trace?.trace_id, traceId, "ctx.trace names the trace");
  t.equal(seen.ctx_trace?.span_id, runSpan.span_id, "ctx.trace is the run span");
  t.equal(seen.active_span_id, runSpan.span_id, "the run span is the handler's active context");


  // A caller without a trace: with an SDK the gateway starts one, and the job joins it.
  const untraced = await http<{ result: TraceResult }>(gateway.baseUrl, "POST", "/api/jobs?wait_ms=10000", { body: { type: "test.trace", queue } });
  t.equal(untraced.status, 200, untraced.text);
  const started = untraced.body.result.ctx_trace?.trace_id;
  t.match(started, /^[0-9a-f]{32}$/, "a trace made where none came");
  const startedSpans = await waitFor(async () => {
    const all = await spansOf(started);
    return ["POST /api/jobs", "bosun.run test.trace"].every((n) => all.some((s) => s.name === n)) && all;
  }, { timeoutMs: 10_000, what: "the spans of the untraced caller's job" });
  t.equal(startedSpans.find((s) => s.name === "POST /api/jobs")?.parent_span_id, null, "the gateway span is the trace's root");
});

t.test("without an SDK the traceparent passes through, and none is made when none comes", async (t) => {
  const queue = uniqueName("untraced");
  await startSupervisor(t, server.url, { queues: [queue], args: ["--handlers", HANDLERS, "--min", "1", "--max", "1"] });
  const gateway = await startGateway(t, server.url);
  const given = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
  const submit = async (headers: Record<string, string>) => {
    const res = await http<{ result: TraceResult }>(gateway.baseUrl, "POST", "/api/jobs?wait_ms=10000", { body: { type: "test.trace", queue }, headers });
    t.equal(res.status, 200, res.text);
    return res.body.result;
  };
  const passed = await submit({ traceparent: given });
  t.same(passed.ctx_trace, { traceparent: given, trace_id: "0af7651916cd43dd8448eb211c80319c", span_id: "b7ad6b7169203331" }, "the caller's traceparent reaches the handler untouched");
  t.equal(passed.active_span_id, null, "no SDK, no active span");
  t.equal((await submit({})).ctx_trace, null, "no trace made up where nothing records one");
  t.equal((await submit({ traceparent: "garbage" })).ctx_trace, null, "a malformed traceparent is not passed on");
});
