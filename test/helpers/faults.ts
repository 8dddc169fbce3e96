/**
 * Helpers for the fault-injection and lifecycle tests: a run log written by
 * the counting handlers (test/fixtures/count-handlers.js), bulk submits,
 * waiting for many results, waiting for a queue to go quiet, timed job
 * record watches, and heartbeats.
 */
import { mkdtemp, open, rm, type FileHandle } from "node:fs/promises";
import { readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { connect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { Kvm, KvWatchInclude } from "@nats-io/kv";
import { defaultLaneConsumer, defaultLaneScheduled, resultSubject } from "./subjects.js";
import { startSupervisor, type BosunSupervisor, type SupervisorOptions } from "./bosun.js";
import type { JobResult, JobStatus } from "./http.js";
import { requestJson } from "./nats-client.js";
import type { TeardownHost } from "./teardown.js";
import { waitFor } from "./wait.js";
import { natsOptions } from "../../src/platform/nats-options.js";

export const COUNT_HANDLERS = fileURLToPath(new URL("../fixtures/count-handlers.js", import.meta.url));

const decoder = new TextDecoder();

/** One line of the run log: a run of a job started or ended. */
export interface RunEvent {
  ev: "start" | "end";
  job: string;
  tag: string | null;
  attempt: number;
  pid: number;
  /** The supervisor that owns the execution process. */
  ppid: number;
  t: number;
  ok?: boolean;
}

/**
 * The run log of the counting handlers: a temp file the execution processes
 * append to, read incrementally by the test.
 */
export class RunLog {
  readonly events: RunEvent[] = [];
  readonly #starts = new Map<string, RunEvent[]>();
  readonly #ends = new Map<string, RunEvent[]>();
  #offset = 0;
  #partial = "";
  #fh: FileHandle | undefined;

  private constructor(readonly file: string) {}

  static async create(t: TeardownHost): Promise<RunLog> {
    const dir = await mkdtemp(path.join(os.tmpdir(), "bosun-test-runs-"));
    const log = new RunLog(path.join(dir, "runs.jsonl"));
    log.#fh = await open(log.file, "a+");
    t.teardown(async () => {
      await log.#fh?.close().catch(() => undefined);
      await rm(dir, { recursive: true, force: true }).catch(() => undefined);
    });
    return log;
  }

  /** Environment for a supervisor whose execution processes should write here. */
  get env(): Record<string, string> {
    return { COUNT_RUNS_FILE: this.file };
  }

  /** Path of a scratch file next to the log (e.g. a marker for fail_unless). */
  sibling(name: string): string {
    return path.join(path.dirname(this.file), name);
  }

  /** Reads what was appended since the last call. */
  async refresh(): Promise<this> {
    const fh = this.#fh!;
    const buf = Buffer.alloc(1 << 20);
    while (true) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, this.#offset);
      if (bytesRead === 0) break;
      this.#offset += bytesRead;
      const text = this.#partial + buf.subarray(0, bytesRead).toString("utf8");
      const lines = text.split("\n");
      this.#partial = lines.pop() ?? "";
      for (const line of lines) {
        if (line.trim() === "") continue;
        const e = JSON.parse(line) as RunEvent;
        this.events.push(e);
        const index = e.ev === "start" ? this.#starts : this.#ends;
        const list = index.get(e.job) ?? [];
        list.push(e);
        index.set(e.job, list);
      }
    }
    return this;
  }

  starts(jobId: string): RunEvent[] {
    return this.#starts.get(jobId) ?? [];
  }

  ends(jobId: string): RunEvent[] {
    return this.#ends.get(jobId) ?? [];
  }

  get startCount(): number {
    let n = 0;
    for (const l of this.#starts.values()) n += l.length;
    return n;
  }

  get endCount(): number {
    let n = 0;
    for (const l of this.#ends.values()) n += l.length;
    return n;
  }

  /** Jobs (among `ids`, or all) that started more than once. */
  ranMoreThanOnce(ids?: Iterable<string>): string[] {
    const keys = ids ? [...ids] : [...this.#starts.keys()];
    return keys.filter((id) => this.starts(id).length > 1);
  }

  /** Runs started and not ended (or cut short: their process died mid-run). */
  inFlight(): RunEvent[] {
    const open: RunEvent[] = [];
    for (const [job, starts] of this.#starts) {
      const ends = this.ends(job);
      for (const s of starts) if (!ends.some((e) => e.attempt === s.attempt && e.pid === s.pid)) open.push(s);
    }
    return open;
  }

  /** Runs that never ended, among the jobs in `ids`. */
  cutShort(ids: Iterable<string>): RunEvent[] {
    const out: RunEvent[] = [];
    for (const id of ids) {
      const ends = this.ends(id);
      for (const s of this.starts(id)) if (!ends.some((e) => e.attempt === s.attempt && e.pid === s.pid)) out.push(s);
    }
    return out;
  }
}

/** Starts a supervisor that serves the counting handlers and writes to `runs`. */
export function startCountingSupervisor(t: TeardownHost, natsUrl: string, runs: RunLog, opts: SupervisorOptions): Promise<BosunSupervisor> {
  return startSupervisor(t, natsUrl, {
    ...opts,
    args: ["--handlers", COUNT_HANDLERS, ...(opts.args ?? [])],
    env: { ...runs.env, ...opts.env },
  });
}

/** A client that keeps reconnecting forever (for tests that restart nats-server). */
export async function connectResilient(t: TeardownHost, url: string): Promise<NatsConnection> {
  const nc = await connect({ ...natsOptions(url, "bosun-test"), reconnectTimeWait: 200 });
  t.teardown(async () => {
    await nc.close().catch(() => undefined);
  });
  return nc;
}

/** Runs `fn` over `items` with at most `limit` calls in flight; results in order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

export interface Submitted {
  job_id: string;
  state: string;
  duplicate?: boolean;
}

/** Submits one job over NATS; throws with the error code on an error reply. */
export async function submit(nc: NatsConnection, body: Record<string, unknown>, timeoutMs = 15_000): Promise<Submitted> {
  const reply = await requestJson<Submitted>(nc, "bosun.api.jobs.submit", body, { timeoutMs });
  if (reply.errorCode) throw new SubmitError(reply.errorCode, JSON.stringify(reply.body));
  return reply.body;
}

export class SubmitError extends Error {
  constructor(
    readonly code: string,
    body: string,
  ) {
    super(`submit failed: ${code} ${body}`);
  }
}

/** Submits every body over NATS, `concurrency` at a time; every submit must be accepted. */
export function submitAll(nc: NatsConnection, bodies: readonly Record<string, unknown>[], concurrency = 64): Promise<Submitted[]> {
  return mapLimit(bodies, concurrency, (body) => submit(nc, body));
}

const RESULTS_STREAM = "BOSUN_RESULTS";

/**
 * The stored result of a job (the latest one), straight from the results
 * stream. With `confirm`, a miss is asked again of the stream leader: in a
 * cluster a lagging replica may answer a direct get.
 */
export async function storedResult(jsm: JetStreamManager, jobId: string, confirm = false): Promise<JobResult | null> {
  const query = { last_by_subj: resultSubject(jobId) };
  const msg = (await jsm.direct.getMessage(RESULTS_STREAM, query)) ?? (confirm ? await jsm.streams.getMessage(RESULTS_STREAM, query) : null);
  return msg ? (JSON.parse(decoder.decode(msg.data)) as JobResult) : null;
}

/**
 * Waits until every job in `ids` has a stored result, reading the results
 * stream directly (so no supervisor needs to be up), and returns them.
 */
export async function waitForResults(
  nc: NatsConnection,
  ids: readonly string[],
  opts: { timeoutMs: number; what?: string; onProgress?: (done: number) => void },
): Promise<Map<string, JobResult>> {
  const jsm = await afterFaults(nc);
  const found = new Map<string, JobResult>();
  await waitFor(
    async () => {
      const missing = ids.filter((id) => !found.has(id));
      await mapLimit(missing, 64, async (id) => {
        const r = await storedResult(jsm, id);
        if (r) found.set(id, r);
      });
      opts.onProgress?.(found.size);
      return found.size === ids.length;
    },
    { timeoutMs: opts.timeoutMs, intervalMs: 250, what: `${opts.what ?? "results"} (${ids.length} jobs)` },
  ).catch((err: unknown) => {
    throw new Error(`${(err as Error).message}; ${found.size}/${ids.length} had results`);
  });
  return found;
}

/**
 * A manager for reads after a fault: no account-info check first (jetstreamManager's default), which
 * fails while the cluster's meta leader is being elected although every stream read would answer.
 */
function afterFaults(nc: NatsConnection): Promise<JetStreamManager> {
  return jetstreamManager(nc, { timeout: 10_000, checkAPI: false });
}

/** Re-reads the latest stored result of every job (after the queue went quiet). */
export async function finalResults(nc: NatsConnection, ids: readonly string[]): Promise<Map<string, JobResult | null>> {
  const jsm = await afterFaults(nc);
  const out = new Map<string, JobResult | null>();
  await mapLimit(ids, 64, async (id) => {
    out.set(id, await storedResult(jsm, id, true));
  });
  return out;
}

/** What is left of a queue: messages not yet delivered, delivered and not acked, and parked. */
export interface QueueBacklog {
  pending: number;
  ackPending: number;
  scheduled: number;
}

export async function queueBacklog(jsm: JetStreamManager, queue: string): Promise<QueueBacklog> {
  const consumer = await jsm.consumers.info("BOSUN_JOBS", defaultLaneConsumer(queue));
  const parked = await jsm.streams.info("BOSUN_SCHEDULED", { subjects_filter: defaultLaneScheduled(queue) });
  const scheduled = Object.values(parked.state.subjects ?? {}).reduce((a, b) => a + b, 0);
  return { pending: consumer.num_pending, ackPending: consumer.num_ack_pending, scheduled };
}

/** Waits until a queue has nothing pending, unacked or parked: no run of its jobs can still happen. */
export async function waitQuiet(nc: NatsConnection, queue: string, timeoutMs: number): Promise<void> {
  const jsm = await afterFaults(nc);
  let last: QueueBacklog | undefined;
  await waitFor(
    async () => {
      last = await queueBacklog(jsm, queue);
      return last.pending === 0 && last.ackPending === 0 && last.scheduled === 0;
    },
    { timeoutMs, intervalMs: 200, what: `queue ${queue} to go quiet` },
  ).catch((err: unknown) => {
    throw new Error(`${(err as Error).message}; last backlog ${JSON.stringify(last)}`);
  });
}

/** Every write of a job record, with the time the test saw it. */
export interface SeenRecord {
  at: number;
  record: JobStatus & { started_at?: string | null; finished_at?: string | null };
}

/**
 * Keeps every state change of every job as the test sees it arrive: the
 * interim records (running, progress), the job messages (queued) and the
 * final records (the results stream), each timestamped on arrival.
 */
export class RecordWatch {
  readonly writes = new Map<string, SeenRecord[]>();
  #stop: (() => void) | undefined;

  static async start(nc: NatsConnection, t: TeardownHost): Promise<RecordWatch> {
    const w = new RecordWatch();
    const kv = await new Kvm(nc).open("bosun_jobs");
    const iter = await kv.watch({ key: ">", include: KvWatchInclude.UpdatesOnly, ignoreDeletes: true });
    const seen = (record: SeenRecord["record"]) => {
      const list = w.writes.get(record.job_id) ?? [];
      list.push({ at: Date.now(), record });
      w.writes.set(record.job_id, list);
    };
    const parse = (data: Uint8Array) => JSON.parse(decoder.decode(data)) as SeenRecord["record"];
    const queued = nc.subscribe("bosun.jobs.>", { callback: (_e, m) => seen({ ...parse(m.data), state: "queued" }) });
    const finals = nc.subscribe("bosun.results.>", { callback: (_e, m) => seen(parse(m.data)) });
    await nc.flush();
    w.#stop = () => {
      iter.stop();
      queued.unsubscribe();
      finals.unsubscribe();
    };
    t.teardown(() => w.#stop?.());
    void (async () => {
      for await (const e of iter) {
        if (e.operation !== "PUT") continue;
        try {
          seen(parse(e.value));
        } catch {
          // not a job record
        }
      }
    })();
    return w;
  }

  /** When a job's record first showed `state`, waiting for it. */
  async firstAt(jobId: string, state: string, timeoutMs = 15_000): Promise<SeenRecord> {
    return waitFor(() => this.writes.get(jobId)?.find((w) => w.record.state === state), {
      timeoutMs,
      what: `job ${jobId} to be ${state}`,
    });
  }

  states(jobId: string): string[] {
    return (this.writes.get(jobId) ?? []).map((w) => w.record.state);
  }
}

/** The latest status over the NATS API. */
export async function statusOf(nc: NatsConnection, jobId: string): Promise<JobStatus & { created_at: string }> {
  const reply = await requestJson<JobStatus & { created_at: string }>(nc, "bosun.api.jobs.get", { job_id: jobId });
  if (reply.errorCode) throw new Error(`get ${jobId}: ${reply.errorCode} ${JSON.stringify(reply.body)}`);
  return reply.body;
}

/** Parent pid of a live process, from /proc (undefined once it is gone). */
export function parentPid(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
  } catch {
    return undefined;
  }
}

/** Summary figures for a batch: printed with t.comment for docs/guarantees.md. */
export function describeRuns(runs: RunLog, ids: readonly string[]): { runs: number; ranTwice: number; maxRuns: number } {
  let total = 0;
  let ranTwice = 0;
  let maxRuns = 0;
  for (const id of ids) {
    const n = runs.starts(id).length;
    total += n;
    if (n > 1) ranTwice++;
    maxRuns = Math.max(maxRuns, n);
  }
  return { runs: total, ranTwice, maxRuns };
}

/** Seconds with one decimal, for comments. */
export const secs = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;

/**
 * When a live process was forked (epoch ms, to 10 ms), from its start time
 * in /proc (clock ticks since boot) and the current uptime.
 */
export function processStartEpoch(pid: number): number | undefined {
  try {
    const now = Date.now();
    const uptimeS = Number(readFileSync("/proc/uptime", "utf8").split(" ")[0]);
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // Field 22 of stat is starttime; after "pid (comm)" it is at index 22 - 3.
    const startTicks = Number(fields[19]);
    return Math.round(now - (uptimeS - startTicks / 100) * 1000);
  } catch {
    return undefined;
  }
}
