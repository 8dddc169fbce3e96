/**
 * Enroll tokens and compute servers (KV buckets bosun_enroll_tokens and
 * bosun_compute_servers). Only hashes are stored: a token is found by its
 * hash and deleted by compare-and-set when used (single use even when two
 * servers race with it); a credential is `<server_id>.<secret>` and its
 * secret's hash is checked in constant time. Every supervisor follows the
 * servers bucket, so a revoke (a delete) is refused everywhere at once.
 */
import type { KV, KvWatchEntry } from "@nats-io/kv";
import { nuid, type MsgHdrs, type QueuedIterator } from "@nats-io/nats-core";
import type { Logger } from "pino";
import { z } from "zod";
import {
  BosunError,
  buckets,
  DEFAULT_TARGET,
  NAME_PATTERN,
  type CreateEnrollTokenRequest,
  type EnrolledServer,
  type EnrollServerRequest,
  type EnrollToken,
} from "../contract/index.js";
import { readInbound } from "../platform/guard.js";
import { hashOf, randomToken, SECRET_LENGTH, secretMatches } from "../platform/secrets.js";
import { lostRace } from "../platform/nats-errors.js";
import { followBucket } from "../records/bucket-watch.js";
import { authorizationHeaderOf, bearerOf } from "../auth/index.js";

const secret = (): string => randomToken(SECRET_LENGTH);
const name = z.string().regex(NAME_PATTERN);
const isoTime = z.iso.datetime({ offset: true });
/** How often a server's last-seen time is written at most (it is shown, not used for decisions needing precision). */
const SEEN_WRITE_MS = 5000;

const StoredToken = z.object({ queues: z.array(name).min(1), target: name.optional(), expires_at: isoTime, created_at: isoTime });
export const StoredServer = z.object({
  server_id: name,
  name,
  queues: z.array(name).min(1),
  target: name,
  hash: z.string().regex(/^[0-9a-f]{64}$/),
  enrolled_at: isoTime,
  seen_at: isoTime.nullable(),
});
export type StoredServer = z.infer<typeof StoredServer>;


export class ComputeServers {
  readonly #servers = new Map<string, StoredServer>();
  /** A request's credential, once checked: the gate and the operation both ask, and the check hashes the secret. */
  readonly #checked = new WeakMap<MsgHdrs, string>();
  /** Revision of each server's entry, for compare-and-set updates (a revoked server is never written back). */
  readonly #revisions = new Map<string, number>();
  #watch: QueuedIterator<KvWatchEntry> | undefined;

  constructor(
    private readonly serversKv: KV,
    private readonly tokensKv: KV,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    this.#watch = await followBucket(this.serversKv, this.log, "compute server", (entry) => this.#apply(entry));
  }

  stop(): void {
    this.#watch?.stop();
  }

  async createToken(req: CreateEnrollTokenRequest): Promise<EnrollToken> {
    const token = secret();
    const expiresAt = new Date(Date.now() + req.ttl_ms).toISOString();
    const stored = { queues: req.queues, ...(req.target && { target: req.target }), expires_at: expiresAt, created_at: new Date().toISOString() };
    await this.tokensKv.create(hashOf(token), JSON.stringify(stored));
    return { token, expires_at: expiresAt, queues: req.queues, target: req.target ?? DEFAULT_TARGET };
  }

  /** Trades a token for a credential; the token is gone afterwards, whoever wins a race for it. */
  async enroll(req: EnrollServerRequest): Promise<EnrolledServer> {
    const key = hashOf(req.enroll_token);
    const entry = await this.tokensKv.get(key);
    const token = entry?.operation === "PUT" ? readInbound(StoredToken, entry.value, { log: this.log, source: "enroll token", subject: `$KV.${buckets.enrollTokens}.${key}`, seq: entry.revision }) : undefined;
    const refused = new BosunError("unauthorized", "unknown, used or expired enroll token");
    if (!entry || !token) throw refused;
    try {
      await this.tokensKv.delete(key, { previousSeq: entry.revision });
    } catch (err) {
      if (lostRace(err)) throw refused;
      throw err;
    }
    if (Date.parse(token.expires_at) <= Date.now()) throw refused;
    if (token.target && req.target && token.target !== req.target) throw new BosunError("forbidden", `this enroll token is for target ${token.target}`);
    const serverId = `cs_${nuid.next()}`;
    const credentialSecret = secret();
    const now = new Date().toISOString();
    // Enrolling is being seen: submits for its queues are accepted before its first lease call.
    const server: StoredServer = {
      server_id: serverId,
      name: req.name,
      queues: token.queues,
      target: token.target ?? req.target ?? DEFAULT_TARGET,
      hash: hashOf(credentialSecret),
      enrolled_at: now,
      seen_at: now,
    };
    await this.serversKv.create(serverId, JSON.stringify(server));
    this.#servers.set(serverId, server);
    this.log.info({ server_id: serverId, name: req.name, queues: server.queues, target: server.target }, "compute server enrolled");
    return { server_id: serverId, credential: `${serverId}.${credentialSecret}`, queues: server.queues, target: server.target };
  }

  /** The server whose credential the request carries: 401 otherwise (auth on or off). */
  async verify(headers: MsgHdrs | undefined): Promise<StoredServer> {
    const checked = headers && this.#checked.get(headers);
    // Revoked since (a watch event between the two asks) is refused all the same.
    const known = checked === undefined ? undefined : this.#servers.get(checked);
    if (known) return known;
    const credential = bearerOf(authorizationHeaderOf(headers));
    // Made only when refusing: an Error's stack costs more than the rest of a check that passes, twice per compute call.
    const refused = () => new BosunError("unauthorized", "a compute server credential is needed: send Authorization: Bearer <credential>");
    if (!credential) throw refused();
    const dot = credential.indexOf(".");
    const serverId = credential.slice(0, dot);
    if (dot < 1 || !NAME_PATTERN.test(serverId)) throw refused();
    // Enrolled a moment ago through another supervisor: the watch may not have brought it yet.
    const server = this.#servers.get(serverId) ?? (await this.#load(serverId));
    if (!server) throw new BosunError("unauthorized", "unknown or revoked compute server");
    if (!secretMatches(credential.slice(dot + 1), server.hash)) throw new BosunError("unauthorized", "unknown or revoked compute server");
    this.#touch(server);
    if (headers) this.#checked.set(headers, serverId);
    return server;
  }

  list(): StoredServer[] {
    return [...this.#servers.values()];
  }

  get(serverId: string): StoredServer | undefined {
    return this.#servers.get(serverId);
  }

  /** Deletes the server: its credential is refused from the moment each supervisor's watch sees it (milliseconds). */
  async revoke(serverId: string): Promise<StoredServer> {
    const server = this.#servers.get(serverId) ?? (await this.#load(serverId));
    if (!server) throw new BosunError("not_found", `no compute server ${serverId}`);
    await this.serversKv.delete(serverId);
    this.#forget(serverId);
    this.log.warn({ server_id: serverId, name: server.name }, "compute server revoked");
    return server;
  }

  /** Servers seen within `withinMs` (a live one long-polls at least every few seconds). */
  live(withinMs: number): StoredServer[] {
    const since = Date.now() - withinMs;
    return this.list().filter((s) => s.seen_at !== null && Date.parse(s.seen_at) >= since);
  }

  async #load(serverId: string): Promise<StoredServer | undefined> {
    const entry = await this.serversKv.get(serverId);
    if (entry?.operation !== "PUT") return undefined;
    this.#apply(entry);
    return this.#servers.get(serverId);
  }

  /** Writes when the server was last seen, by compare-and-set so a revoke in between is never undone. */
  #touch(server: StoredServer): void {
    const now = Date.now();
    if (server.seen_at && now - Date.parse(server.seen_at) < SEEN_WRITE_MS) return;
    const revision = this.#revisions.get(server.server_id);
    const seen = { ...server, seen_at: new Date(now).toISOString() };
    this.#servers.set(server.server_id, seen);
    if (revision === undefined) return;
    this.serversKv.update(server.server_id, JSON.stringify(seen), revision).catch((err: unknown) => {
      if (!lostRace(err)) this.log.warn({ err, server_id: server.server_id }, "could not record when a compute server was seen");
    });
  }

  #apply(entry: KvWatchEntry | { key: string; operation: string; value: Uint8Array; revision: number }): void {
    if (entry.operation !== "PUT") {
      this.#forget(entry.key);
      return;
    }
    const server = readInbound(StoredServer, entry.value, { log: this.log, source: "compute server", subject: `$KV.${buckets.computeServers}.${entry.key}`, seq: entry.revision });
    if (!server || server.server_id !== entry.key) return;
    this.#servers.set(server.server_id, server);
    this.#revisions.set(server.server_id, entry.revision);
  }

  #forget(serverId: string): void {
    this.#servers.delete(serverId);
    this.#revisions.delete(serverId);
  }
}
