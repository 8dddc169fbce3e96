/**
 * Keeps one lease alive from the moment it is granted until its outcome is
 * about to be posted: a heartbeat at a third of what is left of the lease,
 * carrying the job's latest progress. A heartbeat that fails for a
 * transient reason is tried again sooner, as what is left shrinks; one the
 * gateway refuses (409 `cancelled` or `lease_stale`, 401) ends the keeping,
 * and `onLost` is told why.
 */
import type { Logger } from "pino";
import type { BosunError } from "../contract/errors.js";
import type { ComputeClient, LeasedRun } from "../client/compute.js";
import { CancelledError, LeaseStaleError, UnauthorizedError } from "../client/errors.js";

/** However short the lease, no more than this many heartbeats a second. */
const MIN_HEARTBEAT_MS = 250;

/** What ends a lease under its run: the gateway's word, not a transient failure. */
export const endsLease = (err: unknown): err is BosunError => err instanceof CancelledError || err instanceof LeaseStaleError || err instanceof UnauthorizedError;

export class LeaseKeeper {
  #expiresAt: number;
  #progress: number | undefined;
  #timer: NodeJS.Timeout | undefined;
  #beating: Promise<void> | undefined;
  #stopped = false;
  #lost: BosunError | undefined;

  constructor(
    private readonly client: ComputeClient,
    private readonly run: LeasedRun,
    private readonly log: Logger,
    private readonly onLost: (err: BosunError) => void,
  ) {
    this.#expiresAt = run.expiresAt;
  }

  /** When the lease lapses unless renewed, on this machine's clock. */
  get expiresAt(): number {
    return this.#expiresAt;
  }

  /** Why the gateway ended the lease, once it has. */
  get lost(): BosunError | undefined {
    return this.#lost;
  }

  set progress(fraction: number) {
    this.#progress = fraction;
  }

  start(): void {
    this.#schedule();
  }

  /**
   * No more heartbeats, and none in flight once this resolves: an outcome
   * posted while a heartbeat is on its way would race it for the lease
   * (both change it, compare-and-set) and could be refused as stale.
   */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#beating;
  }

  #schedule(): void {
    if (this.#stopped) return;
    const delay = Math.max(MIN_HEARTBEAT_MS, (this.#expiresAt - Date.now()) / 3);
    this.#timer = setTimeout(() => {
      this.#beating = this.#beat().finally(() => {
        this.#beating = undefined;
        this.#schedule();
      });
    }, delay);
  }

  async #beat(): Promise<void> {
    try {
      this.#expiresAt = await this.client.heartbeat(this.run, this.#progress);
    } catch (err) {
      if (endsLease(err)) {
        this.#stopped = true;
        this.#lost = err;
        this.onLost(err);
        return;
      }
      this.log.warn({ job_id: this.run.job.job_id, correlation_id: this.run.job.correlation_id, err: (err as Error).message, lease_left_ms: this.#expiresAt - Date.now() }, "heartbeat failed; trying again");
    }
  }
}
