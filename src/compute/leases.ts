/**
 * Remote leases in KV (bucket bosun_leases, key = job id). The job's message
 * stays unacked in BOSUN_JOBS while it is leased, exactly as while a
 * supervisor runs it, so status, listing, cancel and every guarantee apply
 * unchanged; what a supervisor keeps in memory for its own runs (the ack
 * subject, the delivery) is in the lease entry instead, and whichever
 * supervisor serves a lease's call acts on it: a heartbeat sends +WPI to
 * the message, an outcome is stored and then acked. A server that goes
 * quiet stops the +WPI, and JetStream redelivers the job after its lease
 * (ack wait): an expired lease puts the job back by construction, with a
 * higher fencing token. Every change is a compare-and-set on the entry's
 * revision, so of two calls racing on one lease exactly one wins; the call
 * that ends a lease claims it by removing the entry (at the revision it
 * read) before it stores the outcome.
 */
import type { KV } from "@nats-io/kv";
import type { Logger } from "pino";
import { z } from "zod";
import { BosunError, buckets, FencingToken, JOB_ID_PATTERN, kvKeySubject, NAME_PATTERN } from "../contract/index.js";
import { readInbound } from "../platform/guard.js";
import { lostRace } from "../platform/nats-errors.js";
import type { StreamWriter } from "../platform/stream-writer.js";

/** nats-server's ack subjects: `$JS.ACK.` and tokens without spaces. */
const ACK_SUBJECT = /^\$JS\.ACK\.[A-Za-z0-9_.$-]{1,400}$/;

export const StoredLease = z.object({
  lease_id: z.string().regex(/^[A-Za-z0-9]{1,64}$/),
  server_id: z.string().regex(NAME_PATTERN),
  job_id: z.string().regex(JOB_ID_PATTERN),
  fencing_token: FencingToken,
  ack_subject: z.string().regex(ACK_SUBJECT),
  stream_seq: z.number().int().positive(),
  delivery_count: z.number().int().positive(),
  attempt: z.number().int().positive(),
  started_at: z.iso.datetime({ offset: true }),
  /** Epoch ms: past it the lease is stale, and JetStream redelivers the job soon after. */
  expires_at: z.number().int(),
  /** Epoch ms: the job's timeout_ms from its start. */
  deadline: z.number().int(),
  progress: z.number().min(0).max(1).nullable(),
  /** The job's queue and the supervisor whose queue limits admitted the lease (lease-limits.ts); absent from older supervisors' leases. */
  queue: z.string().regex(NAME_PATTERN).optional(),
  granted_by: z.string().regex(NAME_PATTERN).optional(),
});
export type StoredLease = z.infer<typeof StoredLease>;

export interface HeldLease {
  lease: StoredLease;
  revision: number;
}

/** A stored lease entry, checked (anyone with publish rights may write into the bucket): undefined if unreadable or not the key's job. */
export function readLease(key: string, value: Uint8Array, revision: number, log: Logger): StoredLease | undefined {
  const lease = readInbound(StoredLease, value, { log, source: "compute lease", subject: `$KV.${buckets.leases}.${key}`, seq: revision });
  return lease && lease.job_id === key ? lease : undefined;
}

export const staleLease = (why: string): BosunError => new BosunError("lease_stale", `the lease is no longer this server's: ${why}; nothing was changed`);

/** Why the lease is not the call's current one (its id, its server, not expired), or undefined when it is. */
export function staleReason(held: HeldLease | undefined, leaseId: string, serverId: string): string | undefined {
  if (!held || held.lease.lease_id !== leaseId) return "the job is not leased under this lease id";
  if (held.lease.server_id !== serverId) return "another server holds it";
  if (held.lease.expires_at < Date.now()) return "it expired";
  return undefined;
}

/** The lease if it is current and the call's; `lease_stale` otherwise. */
export function checkHeld(held: HeldLease | undefined, leaseId: string, serverId: string): HeldLease {
  const why = staleReason(held, leaseId, serverId);
  if (why) throw staleLease(why);
  return held!;
}

/** What a KV purge is on the wire: a rollup of the key's subject to this one marker. */
const PURGE_HEADERS = { "KV-Operation": "PURGE", "Nats-Rollup": "sub" };

/**
 * Reads through the bucket; writes through the supervisor's StreamWriter,
 * as the KV publishes they are: a lease is written twice per remote job,
 * and the bucket's own writes are a full request each (a timer and an
 * Error object), which profiled at a tenth of a supervisor's remote work.
 */
export class LeaseBook {
  constructor(
    private readonly kv: KV,
    private readonly writer: StreamWriter,
    private readonly log: Logger,
  ) {}

  async read(jobId: string): Promise<HeldLease | undefined> {
    const entry = await this.kv.get(jobId);
    if (entry?.operation !== "PUT") return undefined;
    const lease = readLease(jobId, entry.value, entry.revision, this.log);
    return lease && { lease, revision: entry.revision };
  }

  /**
   * Records a new lease of a job: a later delivery of its message than any
   * lease stored for it (a lease left by a server that went quiet, or by a
   * call that died halfway) replaces it. Undefined if a lease with a token
   * at least as high is there (this delivery is the stale one). Most jobs
   * have no entry: it is created without a read first.
   */
  async open(lease: StoredLease): Promise<HeldLease | undefined> {
    const value = JSON.stringify(lease);
    let expected = 0;
    for (let tries = 0; tries < 3; tries++) {
      try {
        return { lease, revision: await this.#write(lease.job_id, value, expected) };
      } catch (err) {
        if (!lostRace(err)) throw err;
      }
      const entry = await this.kv.get(lease.job_id);
      if (!entry) continue;
      const held = entry.operation === "PUT" ? readLease(lease.job_id, entry.value, entry.revision, this.log) : undefined;
      // A removed or unreadable entry is replaced as it stands; a current lease only by a newer delivery.
      if (held && held.fencing_token >= lease.fencing_token) return undefined;
      expected = entry.revision;
    }
    return undefined;
  }

  /** The lease this server's call names, current: `lease_stale` (409) otherwise. */
  async held(jobId: string, leaseId: string, serverId: string): Promise<HeldLease> {
    return checkHeld(await this.read(jobId), leaseId, serverId);
  }

  /**
   * Ends the lease for the call that will store its outcome: removed at the
   * revision the call read, so a heartbeat, another outcome or a newer
   * lease that changed it first makes this one `lease_stale`.
   */
  async claim(held: HeldLease): Promise<void> {
    try {
      await this.writer.publish(kvKeySubject(buckets.leases, held.lease.job_id), "", { expectLastSubjectSeq: held.revision, headers: PURGE_HEADERS });
    } catch (err) {
      if (lostRace(err)) throw staleLease("another call changed it first");
      throw err;
    }
  }

  /** Compare-and-set: the lease as changed, or `lease_stale` if another call changed it first. */
  async update(held: HeldLease, change: Partial<StoredLease>): Promise<HeldLease> {
    const lease = { ...held.lease, ...change };
    try {
      return { lease, revision: await this.#write(lease.job_id, JSON.stringify(lease), held.revision) };
    } catch (err) {
      if (lostRace(err)) throw staleLease("another call changed it first");
      throw err;
    }
  }

  /** Removes a lease past its use (only that revision: a newer lease of the job stays). */
  async close(held: HeldLease): Promise<void> {
    try {
      await this.claim(held);
    } catch (err) {
      if (!(err instanceof BosunError && err.code === "lease_stale")) this.log.warn({ err, job_id: held.lease.job_id }, "could not remove an ended compute lease");
    }
  }

  /** A compare-and-set put: the entry's new revision; lostRace when the key is not at `expected` (0: has never been written). */
  async #write(jobId: string, value: string, expected: number): Promise<number> {
    return (await this.writer.publish(kvKeySubject(buckets.leases, jobId), value, { expectLastSubjectSeq: expected })).seq;
  }

  /** Every lease stored (an admin listing and the sweep: leases are few, one per remote run). */
  async all(): Promise<HeldLease[]> {
    const keys: string[] = [];
    for await (const key of await this.kv.keys()) keys.push(key);
    const held = await Promise.all(keys.filter((k) => JOB_ID_PATTERN.test(k)).map((k) => this.read(k)));
    return held.filter((h): h is HeldLease => h !== undefined);
  }
}
