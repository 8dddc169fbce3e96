/**
 * Idempotency keys: one KV entry per (tenant, key) holding the id of the job
 * it created and a fingerprint of that job's type and payload, in a bucket
 * whose TTL is the idempotency window. `create` is a compare-and-set on the
 * server, so two submits racing on two supervisors cannot both win.
 */
import { createHash } from "node:crypto";
import type { KV } from "@nats-io/kv";
import type { Logger } from "pino";
import { z } from "zod";
import { buckets, ISSUED_JOB_ID_PATTERN } from "../contract/index.js";
import { readInbound } from "../platform/guard.js";

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
    private readonly log: Logger,
  ) {}

  /** Keys are hashed: user keys may hold characters a KV key may not. */
  static keyFor(tenant: string | null, key: string): string {
    return `${tenant ?? "_"}.${createHash("sha256").update(key).digest("hex").slice(0, 40)}`;
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
      const entry = await this.kv.get(indexKey);
      if (!entry || entry.operation !== "PUT") throw err;
      const held = readInbound(HeldClaim, entry.value, { log: this.log, source: "idempotency key", subject: `$KV.${buckets.idempotency}.${indexKey}` });
      // A value that is no claim was not written by Bosun: it is taken over at once.
      if (!held) return { claimed: false, jobId: "", fingerprint: "", revision: entry.revision, ageMs: Number.POSITIVE_INFINITY };
      return { claimed: false, jobId: held.job_id, fingerprint: held.fingerprint, revision: entry.revision, ageMs: Date.now() - entry.created.getTime() };
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
