/**
 * Cancel requests, kept in a KV bucket that every supervisor watches: a
 * queued or scheduled job that was cancelled is dropped wherever it is
 * picked up, and a running one is killed by whichever supervisor runs it.
 */
import { KvWatchInclude, type KV } from "@nats-io/kv";
import type { QueuedIterator } from "@nats-io/nats-core";
import type { KvWatchEntry } from "@nats-io/kv";
import type { Logger } from "pino";
import { JOB_ID_PATTERN } from "../contract/index.js";
import { forEachGuarded } from "../platform/guard.js";

export class CancelRegistry {
  readonly #cancelled = new Set<string>();
  readonly #listeners = new Set<(jobId: string) => void>();
  #watch: QueuedIterator<KvWatchEntry> | undefined;

  constructor(
    private readonly kv: KV,
    private readonly log: Logger,
  ) {}

  /** Resolves once every cancel already stored is known, so none slips through at start. */
  async start(): Promise<void> {
    const empty = (await this.kv.status()).values === 0;
    const watch = (this.#watch = await this.kv.watch({ include: KvWatchInclude.LastValue }));
    let loaded!: () => void;
    const initialized = new Promise<void>((resolve) => (loaded = resolve));
    if (empty) loaded();
    void forEachGuarded(watch, this.log, "cancel watch", (entry) => {
      // delta counts the stored values still to come; updates after the scan have none.
      if (!entry.delta) loaded();
      // Keys are job ids; anything else written to the bucket cancels nothing.
      if (!JOB_ID_PATTERN.test(entry.key)) return;
      if (entry.operation === "PUT") {
        this.#cancelled.add(entry.key);
        for (const listener of this.#listeners) listener(entry.key);
      } else {
        this.#cancelled.delete(entry.key);
      }
    });
    await initialized;
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

  stop(): void {
    this.#watch?.stop();
  }
}
