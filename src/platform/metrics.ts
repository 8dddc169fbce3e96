/**
 * Prometheus metrics (prom-client), one registry per process, served as
 * text on /metrics: the gateway's on its HTTP port, a supervisor's on
 * --metrics-port.
 */
import http from "node:http";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { ProcessInfo } from "../contract/index.js";

const jobLabels = ["queue", "type"] as const;
type JobLabels = Record<(typeof jobLabels)[number], string>;

/**
 * Label children made once per label set: a metric counted per job or
 * request looks one up instead of prom-client hashing a fresh labels object
 * (its sorted-key hash is most of what an `inc` costs).
 */
function childrenOf<C>(metric: { labels(...values: string[]): C }): (...values: string[]) => C {
  const made = new Map<string, C>();
  return (...values) => {
    const key = values.join("\n");
    let child = made.get(key);
    if (!child) made.set(key, (child = metric.labels(...values)));
    return child;
  };
}

/** A per-job counter (labels queue and type). */
class JobCounter {
  readonly #child: (queue: string, type: string) => { inc(): void };
  constructor(metric: Counter<(typeof jobLabels)[number]>) {
    this.#child = childrenOf(metric);
  }
  inc(labels: JobLabels): void {
    this.#child(labels.queue, labels.type).inc();
  }
}

/** A per-job histogram (labels queue and type). */
class JobHistogram {
  readonly #child: (queue: string, type: string) => { observe(value: number): void };
  constructor(metric: Histogram<(typeof jobLabels)[number]>) {
    this.#child = childrenOf(metric);
  }
  observe(labels: JobLabels, seconds: number): void {
    this.#child(labels.queue, labels.type).observe(seconds);
  }
}

export interface QueueLimitSample {
  queue: string;
  limit: "max_concurrency" | "rate_limit" | "max_pending";
  value: number;
  share?: number;
  use?: number;
}
const DURATION_BUCKETS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300];

export class SupervisorMetrics {
  readonly registry = new Registry();
  readonly submitted = this.#counter("bosun_jobs_submitted_total", "Jobs accepted by this supervisor's API");
  readonly submitsHeld = new Counter({
    name: "bosun_submits_held_total",
    help: "Single submits held for a turn (up to 500 ms) while this supervisor held every job it may",
    registers: [this.registry],
  });
  readonly succeeded = this.#counter("bosun_jobs_succeeded_total", "Jobs that succeeded here");
  readonly failed = this.#counter("bosun_job_attempts_failed_total", "Attempts that failed here (each retry or death starts with one)");
  readonly retried = this.#counter("bosun_jobs_retried_total", "Failed attempts queued again for another attempt");
  readonly dead = this.#counter("bosun_jobs_dead_total", "Jobs that used up their attempts");
  readonly cancelled = this.#counter("bosun_jobs_cancelled_total", "Jobs cancelled (queued ones by the API, running ones here)");
  readonly duration = this.#histogram("bosun_job_duration_seconds", "Handler run time of an attempt");
  readonly queueWait = this.#histogram("bosun_job_queue_wait_seconds", "From the job's creation to the start of an attempt");
  readonly restarts = new Counter({ name: "bosun_process_restarts_total", help: "Execution processes that crashed and were replaced", registers: [this.registry] });
  readonly recycles = new Counter({
    name: "bosun_process_recycles_total",
    help: "Execution processes retired on purpose (max executions, memory, recycle command, kill)",
    labelNames: ["reason"],
    registers: [this.registry],
  });

  constructor(poolSnapshot: () => ProcessInfo[]) {
    processMetrics(this.registry, "bosun_supervisor_");
    const gauge = (name: string, help: string, state?: ProcessInfo["state"]) =>
      new Gauge({
        name,
        help,
        registers: [this.registry],
        collect() {
          this.set(poolSnapshot().filter((p) => !state || p.state === state).length);
        },
      });
    gauge("bosun_pool_size", "Execution processes");
    gauge("bosun_pool_busy", "Execution processes running a job", "busy");
    gauge("bosun_pool_idle", "Execution processes waiting for a job", "idle");
  }

  /** Gauges of the schedules this supervisor keeps timers for (the schedule duty's heartbeat summary). */
  watchSchedules(summary: () => { active: number; next_run_at: string | null }): void {
    new Gauge({
      name: "bosun_schedules_active",
      help: "Active (unpaused) schedules this supervisor claims ticks for",
      registers: [this.registry],
      collect() {
        this.set(summary().active);
      },
    });
    new Gauge({
      name: "bosun_schedule_next_run_timestamp_seconds",
      help: "When the next schedule tick is due (Unix seconds; 0 when none is)",
      registers: [this.registry],
      collect() {
        const next = summary().next_run_at;
        this.set(next ? Date.parse(next) / 1000 : 0);
      },
    });
  }

  /**
   * Each limited queue's limits, this supervisor's share of them and its use
   * (summed over supervisors, the use is the queue's): jobs in hand for
   * max_concurrency, starts in the window for rate_limit, the waiting jobs
   * last read for max_pending.
   */
  watchQueueLimits(read: () => QueueLimitSample[]): void {
    const labelNames = ["queue", "limit"] as const;
    const gauge = (name: string, help: string, value: (s: QueueLimitSample) => number | undefined) =>
      new Gauge({
        name,
        help,
        labelNames,
        registers: [this.registry],
        collect() {
          this.reset();
          for (const sample of read()) {
            const v = value(sample);
            if (v !== undefined) this.set({ queue: sample.queue, limit: sample.limit }, v);
          }
        },
      });
    gauge("bosun_queue_limit", "A queue's limit from the ops flags (rate_limit: its max per window)", (s) => s.value);
    gauge("bosun_queue_limit_share", "This supervisor's share of the limit in force", (s) => s.share);
    gauge("bosun_queue_limit_use", "This supervisor's use of the limit (max_pending: the queue's waiting jobs as last read)", (s) => s.use);
  }

  /** Waiting jobs per queue and priority band (h, n, l), read from the lanes' consumers at each scrape. */
  watchPendingByBand(read: () => Promise<{ queue: string; band: string; pending: number }[]>): void {
    new Gauge({
      name: "bosun_queue_pending",
      help: "Jobs waiting in a queue, per priority band (h > 0, n = 0, l < 0), from its lanes' consumers",
      labelNames: ["queue", "band"] as const,
      registers: [this.registry],
      async collect() {
        const samples = await read();
        this.reset();
        for (const s of samples) this.set({ queue: s.queue, band: s.band }, s.pending);
      },
    });
  }

  #counter(name: string, help: string): JobCounter {
    return new JobCounter(new Counter({ name, help, labelNames: jobLabels, registers: [this.registry] }));
  }

  #histogram(name: string, help: string): JobHistogram {
    return new JobHistogram(new Histogram({ name, help, labelNames: jobLabels, buckets: DURATION_BUCKETS, registers: [this.registry] }));
  }
}

export class GatewayMetrics {
  readonly registry = new Registry();
  readonly natsRequest = new Histogram({
    name: "bosun_gateway_nats_request_seconds",
    help: "NATS request latency from the gateway, by subject and outcome",
    labelNames: ["subject", "outcome"],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5],
    registers: [this.registry],
  });
  readonly submits = new Counter({
    name: "bosun_gateway_job_submits_total",
    help: "Job submits through this gateway by outcome: accepted, finished (answered with the result within wait_ms), or the error code",
    labelNames: ["outcome"],
    registers: [this.registry],
  });
  readonly httpRequests = new Counter({
    name: "bosun_gateway_http_requests_total",
    help: "HTTP requests by route and status",
    labelNames: ["method", "route", "status"],
    registers: [this.registry],
  });

  readonly #natsChild = childrenOf(this.natsRequest);
  readonly #httpChild = childrenOf(this.httpRequests);

  constructor() {
    processMetrics(this.registry, "bosun_gateway_");
  }

  /** A NATS request that began at `startedMs` (performance.now()) ended so. */
  observeNatsRequest(subject: string, outcome: "ok" | "error_reply" | "no_reply", startedMs: number): void {
    this.#natsChild(subject, outcome).observe((performance.now() - startedMs) / 1000);
  }

  countHttpRequest(method: string, route: string, status: number): void {
    this.#httpChild(method, route, String(status)).inc();
  }
}

/**
 * prom-client's process and Node.js metrics, less the three
 * `nodejs_active_{handles,requests,resources}_total` gauges: a gauge named
 * `_total` fails `promtool check metrics`, and each is only the sum of its
 * by-type gauge of the same name without the suffix, which stays.
 */
function processMetrics(registry: Registry, prefix: string): void {
  collectDefaultMetrics({ register: registry, prefix });
  for (const what of ["handles", "requests", "resources"]) registry.removeSingleMetric(`${prefix}nodejs_active_${what}_total`);
}

/** A bare HTTP server with /metrics, for supervisors (which have no HTTP port of their own). */
export function serveMetrics(registry: Registry, host: string, port: number): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    if (req.url !== "/metrics") {
      res.writeHead(404).end();
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { "content-type": registry.contentType }).end(text),
      () => res.writeHead(500).end(),
    );
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve(server));
  });
}
