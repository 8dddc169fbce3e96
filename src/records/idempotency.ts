/**
 * Idempotency keys: one KV entry per (tenant, key) holding the id of the job
 * it created and a fingerprint of that job's type and payload, in a bucket
 * whose TTL is the idempotency window. `create` is a compare-and-set on the
 * server, so two submits racing on two supervisors cannot both win.
 */
import { createHash } from "node:crypto";
import type { KV } from "@nats-io/kv";
import type { JetStreamManager } from "@nats-io/jetstream";
import type { Logger } from "pino";
import { z } from "zod";
import { BosunError, buckets, ISSUED_JOB_ID_PATTERN, NO_TENANT } from "../contract/index.js";
import { readInbound } from "../platform/guard.js";
import { readKvValue } from "../platform/stream-reads.js";

/** A claim whose job never got written (its supervisor died mid-submit) may be taken over after this. */
const ABANDONED_CLAIM_MS = 30_000;

export type Claim = { claimed: true } | { claimed: false; jobId: string; fingerprint: string; revision: number; ageMs: number };

/** JSON with object keys sorted, so the same payload fingerprints the same whatever its key order. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined);
    return `{${entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(",")}}`;
  }
  return JSON.stringify(value) ?? "null";
}

/** What a key holds: the job it created and that job's fingerprint. */
const HeldClaim = z.object({ job_id: z.string().regex(ISSUED_JOB_ID_PATTERN), fingerprint: z.string().max(64) });

export class IdempotencyIndex {
  constructor(
    private readonly kv: KV,
    private readonly jsm: JetStreamManager,
    private readonly log: Logger,
  ) {}

  /** Keys are hashed: user keys may hold characters a KV key may not. */
  static keyFor(tenant: string | null, key: string): string {
    return `${tenant ?? NO_TENANT}.${createHash("sha256").update(key).digest("hex").slice(0, 40)}`;
  }

  /** What makes a second submit under a key "the same job": its type and payload. */
  static fingerprint(type: string, payload: unknown): string {
    return createHash("sha256").update(type).update("\n").update(canonical(payload)).digest("base64url").slice(0, 22);
  }

  async claim(indexKey: string, jobId: string, fingerprint: string): Promise<Claim> {
    try {
      await this.kv.create(indexKey, JSON.stringify({ job_id: jobId, fingerprint }));
      return { claimed: true };
    } catch (err) {
      // Read with its miss confirmed at the stream leader: right after a partition heals, a lagging
      // replica may not have the claim the leader refused this create for.
      const subject = `$KV.${buckets.idempotency}.${indexKey}`;
      const entry = await readKvValue(this.jsm, buckets.idempotency, indexKey);
      // Refused, yet gone at the leader: released (or expired) in between; the submit may simply be retried.
      if (!entry) throw new BosunError("unavailable", "the idempotency key changed while it was claimed; retry", undefined, { cause: err });
      const held = readInbound(HeldClaim, entry.data, { log: this.log, source: "idempotency key", subject, seq: entry.seq });
      // A value that is no claim was not written by Bosun: it is taken over at once.
      if (!held) return { claimed: false, jobId: "", fingerprint: "", revision: entry.seq, ageMs: Number.POSITIVE_INFINITY };
      return { claimed: false, jobId: held.job_id, fingerprint: held.fingerprint, revision: entry.seq, ageMs: Date.now() - entry.time.getTime() };
    }
  }

  /** Takes over an abandoned claim; false if someone else changed it first. */
  async takeOver(indexKey: string, jobId: string, fingerprint: string, claim: Claim & { claimed: false }): Promise<boolean> {
    if (claim.ageMs < ABANDONED_CLAIM_MS) return false;
    try {
      await this.kv.update(indexKey, JSON.stringify({ job_id: jobId, fingerprint }), claim.revision);
      return true;
    } catch {
      return false;
    }
  }

  async release(indexKey: string): Promise<void> {
    await this.kv.delete(indexKey);
  }
}
