/**
 * Schedules (recurring jobs): the bucket store, the tick duty every
 * supervisor runs, and the API. See docs/scheduling.md.
 */
import type { JetStreamManager } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import type { Logger } from "pino";
import { ScheduleDuty, type ScheduleSummary, type TickSubmitter } from "./duty.js";
import { ScheduleService } from "./service.js";
import { ScheduleStore } from "./store.js";

export { MISFIRE_GRACE_MS, type ScheduleSummary, type TickSubmitter } from "./duty.js";
export { tickAfter, tickAtOrBefore } from "./timing.js";
export { ScheduleService } from "./service.js";

/** The supervisor duty (start, stop, a heartbeat summary) and the API it serves. */
export class Schedules {
  readonly api: ScheduleService;
  readonly #duty: ScheduleDuty;

  constructor(kv: KV, jsm: JetStreamManager, submitter: TickSubmitter, log: Logger) {
    const store = new ScheduleStore(kv, jsm, log);
    this.#duty = new ScheduleDuty(kv, store, submitter, log);
    this.api = new ScheduleService(store, this.#duty, submitter, log);
  }

  start(): Promise<void> {
    return this.#duty.start();
  }

  stop(): void {
    this.#duty.stop();
  }

  summary(): ScheduleSummary {
    return this.#duty.summary();
  }
}
