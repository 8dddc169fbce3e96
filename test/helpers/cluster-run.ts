/**
 * One cluster experiment: a JetStream cluster, a counting supervisor on
 * every node, a gateway, a paced submitter that retries refused submits
 * (with an idempotency key, so a retry is never a second job), a reader
 * that keeps reading accepted jobs' statuses, and at the end the exact
 * counts: jobs lost, jobs that ran twice, attempts against runs, and every
 * submit and read outcome by code.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import type { JetStreamManager } from "@nats-io/jetstream";
import { startGateway, type BosunGateway, type BosunSupervisor } from "./bosun.js";
import { NatsCluster } from "./cluster.js";
import { describeRuns, finalResults, RunLog, startCountingSupervisor, waitForResults, waitQuiet } from "./faults.js";
import { http, type JobResult } from "./http.js";
import { requestJson } from "./nats-client.js";
import type { TeardownHost } from "./teardown.js";
import { uniqueName, waitFor } from "./wait.js";

export interface RunOptions {
  /** `--replicas` for the supervisors (default: what they detect: 3 here). */
  replicas?: number;
  leaseMs?: number;
  pool?: number;
}

/** One try of a submit or read, relative to the experiment's start. */
export interface Outcome {
  sentAt: number;
  doneAt: number;
  /** "ok", an error code ("unavailable", "not_found", "internal_error", ...) or "no_reply". */
  code: string;
  via: "nats" | "http";
  /** For HTTP: the status and whether a 503 carried Retry-After. */
  status?: number;
  retryAfter?: boolean;
  /** An error reply's message. */
  message?: string;
}

export class ClusterRun {
  readonly started = Date.now();
  readonly submits: Outcome[] = [];
  readonly reads: Outcome[] = [];
  /** job id -> the submit's index (its payload n) */
  readonly accepted = new Map<string, number>();
  #reading = false;
  #readers: Promise<void>[] = [];

  private constructor(
    readonly queue: string,
    readonly cluster: NatsCluster,
    readonly nc: NatsConnection,
    readonly jsm: JetStreamManager,
    readonly runs: RunLog,
    readonly supervisors: BosunSupervisor[],
    readonly gateway: BosunGateway,
  ) {}

  static async start(t: TeardownHost, opts: RunOptions = {}): Promise<ClusterRun> {
    const cluster = await NatsCluster.start(t);
    const runs = await RunLog.create(t);
    const queue = uniqueName("cl");
    const pool = String(opts.pool ?? 3);
    const args = ["--min", pool, "--max", pool, "--lease-ms", String(opts.leaseMs ?? 4000), "--heartbeat-ms", "1000", ...(opts.replicas ? ["--replicas", String(opts.replicas)] : [])];
    // The first one provisions the topology; the others find it.
    const first = await startCountingSupervisor(t, cluster.url, runs, { queues: [queue], workerId: uniqueName("s1"), args, launch: cluster.nodes[0]!.launch });
    const rest = await Promise.all(
      cluster.nodes.slice(1).map((node, i) => startCountingSupervisor(t, cluster.url, runs, { queues: [queue], workerId: uniqueName(`s${i + 2}`), args, launch: node.launch })),
    );
    const gateway = await startGateway(t, cluster.url);
    const { nc, jsm } = await cluster.client(t);
    return new ClusterRun(queue, cluster, nc, jsm, runs, [first, ...rest], gateway);
  }

  now(): number {
    return Date.now() - this.started;
  }

  /** The supervisor started on node i. */
  supervisorOn(i: number): BosunSupervisor {
    return this.supervisors[i]!;
  }

  /**
   * With an idempotency key a retried submit is never a second job. On main
   * before the record model of issue 10, a submit whose record landed and
   * whose job message did not (an election in between) left the key
   * pointing at a job without a message, so retries then answered with a
   * job that never runs: off there (BOSUN_TEST_NO_IDEMPOTENCY).
   */
  body(n: number): Record<string, unknown> {
    const key = process.env.BOSUN_TEST_NO_IDEMPOTENCY ? {} : { idempotency_key: `${this.queue}-${n}` };
    // Each fault may count a delivery that never ran (docs/cluster.md section 7); two faults (a kill, a
    // restart with an empty disk) on top of the runs they cut short can pass the default 3 attempts.
    return { type: "count.run", queue: this.queue, ...key, max_attempts: 5, payload: { n, tag: `t${n}`, ms: 10 } };
  }

  /**
   * Submits jobs n = from..to-1 at about `perSecond`, `concurrency` at a
   * time; each is retried (same idempotency key) until accepted, every 4th
   * over HTTP through the gateway, the rest over NATS.
   */
  async submitPaced(from: number, to: number, perSecond: number, concurrency = 16): Promise<void> {
    let next = from;
    const t0 = Date.now();
    const worker = async () => {
      while (next < to) {
        const n = next++;
        const due = t0 + ((n - from) * 1000) / perSecond;
        if (due > Date.now()) await new Promise((r) => setTimeout(r, due - Date.now()));
        await this.submitUntilAccepted(n);
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
  }

  async submitUntilAccepted(n: number, deadlineMs = 120_000): Promise<string> {
    const via = n % 4 === 3 ? "http" : "nats";
    return waitFor(
      async () => {
        const outcome = await this.#submitOnce(n, via);
        this.submits.push(outcome.outcome);
        if (outcome.jobId) this.accepted.set(outcome.jobId, n);
        else await new Promise((r) => setTimeout(r, 200));
        return outcome.jobId;
      },
      { timeoutMs: deadlineMs, intervalMs: 0, what: `submit ${n} to be accepted` },
    );
  }

  async #submitOnce(n: number, via: "nats" | "http"): Promise<{ jobId?: string; outcome: Outcome }> {
    const sentAt = this.now();
    try {
      if (via === "nats") {
        const reply = await requestJson<{ job_id?: string; error?: { code: string; message?: string } }>(this.nc, "bosun.api.jobs.submit", this.body(n), { timeoutMs: 8000 });
        const code = reply.errorCode ? (reply.body.error?.code ?? `status_${reply.errorCode}`) : "ok";
        return { jobId: code === "ok" ? reply.body.job_id : undefined, outcome: { sentAt, doneAt: this.now(), code, via, message: reply.body.error?.message } };
      }
      const res = await http<{ job_id?: string; error?: { code: string } }>(this.gateway.baseUrl, "POST", "/api/jobs", { body: this.body(n), timeoutMs: 8000 });
      const ok = res.status === 200 || res.status === 202;
      const code = ok ? "ok" : (res.body.error?.code ?? `status_${res.status}`);
      return {
        jobId: ok ? res.body.job_id : undefined,
        outcome: { sentAt, doneAt: this.now(), code, via, status: res.status, retryAfter: res.headers.get("retry-after") !== null },
      };
    } catch {
      return { outcome: { sentAt, doneAt: this.now(), code: "no_reply", via } };
    }
  }

  /** Reads the status of random accepted jobs, `parallel` at a time, until stopReading(). */
  startReading(parallel = 4): void {
    this.#reading = true;
    const ids = () => [...this.accepted.keys()];
    const loop = async () => {
      while (this.#reading) {
        const all = ids();
        const id = all[Math.floor(Math.random() * all.length)];
        if (!id) {
          await new Promise((r) => setTimeout(r, 50));
          continue;
        }
        const sentAt = this.now();
        try {
          const reply = await requestJson<{ error?: { code: string } }>(this.nc, "bosun.api.jobs.get", { job_id: id }, { timeoutMs: 8000 });
          this.reads.push({ sentAt, doneAt: this.now(), code: reply.errorCode ? (reply.body.error?.code ?? `status_${reply.errorCode}`) : "ok", via: "nats" });
          // About 50 reads a second per loop: enough to meet every lagging replica, not a load test.
          await new Promise((r) => setTimeout(r, 20));
        } catch {
          this.reads.push({ sentAt, doneAt: this.now(), code: "no_reply", via: "nats" });
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    };
    this.#readers = Array.from({ length: parallel }, loop);
  }

  async stopReading(): Promise<void> {
    this.#reading = false;
    await Promise.all(this.#readers);
  }

  /** Waits until `fraction` of the accepted jobs have started a run. */
  async untilStarted(count: number, timeoutMs = 60_000): Promise<void> {
    await waitFor(
      async () => {
        await this.runs.refresh();
        return this.runs.startCount >= count;
      },
      { timeoutMs, intervalMs: 20, what: `${count} runs to start` },
    );
  }

  /** Every accepted job's result, the queue gone quiet, and the counts. */
  async finish(timeoutMs = 150_000): Promise<RunFigures> {
    const ids = [...this.accepted.keys()];
    await waitForResults(this.nc, ids, { timeoutMs, what: "every accepted job's result" }).catch(() => undefined);
    await waitQuiet(this.nc, this.queue, Math.min(60_000, timeoutMs)).catch(() => undefined);
    const results = await finalResults(this.nc, ids);
    await this.runs.refresh();
    this.#lost = ids.filter((id) => !results.get(id));
    return figuresOf(ids, this.accepted, results, this.runs);
  }

  #lost: string[] = [];

  /** For the test output: what the lost jobs' status says, their runs, and the tries of their submit. */
  async describeLost(limit = 3): Promise<string[]> {
    return Promise.all(
      this.#lost.slice(0, limit).map(async (id) => {
        const n = this.accepted.get(id)!;
        const status = await requestJson(this.nc, "bosun.api.jobs.get", { job_id: id }, { timeoutMs: 5000 }).then((r) => JSON.stringify(r.body).slice(0, 200), (e: Error) => e.message);
        return `${id} (submit ${n}, runs ${this.runs.starts(id).length}): ${status}`;
      }),
    );
  }

  /**
   * Jobs that ran more than once, each as its runs (which supervisor, when
   * relative to `at`, which attempt) and its result's attempts: for the test
   * output, where a figure needs explaining.
   */
  async reruns(at: number, limit = 5): Promise<string[]> {
    await this.runs.refresh();
    const rerun = [...this.accepted.keys()].filter((id) => this.runs.starts(id).length > 1);
    const all = await finalResults(this.nc, rerun);
    // Uncounted runs first: they are what a reader of the output wants explained.
    const results = [...all].sort(([a, ra], [b, rb]) => (ra?.attempts ?? 0) - this.runs.starts(a).length - ((rb?.attempts ?? 0) - this.runs.starts(b).length)).slice(0, limit);
    const name = (ppid: number) => `s${this.supervisors.findIndex((s) => s.pid === ppid) + 1}`;
    return results.map(
      ([id, r]) =>
        `${id.slice(-6)} attempts=${r?.attempts}: ${this.runs
          .starts(id)
          .map((s) => `${name(s.ppid)}@${((s.t - this.started - at) / 1000).toFixed(1)}s#${s.attempt}`)
          .join(" ")}`,
    );
  }

  /** Submit tries per second (from `from`, relative to the start): "ok/refused" each. */
  timeline(from: number, to: number): string {
    const out: string[] = [];
    for (let s = Math.floor(from / 1000); s <= Math.floor(to / 1000); s++) {
      const inSec = this.submits.filter((o) => Math.floor(o.doneAt / 1000) === s);
      out.push(`${s}:${inSec.filter((o) => o.code === "ok").length}/${inSec.filter((o) => o.code !== "ok").length}`);
    }
    return out.join(" ");
  }

  /** Distinct error lines the supervisors logged ("msg: err.message"), to explain an internal_error. */
  errorLogs(): string[] {
    const lines = new Set<string>();
    for (const s of this.supervisors) {
      for (const l of s.proc.logs) {
        if (Number(l.level) < 50) continue;
        const err = l.err as { type?: string; message?: string } | undefined;
        lines.add(`${String(l.msg)}: ${err?.type ?? ""} ${err?.message ?? ""}`.slice(0, 200));
      }
    }
    return [...lines];
  }

  /** Refused tries by their message, most frequent first. */
  static messages(outcomes: readonly Outcome[], limit = 4): string {
    const counts = new Map<string, number>();
    for (const o of outcomes) if (o.code !== "ok") counts.set(o.message ?? o.code, (counts.get(o.message ?? o.code) ?? 0) + 1);
    return [...counts].sort((a, b) => b[1] - a[1]).slice(0, limit).map(([m, n]) => `${n}x ${m}`).join("; ");
  }

  /** Outcomes by code, e.g. {"ok": 2990, "unavailable": 12}. */
  static tally(outcomes: readonly Outcome[]): Record<string, number> {
    const counts: Record<string, number> = {};
    for (const o of outcomes) counts[o.code] = (counts[o.code] ?? 0) + 1;
    return counts;
  }

  /**
   * Around a fault at `at`: the last refused submit try after it, and how
   * long after the fault a submit sent after that refusal was accepted.
   */
  submitRecovery(at: number): { refusedTries: number; lastRefusedMs: number; acceptedAgainMs: number; slowestAcceptedMs: number } {
    const after = this.submits.filter((o) => o.doneAt >= at);
    const refused = after.filter((o) => o.code !== "ok");
    const lastRefused = refused.reduce((m, o) => Math.max(m, o.doneAt), at);
    const againAt = after.filter((o) => o.code === "ok" && o.sentAt >= (refused.length ? lastRefused : at)).reduce((m, o) => Math.min(m, o.doneAt), Infinity);
    const slowest = after.filter((o) => o.code === "ok").reduce((m, o) => Math.max(m, o.doneAt - o.sentAt), 0);
    return { refusedTries: refused.length, lastRefusedMs: lastRefused - at, acceptedAgainMs: againAt - at, slowestAcceptedMs: slowest };
  }
}

export interface RunFigures {
  jobs: number;
  lost: number;
  notSucceeded: number;
  wrong: number;
  runs: number;
  ranTwice: number;
  maxRuns: number;
  /** Jobs whose `attempts` is below their runs (a run not counted), and above (a delivery counted that never ran). */
  attemptsBelowRuns: number;
  attemptsAboveRuns: number;
}

function figuresOf(ids: readonly string[], accepted: ReadonlyMap<string, number>, results: ReadonlyMap<string, JobResult | null>, runs: RunLog): RunFigures {
  let lost = 0;
  let notSucceeded = 0;
  let wrong = 0;
  let below = 0;
  let above = 0;
  for (const id of ids) {
    const r = results.get(id);
    if (!r) {
      lost++;
      continue;
    }
    if (r.state !== "succeeded") notSucceeded++;
    const n = accepted.get(id)!;
    const got = r.result as { n?: number; tag?: string } | null;
    if (r.state === "succeeded" && (got?.n !== n || got.tag !== `t${n}`)) wrong++;
    const started = runs.starts(id).length;
    if (r.attempts < started) below++;
    if (r.attempts > started) above++;
  }
  const { runs: total, ranTwice, maxRuns } = describeRuns(runs, ids);
  return { jobs: ids.length, lost, notSucceeded, wrong, runs: total, ranTwice, maxRuns, attemptsBelowRuns: below, attemptsAboveRuns: above };
}
