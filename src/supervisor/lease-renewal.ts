/**
 * The leases of the jobs a runner has running: every message's ack deadline
 * is pushed back together (+WPI), on one timer at a third of the lease, so
 * a job that runs long keeps its message however many run at once.
 */
import type { Logger } from "pino";
import { guard } from "../platform/guard.js";
import type { JobMessage } from "../platform/puller.js";

const MIN_RENEW_MS = 250;

export class LeaseRenewal {
  readonly #held = new Set<JobMessage>();
  #timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly leaseMs: number,
    private readonly log: Logger,
  ) {}

  start(): void {
    const renew = guard(this.log, "lease renewal", () => {
      for (const msg of this.#held) msg.working();
    });
    this.#timer = setInterval(renew, Math.max(MIN_RENEW_MS, Math.floor(this.leaseMs / 3)));
  }

  hold(msg: JobMessage): void {
    this.#held.add(msg);
  }

  release(msg: JobMessage): void {
    this.#held.delete(msg);
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}
