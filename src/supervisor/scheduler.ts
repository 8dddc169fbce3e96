/**
 * Moves parked jobs (delayed submits, retries waiting out their backoff)
 * into their queue when due. Every supervisor runs one on the same shared
 * consumer, so any of them does it and none needs to stay up. A message that
 * is not due yet is handed back with a delay of its remaining time.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import type { Logger } from "pino";
import { SCHEDULER_CONSUMER, streams } from "../contract/index.js";
import { guard } from "../platform/guard.js";
import type { CancelRegistry, JobStore } from "../records/index.js";
import { readJobMessage } from "./inbound.js";
import { JobMessage, Puller } from "../platform/puller.js";

/** Parked messages this supervisor holds at once; each is handled in microseconds. */
const WINDOW = 256;
/** Longest single park: far-future jobs come back to be re-parked, so nothing depends on one long timer. */
const MAX_PARK_MS = 3_600_000;

export class Scheduler {
  readonly #puller: Puller;
  #stopped = false;

  constructor(
    nc: NatsConnection,
    private readonly store: JobStore,
    private readonly cancels: CancelRegistry,
    private readonly log: Logger,
  ) {
    this.#puller = new Puller(nc, {
      stream: streams.scheduled,
      consumer: SCHEDULER_CONSUMER,
      expiresMs: 10_000,
      log,
      onJob: guard(log, "scheduled message", (msg: JobMessage) => this.#onParked(msg).finally(() => this.#refill())),
      onCreditsReturned: () => this.#refill(),
    });
  }

  start(): void {
    this.#refill();
  }

  reconnected(): void {
    this.#puller.reset();
    this.#refill();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#puller.close();
  }

  #refill(): void {
    const missing = WINDOW - this.#puller.outstanding;
    if (!this.#stopped && missing >= WINDOW / 2) this.#puller.pull(missing);
  }

  async #onParked(msg: JobMessage): Promise<void> {
    if (this.#stopped) {
      msg.nak();
      return;
    }
    const inbound = readJobMessage(msg, this.log, "scheduled stream");
    if (!inbound) return;
    const wait = inbound.dueAt - Date.now();
    if (wait > 0) {
      msg.nak(Math.min(wait, MAX_PARK_MS));
      return;
    }
    const { job } = inbound;
    const attempts = inbound.attemptOffset;
    const cancelled = this.cancels.has(job.job_id);
    try {
      if (cancelled) {
        await this.store.dropCancelled(msg, job, attempts);
        return;
      }
      await this.store.enqueue(job, attempts);
    } catch (err) {
      this.log.warn({ err, job_id: job.job_id, correlation_id: job.correlation_id }, cancelled ? "could not settle a cancelled due job; retrying" : "could not queue a due job; retrying");
      msg.nak(1000);
      return;
    }
    this.log.debug({ job_id: job.job_id, correlation_id: job.correlation_id, attempt: attempts + 1 }, "due job queued");
    msg.ack();
  }
}
