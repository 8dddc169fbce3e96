/**
 * Idempotency keys: one KV entry per (tenant, key) holding the id of the job
 * it created, in a bucket whose TTL is the idempotency window. `create` is a
 * compare-and-set on the server, so two submits racing on two supervisors
 * cannot both win.
 */
import { createHash } from "node:crypto";
import type { KV } from "@nats-io/kv";
import { JOB_ID_PATTERN } from "../contract/index.js";

/** A claim whose job never got written (its supervisor died mid-submit) may be taken over after this. */
const ABANDONED_CLAIM_MS = 30_000;

export type Claim = { claimed: true } | { claimed: false; jobId: string; revision: number; ageMs: number };

export class IdempotencyIndex {
  constructor(private readonly kv: KV) {}

  /** Keys are hashed: user keys may hold characters a KV key may not. */
  static keyFor(tenant: string | null, key: string): string {
    return `${tenant ?? "_"}.${createHash("sha256").update(key).digest("hex").slice(0, 40)}`;
  }

  async claim(indexKey: string, jobId: string): Promise<Claim> {
    try {
      await this.kv.create(indexKey, jobId);
      return { claimed: true };
    } catch (err) {
      const entry = await this.kv.get(indexKey);
      if (!entry || entry.operation !== "PUT") throw err;
      const jobId = entry.string();
      // A value that is no job id was not written by Bosun: it is taken over at once.
      const ageMs = JOB_ID_PATTERN.test(jobId) ? Date.now() - entry.created.getTime() : Number.POSITIVE_INFINITY;
      return { claimed: false, jobId, revision: entry.revision, ageMs };
    }
  }

  /** Takes over an abandoned claim; false if someone else changed it first. */
  async takeOver(indexKey: string, jobId: string, claim: Claim & { claimed: false }): Promise<boolean> {
    if (claim.ageMs < ABANDONED_CLAIM_MS) return false;
    try {
      await this.kv.update(indexKey, jobId, claim.revision);
      return true;
    } catch {
      return false;
    }
  }

  async release(indexKey: string): Promise<void> {
    await this.kv.delete(indexKey);
  }
}
