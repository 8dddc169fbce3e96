/**
 * What the dashboard keeps live for as long as the tab is open: the
 * supervisors (from /api/platform/workers and its heartbeat stream) and the
 * history behind the overview's chart: jobs finished per second (from the
 * processes' execution counters) and jobs waiting (from the queue counts).
 */
import type { QueueStatus, WorkerInfo } from "../contract/schemas.js";
import { api, stream } from "./api.js";

export interface Sample {
  /** Epoch seconds. */
  t: number;
  finishedPerSecond: number;
  pending: number;
}

const HISTORY_SECONDS = 10 * 60;
const QUEUE_POLL_MS = 2000;
/** The rate is averaged over this window: heartbeats (and so counts) arrive every few seconds. */
const RATE_WINDOW_MS = 10_000;

interface Seen {
  info: WorkerInfo;
  at: number;
}

class Live {
  workers = new Map<string, Seen>();
  queues: QueueStatus[] = [];
  samples: Sample[] = [];
  error: unknown;
  #counts = new Map<string, number>();
  /** Executions finished, as [when, how many], over the rate window. */
  #finished: [number, number][] = [];
  readonly #startedAt = Date.now();
  #listeners = new Set<() => void>();
  #stop: AbortController | undefined;
  #seeded = false;

  subscribe(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #emit(): void {
    for (const listener of this.#listeners) listener();
  }

  /** Live supervisors: a supervisor whose heartbeats stopped for three periods is gone. */
  liveWorkers(): WorkerInfo[] {
    const now = Date.now();
    return [...this.workers.values()]
      .filter((w) => now - w.at < 3 * w.info.heartbeat_ms + 1000)
      .map((w) => w.info)
      .sort((a, b) => a.worker_id.localeCompare(b.worker_id));
  }

  /** Supervisors already read (by the dashboard's first call), shown before the stream connects. */
  seed(workers: WorkerInfo[]): void {
    for (const w of workers) this.#heartbeat(w);
    this.#seeded = true;
    this.#emit();
  }

  start(): void {
    if (this.#stop) return;
    const stop = (this.#stop = new AbortController());
    void this.#follow(stop.signal);
    void this.#pollQueues(stop.signal);
  }

  stop(): void {
    this.#stop?.abort();
    this.#stop = undefined;
  }

  #heartbeat(info: WorkerInfo): void {
    // Executions since the last heartbeat, per process; a new process starts counting from 0.
    for (const p of info.processes) {
      const key = `${info.worker_id}/${p.pid}`;
      const before = this.#counts.get(key);
      const done = Math.max(0, p.executions_completed - (before ?? (this.workers.has(info.worker_id) ? 0 : p.executions_completed)));
      if (done > 0) this.#finished.push([Date.now(), done]);
      this.#counts.set(key, p.executions_completed);
    }
    this.workers.set(info.worker_id, { info, at: Date.now() });
  }

  async #follow(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      try {
        if (!this.#seeded) for (const w of (await api.workersList()).workers) this.#heartbeat(w);
        this.#seeded = false;
        this.error = undefined;
        this.#emit();
        for await (const event of stream("/api/platform/workers/stream", signal)) {
          this.#heartbeat((event as { data: WorkerInfo }).data);
          this.#emit();
        }
      } catch (err) {
        if (signal.aborted) return;
        this.error = err;
        this.#emit();
      }
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
  }

  async #pollQueues(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      try {
        this.queues = (await api.queueStatus()).queues;
        const now = Date.now();
        while (this.#finished.length > 0 && this.#finished[0]![0] <= now - RATE_WINDOW_MS) this.#finished.shift();
        const seconds = Math.min(RATE_WINDOW_MS, Math.max(1000, now - this.#startedAt)) / 1000;
        const finished = this.#finished.reduce((n, [, done]) => n + done, 0);
        this.samples.push({ t: now / 1000, finishedPerSecond: finished / seconds, pending: this.queues.reduce((n, q) => n + q.pending, 0) });
        while (this.samples.length > 0 && this.samples[0]!.t < now / 1000 - HISTORY_SECONDS) this.samples.shift();
        this.#emit();
      } catch (err) {
        this.error = err;
        this.#emit();
      }
      await new Promise((resolve) => setTimeout(resolve, QUEUE_POLL_MS));
    }
  }
}

export const live = new Live();
