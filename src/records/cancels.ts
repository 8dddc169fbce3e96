/**
 * Cancel requests, kept in a KV bucket that every supervisor watches: a
 * queued or scheduled job that was cancelled is dropped wherever it is
 * picked up, and a running one is killed by whichever supervisor runs it.
 * A request lives until its job has ended (no TTL: a job may be due in a
 * year), then a little longer, so a copy of the job already in a
 * supervisor's hands still finds it.
 */
import type { JetStreamManager } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import { buckets, isJobId, kvKeySubject } from "../contract/index.js";
import type { QueuedIterator } from "@nats-io/nats-core";
import type { KvWatchEntry } from "@nats-io/kv";
import type { Logger } from "pino";
import { followBucket } from "./bucket-watch.js";

interface Request {
  requestedAt: number;
}

export class CancelRegistry {
  readonly #cancelled = new Map<string, Request>();
  readonly #listeners = new Set<(jobId: string) => void>();
  readonly #releases = new Set<NodeJS.Timeout>();
  /** Purge markers of released requests, by when they were seen: the sweep removes them. */
  readonly #markers = new Map<string, number>();
  #watch: QueuedIterator<KvWatchEntry> | undefined;

  constructor(
    private readonly kv: KV,
    private readonly jsm: JetStreamManager,
    private readonly log: Logger,
    /** How long a request outlives its job's end: past any copy of the job in flight. */
    private readonly graceMs: number,
  ) {}

  /** Resolves once every cancel already stored is known, so none slips through at start. */
  async start(): Promise<void> {
    this.#watch = await followBucket(this.kv, this.log, "cancel", (entry) => {
      // Keys are job ids; anything else written to the bucket cancels nothing.
      if (!isJobId(entry.key)) return;
      if (entry.operation === "PUT") {
        this.#cancelled.set(entry.key, { requestedAt: entry.created.getTime() });
        for (const listener of this.#listeners) listener(entry.key);
      } else {
        this.#cancelled.delete(entry.key);
        this.#markers.set(entry.key, entry.created.getTime());
      }
    });
  }

  has(jobId: string): boolean {
    return this.#cancelled.has(jobId);
  }

  onCancel(listener: (jobId: string) => void): void {
    this.#listeners.add(listener);
  }

  async request(jobId: string): Promise<void> {
    await this.kv.put(jobId, JSON.stringify({ requested_at: new Date().toISOString() }));
  }

  /** The job has ended: its request goes after the grace period. */
  releaseLater(jobId: string): void {
    const timer = setTimeout(() => {
      this.#releases.delete(timer);
      this.kv.purge(jobId).catch((err: unknown) => this.log.warn({ err, job_id: jobId }, "could not remove a cancel request"));
    }, this.graceMs);
    timer.unref();
    this.#releases.add(timer);
  }

  /**
   * Requests left behind by a supervisor that stopped before releasing them
   * (older than the grace period, their job ended), and the purge markers of
   * released ones, so the bucket holds only live requests.
   */
  async sweep(ended: (jobId: string) => Promise<boolean>): Promise<number> {
    let removed = 0;
    const now = Date.now();
    for (const [jobId, { requestedAt }] of this.#cancelled) {
      if (now - requestedAt < this.graceMs || !(await ended(jobId))) continue;
      await this.kv.purge(jobId);
      removed++;
    }
    for (const [jobId, at] of this.#markers) {
      if (now - at < this.graceMs) continue;
      await this.jsm.streams.purge(`KV_${buckets.cancels}`, { filter: kvKeySubject(buckets.cancels, jobId) });
      this.#markers.delete(jobId);
    }
    return removed;
  }

  stop(): void {
    for (const timer of this.#releases) clearTimeout(timer);
    this.#watch?.stop();
  }
}
