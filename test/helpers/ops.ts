/**
 * Helpers for the operator-feature tests (ops.test.ts, observability.test.ts):
 * a server-sent events client, a Prometheus text parser, supervisors with a
 * metrics port, the gateway's operator routes, and a reader for the CLI's
 * pretty-printed JSON output.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { CLI, cleanEnv, startSupervisor, type BosunSupervisor, type SupervisorOptions } from "./bosun.js";
import { ManagedProcess, withoutNodeOptions } from "./processes.js";
import { http } from "./http.js";
import type { TeardownHost } from "./teardown.js";
import { waitFor } from "./wait.js";

export const OPS_HANDLERS = fileURLToPath(new URL("../fixtures/ops-handlers.js", import.meta.url));

// ---------------------------------------------------------------- SSE

export interface SseEvent {
  /** The `event:` field ("message" when absent). */
  event: string;
  /** The `data:` lines joined, parsed as JSON (or the raw text). */
  data: unknown;
  raw: string;
  /** Date.now() when it arrived. */
  at: number;
}

/**
 * A server-sent events subscription over fetch: events are collected as they
 * arrive; `ended` resolves when the server closes the stream.
 */
export class SseStream {
  readonly events: SseEvent[] = [];
  status = 0;
  headers: Headers | undefined;
  /** Non-SSE body (e.g. a JSON error) when the server did not stream. */
  body = "";
  endedAt: number | undefined;
  readonly ended: Promise<void>;
  readonly #abort = new AbortController();
  #error: unknown;

  private constructor(url: string, headers: Record<string, string>) {
    this.ended = this.#read(url, headers);
  }

  /** Opens the stream and waits for the response head (status, headers). */
  static async open(t: TeardownHost, url: string, opts: { headers?: Record<string, string>; timeoutMs?: number } = {}): Promise<SseStream> {
    const s = new SseStream(url, { accept: "text/event-stream", ...opts.headers });
    t.teardown(() => s.close());
    await waitFor(() => s.status !== 0 || s.#error !== undefined || s.endedAt !== undefined, {
      timeoutMs: opts.timeoutMs ?? 15_000,
      what: `the response head of ${url}`,
    });
    if (s.status === 0) throw new Error(`SSE ${url}: ${String(s.#error)}`);
    return s;
  }

  get closedByServer(): boolean {
    return this.endedAt !== undefined && !this.#abort.signal.aborted;
  }

  close(): void {
    this.#abort.abort();
  }

  /** The first event (from index `from`) matching, waiting for it. */
  async next(match: (e: SseEvent) => boolean, opts: { timeoutMs?: number; what?: string; from?: number } = {}): Promise<SseEvent> {
    return waitFor(() => this.events.slice(opts.from ?? 0).find(match), {
      timeoutMs: opts.timeoutMs ?? 15_000,
      what: opts.what ?? "an SSE event",
      abortIf: () => (this.endedAt !== undefined && !this.events.slice(opts.from ?? 0).some(match) ? new Error(`stream ended before ${opts.what ?? "the event"}`) : undefined),
    });
  }

  async #read(url: string, headers: Record<string, string>): Promise<void> {
    try {
      const res = await fetch(url, { headers, signal: this.#abort.signal });
      this.headers = res.headers;
      this.status = res.status;
      if (!res.body) return;
      const streaming = (res.headers.get("content-type") ?? "").startsWith("text/event-stream");
      const decoder = new TextDecoder();
      let buffered = "";
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        const text = decoder.decode(chunk, { stream: true });
        if (!streaming) {
          this.body += text;
          continue;
        }
        buffered += text.replace(/\r\n/g, "\n");
        let sep: number;
        while ((sep = buffered.indexOf("\n\n")) >= 0) {
          const block = buffered.slice(0, sep);
          buffered = buffered.slice(sep + 2);
          this.#block(block);
        }
      }
    } catch (err) {
      if (!this.#abort.signal.aborted) this.#error = err;
    } finally {
      this.endedAt = Date.now();
    }
  }

  #block(block: string): void {
    let event = "message";
    const data: string[] = [];
    for (const line of block.split("\n")) {
      if (line.startsWith(":") || line === "") continue; // comment (heartbeat)
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") event = value;
      else if (field === "data") data.push(value);
    }
    if (data.length === 0) return;
    const text = data.join("\n");
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // keep the text
    }
    this.events.push({ event, data: parsed, raw: block, at: Date.now() });
  }
}

// ---------------------------------------------------------------- Prometheus

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Metrics {
  samples: Sample[];
  /** `# TYPE` per metric family. */
  types: Map<string, string>;
  help: Map<string, string>;
  /** Sum of the samples named `name` whose labels include `labels`. */
  value(name: string, labels?: Record<string, string>): number;
  has(name: string): boolean;
}

/** Parses the Prometheus text exposition format (what prom-client writes). */
export function parseMetrics(text: string): Metrics {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  const help = new Map<string, string>();
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    const meta = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line);
    if (meta) {
      (meta[1] === "TYPE" ? types : help).set(meta[2]!, meta[3]!);
      continue;
    }
    if (line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$/.exec(line);
    if (!m) throw new Error(`not a Prometheus sample line: ${line}`);
    const labels: Record<string, string> = {};
    const labelRe = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
    let lm: RegExpExecArray | null;
    while ((lm = labelRe.exec(m[2] ?? "")) !== null) labels[lm[1]!] = lm[2]!.replace(/\\"/g, '"').replace(/\\n/g, "\n").replace(/\\\\/g, "\\");
    const raw = m[3]!;
    const value = raw === "+Inf" ? Infinity : raw === "-Inf" ? -Infinity : Number(raw);
    samples.push({ name: m[1]!, labels, value });
  }
  const matches = (s: Sample, name: string, labels: Record<string, string>) =>
    s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v);
  return {
    samples,
    types,
    help,
    value: (name, labels = {}) => samples.filter((s) => matches(s, name, labels)).reduce((a, s) => a + s.value, 0),
    has: (name) => samples.some((s) => s.name === name) || types.has(name),
  };
}

/** GET a /metrics URL and parse it; checks the status and content type. */
export async function scrape(url: string): Promise<Metrics & { contentType: string; text: string }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`GET ${url}: ${res.status} ${text.slice(0, 200)}`);
  return { ...parseMetrics(text), contentType: res.headers.get("content-type") ?? "", text };
}

// ---------------------------------------------------------------- supervisors

export interface MetricsSupervisor {
  sup: BosunSupervisor;
  metricsUrl: string;
}

/** A supervisor with `--metrics-port 0`; the URL comes from its "metrics listening" log line. */
export async function startMetricsSupervisor(t: TeardownHost, natsUrl: string, opts: SupervisorOptions): Promise<MetricsSupervisor> {
  const sup = await startSupervisor(t, natsUrl, { ...opts, args: [...(opts.args ?? []), "--metrics-port", "0"] });
  const line = await sup.proc.waitForLog((l) => l.json?.msg === "metrics listening", 10_000, "metrics listening");
  return { sup, metricsUrl: String(line.json!.url) };
}

// ---------------------------------------------------------------- operator routes

export interface ProcessInfo {
  pid: number;
  process_id: string;
  state: "idle" | "busy" | "killed";
  memory_mb: number;
  uptime_seconds: number;
  executions_completed: number;
  execution: { execution_id: string; started_at: string; elapsed_seconds: number } | null;
}

export interface WorkerInfo {
  worker_id: string;
  started_at: string;
  hostname: string;
  min_workers: number;
  max_workers: number;
  pool_size: number;
  idle_count: number;
  busy_count: number;
  processes: ProcessInfo[];
  queues: string[];
  job_types: string[];
}

export interface QueueStatus {
  queue: string;
  pending: number;
  pending_by_band: { h: number; n: number; l: number };
  scheduled: number;
  running: number;
  dead: number;
  consumers: { durable: string; waiting_pulls: number; workers: string[] };
  limits: QueueLimits;
  use: { running: number; window_starts: number };
}

export interface QueueLimits {
  max_concurrency?: number;
  rate_limit?: { max: number; per_ms: number };
  max_pending?: number;
}

export interface OpsFlags {
  submissions_paused: boolean;
  queues: Record<string, QueueLimits & { submissions_paused: boolean }>;
}

/** GET /api/platform/workers, as a list (throws on a non-200). */
export async function httpWorkers(gw: string, timeoutMs?: number): Promise<WorkerInfo[]> {
  const res = await http<WorkerInfo[]>(gw, "GET", "/api/platform/workers", { timeoutMs });
  if (res.status !== 200) throw new Error(`GET /api/platform/workers: ${res.status} ${res.text}`);
  return res.body;
}

/** One queue's entry of GET /api/platform/queue (undefined when not listed). */
export async function httpQueue(gw: string, queue: string): Promise<QueueStatus | undefined> {
  const res = await http<{ queues: QueueStatus[] }>(gw, "GET", "/api/platform/queue");
  if (res.status !== 200) throw new Error(`GET /api/platform/queue: ${res.status} ${res.text}`);
  return res.body.queues.find((q) => q.queue === queue);
}

export async function httpOps(gw: string): Promise<OpsFlags> {
  const res = await http<OpsFlags>(gw, "GET", "/api/admin/ops");
  if (res.status !== 200) throw new Error(`GET /api/admin/ops: ${res.status} ${res.text}`);
  return res.body;
}

// ---------------------------------------------------------------- gates

/**
 * Files the fixture handlers wait for (payload gate_before / gate_after /
 * gate): `path(name)` names one, `open(name)` creates it.
 */
export class Gates {
  private constructor(readonly dir: string) {}

  static async create(t: TeardownHost): Promise<Gates> {
    const dir = await mkdtemp(path.join(os.tmpdir(), "bosun-test-gates-"));
    t.teardown(() => rm(dir, { recursive: true, force: true }));
    return new Gates(dir);
  }

  path(name: string): string {
    return path.join(this.dir, name);
  }

  async open(name: string): Promise<void> {
    await writeFile(this.path(name), "");
  }
}

// ---------------------------------------------------------------- CLI

/** Starts `bosun ...args` and leaves it running (for `watch`); its output is collected as it comes. */
export function startCli(t: TeardownHost, args: string[]): ManagedProcess {
  const proc = new ManagedProcess(...withoutNodeOptions(process.execPath, [CLI, ...args]), { name: `bosun ${args[0]}`, env: cleanEnv() });
  t.teardown(async () => {
    await proc.stop(2000);
  });
  return proc;
}

/**
 * The CLI's --json output: one or more JSON documents, each pretty-printed
 * (nested lines are indented, so every document starts with `{` or `[` at
 * the start of a line).
 */
export function parseJsonDocuments(stdout: string): unknown[] {
  return stdout
    .split(/\n(?=[[{])/)
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
    .map((s) => JSON.parse(s) as unknown);
}
