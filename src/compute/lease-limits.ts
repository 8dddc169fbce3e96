/**
 * Per-queue limits (max_concurrency, rate_limit) over remote compute leases
 * (docs/compute.md "Limits"). The lease desk runs in a supervisor, so that
 * supervisor's QueueLimits admits each lease as one of its own jobs: from
 * the job's delivery to a waiting lease call until the lease ends, reported
 * in its heartbeats' use, so its peers count it. A lease ends through
 * whichever supervisor serves its last call (result, failure, revoke,
 * timeout, cancel), or by itself at its expiry with no call at all, so the
 * supervisor that admitted it follows the leases bucket: the admission is
 * released when the entry is removed (the call that ends it claims it so)
 * or replaced by a newer lease of the job, or when its expires_at passes
 * unrenewed. Leases whose
 * supervisor has stopped (its heartbeats no longer report them) are counted
 * from the bucket by every supervisor instead (`uncounted`).
 */
import type { KV, KvWatchEntry } from "@nats-io/kv";
import type { QueuedIterator } from "@nats-io/nats-core";
import type { Logger } from "pino";
import { JOB_ID_PATTERN } from "../contract/index.js";
import { guard } from "../platform/guard.js";
import type { JobMessage, Puller } from "../platform/puller.js";
import { followBucket } from "../records/bucket-watch.js";
import type { Admission, QueueLimits } from "../supervisor/queue-limits.js";
import { readLease, type StoredLease } from "./leases.js";

type OpenPulls = Pick<Puller, "outstanding">;

/**
 * A renewal made just before the expiry reaches this supervisor's watch
 * just after it: past the expiry, a lease's place is kept this much longer,
 * until no renewal can still be on its way (a released lease would go
 * uncounted if renewed after all).
 */
const EXPIRY_GRACE_MS = 500;

interface Held {
  admission: Admission;
  leaseId: string;
  fencingToken: number;
  /** Its own entry came through the watch: later changes of the key are changes of this lease (earlier ones may still be in flight). */
  confirmed: boolean;
  expiry: NodeJS.Timeout;
}

export interface LeaseLimitsOptions {
  workerId: string;
  limits: Pick<QueueLimits, "credits" | "admit" | "started" | "release" | "shareless">;
  leasesKv: KV;
  /** Supervisors whose heartbeats (live, or stopping) still report their use. */
  reporters(): string[];
  log: Logger;
}

export class LeaseLimits {
  /** Delivered to a waiting lease call, not a lease yet. */
  readonly #delivered = new Map<JobMessage, Admission>();
  /** This supervisor's leases, by job id. */
  readonly #held = new Map<string, Held>();
  /** Every lease in the bucket, by job id: the ones of a stopped supervisor are counted from here. */
  readonly #seen = new Map<string, StoredLease>();
  /** The desk's pullers of each queue's lanes: their open pulls count against the queue's credits. */
  readonly #pullers = new Map<string, Set<OpenPulls>>();
  #watch: QueuedIterator<KvWatchEntry> | undefined;
  #onRoom: () => void = () => undefined;

  constructor(private readonly opts: LeaseLimitsOptions) {}

  get workerId(): string {
    return this.opts.workerId;
  }

  async start(): Promise<void> {
    this.#watch = await followBucket(this.opts.leasesKv, this.opts.log, "compute lease limits", (entry) => this.#apply(entry));
  }

  /**
   * The admissions of leases still running stay in hand: a stopping
   * supervisor's last heartbeats report them, and once those are gone every
   * supervisor counts the leases from the bucket.
   */
  stop(): void {
    this.#watch?.stop();
    for (const held of this.#held.values()) clearTimeout(held.expiry);
  }

  /** The desk's listener: a queue may have room again. */
  whenRoom(listener: () => void): void {
    this.#onRoom = listener;
  }

  room(): void {
    this.#onRoom();
  }

  /** Of `n` jobs the desk would ask a lane of the queue for, how many its credits allow beside the pulls already open on the queue's lanes. */
  pullable(queue: string, puller: OpenPulls, n: number): number {
    let pullers = this.#pullers.get(queue);
    if (!pullers) this.#pullers.set(queue, (pullers = new Set()));
    pullers.add(puller);
    let open = 0;
    for (const p of pullers) open += p.outstanding;
    return Math.max(0, Math.min(n, this.opts.limits.credits(queue) - open));
  }

  /**
   * Every queue of a lease call has a limit whose shares other supervisors
   * hold: waiting here would wait for nothing, while the server's next call
   * may reach a supervisor with a share (a gateway sends each call to any).
   */
  shareless(queues: readonly string[]): boolean {
    return queues.length > 0 && queues.every((queue) => this.opts.limits.shareless(queue));
  }

  /** A job delivered for a waiting lease call: true if admitted within the queue's limits (else hand it back). */
  admit(queue: string, msg: JobMessage): boolean {
    const admission = this.opts.limits.admit(queue);
    if (!admission) return false;
    this.#delivered.set(msg, admission);
    return true;
  }

  /** The delivery became this lease: it started now, and holds its place until the lease ends. */
  leased(msg: JobMessage, lease: StoredLease): void {
    const admission = this.#delivered.get(msg);
    if (!admission) return;
    this.#delivered.delete(msg);
    this.opts.limits.started(admission, Date.parse(lease.started_at));
    // An older lease of the job held here, whose expiry the redelivery beat.
    if (this.#held.has(lease.job_id)) this.#end(lease.job_id);
    const seen = this.#seen.get(lease.job_id);
    const held: Held = { admission, leaseId: lease.lease_id, fencingToken: lease.fencing_token, confirmed: false, expiry: this.#expiry(lease.job_id, lease.expires_at) };
    this.#held.set(lease.job_id, held);
    if (seen) this.#change(lease.job_id, held, seen);
  }

  /** The lease call is done with the delivery: unless it became a lease (a job settled meanwhile, a newer lease, an error), its place is free. */
  done(msg: JobMessage): void {
    const admission = this.#delivered.get(msg);
    if (!admission) return;
    this.#delivered.delete(msg);
    this.#release(admission);
  }

  /** Jobs of the queue on live leases whose supervisor's heartbeats no longer report them (it stopped). */
  uncounted(queue: string, now = Date.now()): number {
    let reporters: Set<string> | undefined;
    let n = 0;
    for (const lease of this.#seen.values()) {
      if (lease.queue !== queue || lease.expires_at <= now || lease.granted_by === undefined || lease.granted_by === this.opts.workerId) continue;
      reporters ??= new Set(this.opts.reporters());
      if (!reporters.has(lease.granted_by)) n++;
    }
    return n;
  }

  #apply(entry: KvWatchEntry): void {
    const jobId = entry.key;
    if (!JOB_ID_PATTERN.test(jobId)) return;
    const lease = entry.operation === "PUT" ? readLease(jobId, entry.value, entry.revision, this.opts.log) : undefined;
    if (lease) this.#seen.set(jobId, lease);
    else this.#seen.delete(jobId);
    const held = this.#held.get(jobId);
    if (!held) return;
    if (!held.confirmed) {
      // An older lease's entry, or its removal, still in flight: not this lease's end.
      if (lease?.lease_id !== held.leaseId) return;
      held.confirmed = true;
    }
    // Removed, or overwritten with something unreadable: the lease is gone either way.
    if (!lease) this.#end(jobId);
    else this.#change(jobId, held, lease);
  }

  /** The lease's entry now: replaced by a newer lease of the job, or renewed to a later expiry. */
  #change(jobId: string, held: Held, lease: StoredLease): void {
    if (lease.fencing_token > held.fencingToken) {
      this.#end(jobId);
    } else if (lease.lease_id === held.leaseId) {
      held.confirmed = true;
      clearTimeout(held.expiry);
      held.expiry = this.#expiry(jobId, lease.expires_at);
    }
  }

  /** Past its expiry unrenewed the lease is stale, whether or not a call ever says so (JetStream redelivers the job). */
  #expiry(jobId: string, expiresAt: number): NodeJS.Timeout {
    const timer = setTimeout(
      guard(this.opts.log, "compute lease expiry", () => this.#end(jobId)),
      Math.max(0, expiresAt + EXPIRY_GRACE_MS - Date.now()),
    );
    timer.unref();
    return timer;
  }

  #end(jobId: string): void {
    const held = this.#held.get(jobId);
    if (!held) return;
    clearTimeout(held.expiry);
    this.#held.delete(jobId);
    this.#release(held.admission);
  }

  #release(admission: Admission): void {
    this.opts.limits.release(admission);
    this.#onRoom();
  }
}
