/**
 * The leases this supervisor granted, while they last: what their end
 * needs without reading it back (the lease's revision, the job as leased),
 * when the outcome comes to this supervisor, as it does with one
 * supervisor, or with a server whose calls reach the same one. An outcome
 * that reaches another supervisor reads both from NATS, as before.
 *
 * A remote job shows as running (its interim record) once its lease has
 * lasted SHOW_RUNNING_AFTER_MS, or at its first progress report: most
 * short jobs end before, and then neither the record nor its removal is
 * written, as on the supervisor path (supervisor/running-record.ts).
 */
import type { ParkedJob } from "../records/index.js";
import type { HeldLease } from "./leases.js";

/** Longer than the supervisor path's 20 ms: a remote run's outcome comes back over HTTP, through a gateway. */
export const SHOW_RUNNING_AFTER_MS = 250;

export interface Grant {
  held: HeldLease;
  parked: ParkedJob;
  /** Its interim record was written (or may have been): its end removes it. */
  shown: boolean;
  readonly grantedAt: number;
  timer: NodeJS.Timeout | undefined;
}

export class Grants {
  readonly #grants = new Map<string, Grant>();

  /** `show` writes a grant's interim record if its lease is still there. */
  constructor(private readonly show: (grant: Grant) => void) {}

  add(held: HeldLease, parked: ParkedJob): void {
    const grant: Grant = { held, parked, shown: false, grantedAt: Date.now(), timer: undefined };
    grant.timer = setTimeout(() => {
      grant.timer = undefined;
      grant.shown = true;
      this.show(grant);
    }, SHOW_RUNNING_AFTER_MS);
    grant.timer.unref();
    this.#grants.set(held.lease.job_id, grant);
  }

  /** The grant of this lease, if this supervisor made it. */
  of(jobId: string, leaseId: string): Grant | undefined {
    const grant = this.#grants.get(jobId);
    return grant?.held.lease.lease_id === leaseId ? grant : undefined;
  }

  /** The lease changed here (a heartbeat): its end compares against the new revision. */
  renewed(held: HeldLease, shown: boolean): void {
    const grant = this.of(held.lease.job_id, held.lease.lease_id);
    if (!grant) return;
    grant.held = held;
    if (shown) this.#stopTimer(grant, true);
  }

  /** The lease ended (here, or seen ended elsewhere): nothing more is written for it. */
  drop(grant: Grant): void {
    this.#stopTimer(grant, grant.shown);
    if (this.#grants.get(grant.held.lease.job_id) === grant) this.#grants.delete(grant.held.lease.job_id);
  }

  /** Grants older than `ms`: their outcome went to another supervisor, or never came. */
  dropOlderThan(ms: number): void {
    const before = Date.now() - ms;
    for (const grant of [...this.#grants.values()]) if (grant.grantedAt < before) this.drop(grant);
  }

  #stopTimer(grant: Grant, shown: boolean): void {
    clearTimeout(grant.timer);
    grant.timer = undefined;
    grant.shown = shown;
  }
}
