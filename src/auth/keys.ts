/**
 * API keys (KV bucket bosun_keys): key id -> the hash of its secret and
 * what it may do. The secret itself is shown once, in the create answer,
 * and never stored. Every supervisor follows the bucket, so a key made on
 * one is usable on all at once (a miss is read from the bucket before it is
 * refused) and a revoke (a purge of the key) reaches every one within
 * milliseconds.
 */
import type { KV, KvWatchEntry } from "@nats-io/kv";
import type { QueuedIterator } from "@nats-io/nats-core";
import type { Logger } from "pino";
import { z } from "zod";
import { BosunError, buckets, KeyInfo, TenantName, type CreatedKey, type CreateKeyRequest } from "../contract/index.js";
import { readInbound } from "../platform/guard.js";
import { issueSecret, parseSecret, secretMatches } from "../platform/secrets.js";
import { followBucket } from "../records/bucket-watch.js";

/** API keys are `bsk_<key_id>_<secret>`. */
export const API_KEY_PREFIX = "bsk";
/** The key id BOSUN_ADMIN_KEY goes by (it is not in the bucket: rotate it in the environment). */
export const BOOTSTRAP_KEY_ID = "bootstrap";

// A key for tenant "_" (made before that name was refused) would act for the jobs of no tenant: it reads as junk.
const StoredKey = KeyInfo.extend({ hash: z.string().regex(/^[0-9a-f]{64}$/), tenant: TenantName.nullable() });
type StoredKey = z.infer<typeof StoredKey>;

export type Principal = { admin: true; key_id: string | null; tenant: null } | { admin: false; key_id: string; tenant: string };
/** Who every request is while auth is off. */
export const OPEN: Principal = { admin: true, key_id: null, tenant: null };

const infoOf = ({ hash: _hash, ...info }: StoredKey): KeyInfo => info;
const principalOf = (k: StoredKey): Principal => (k.admin ? { admin: true, key_id: k.key_id, tenant: null } : { admin: false, key_id: k.key_id, tenant: k.tenant! });

export class KeyStore {
  readonly #keys = new Map<string, StoredKey>();
  /** Ids seen revoked: key ids are random and never reused, so a late read of one cannot bring it back. */
  readonly #revoked = new Set<string>();
  #watch: QueuedIterator<KvWatchEntry> | undefined;

  constructor(
    private readonly kv: KV,
    private readonly log: Logger,
    /** SHA-256 of BOSUN_ADMIN_KEY, when auth is on. */
    private readonly bootstrapHash: string | undefined,
  ) {}

  async start(): Promise<void> {
    this.#watch = await followBucket(this.kv, this.log, "api key", (entry) => {
      if (entry.operation !== "PUT") {
        this.#forget(entry.key);
        return;
      }
      const key = this.#read(entry.key, entry.value, entry.revision);
      if (key && !this.#revoked.has(key.key_id)) this.#keys.set(key.key_id, key);
    });
  }

  stop(): void {
    this.#watch?.stop();
  }

  /** Who presents this key, or undefined for a key that is not (or no longer) valid. */
  async verify(presented: string): Promise<Principal | undefined> {
    const parsed = parseSecret(API_KEY_PREFIX, presented);
    if (!parsed) {
      // Anything else can only be the bootstrap key (compared in constant time, whatever its length).
      return this.bootstrapHash !== undefined && secretMatches(presented, this.bootstrapHash) ? { admin: true, key_id: BOOTSTRAP_KEY_ID, tenant: null } : undefined;
    }
    const key = this.#keys.get(parsed.id) ?? (await this.#fetch(parsed.id));
    return key && secretMatches(parsed.secret, key.hash) ? principalOf(key) : undefined;
  }

  async create(req: CreateKeyRequest): Promise<CreatedKey> {
    const issued = issueSecret(API_KEY_PREFIX);
    const key: StoredKey = {
      key_id: issued.id,
      tenant: req.admin ? null : req.tenant!,
      admin: req.admin === true,
      label: req.label ?? null,
      created_at: new Date().toISOString(),
      hash: issued.hash,
    };
    await this.kv.create(key.key_id, JSON.stringify(key));
    this.#keys.set(key.key_id, key);
    this.log.info({ key_id: key.key_id, tenant: key.tenant, admin: key.admin }, "api key created");
    return { ...infoOf(key), key: issued.token };
  }

  list(): KeyInfo[] {
    return [...this.#keys.values()].map(infoOf).sort((a, b) => a.created_at.localeCompare(b.created_at) || a.key_id.localeCompare(b.key_id));
  }

  async revoke(keyId: string): Promise<{ key_id: string; revoked: true }> {
    if (keyId === BOOTSTRAP_KEY_ID) throw new BosunError("conflict", "the bootstrap key is BOSUN_ADMIN_KEY: change it in the environment of every gateway and supervisor and restart them");
    if (!this.#keys.has(keyId) && !(await this.#fetch(keyId))) throw new BosunError("not_found", `no API key ${keyId}`);
    // A purge leaves no trace of the hash; every follower drops the key when it sees it.
    await this.kv.purge(keyId);
    this.#forget(keyId);
    this.log.info({ key_id: keyId }, "api key revoked");
    return { key_id: keyId, revoked: true };
  }

  /** A key made a moment ago on another supervisor (the watch has not brought it yet). */
  async #fetch(keyId: string): Promise<StoredKey | undefined> {
    const entry = await this.kv.get(keyId);
    if (!entry || entry.operation !== "PUT") return undefined;
    const key = this.#read(keyId, entry.value, entry.revision);
    if (!key || this.#revoked.has(keyId)) return undefined;
    this.#keys.set(key.key_id, key);
    return key;
  }

  #forget(keyId: string): void {
    this.#revoked.add(keyId);
    this.#keys.delete(keyId);
  }

  #read(keyId: string, value: Uint8Array, revision: number): StoredKey | undefined {
    const key = readInbound(StoredKey, value, { log: this.log, source: "api keys", subject: `$KV.${buckets.keys}.${keyId}`, seq: revision });
    // Admin or one tenant, stored under its own id: anything else was not written by Bosun.
    return key && key.key_id === keyId && key.admin === (key.tenant === null) ? key : undefined;
  }
}
