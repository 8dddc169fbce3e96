/**
 * Remote compute servers (CONTRACT.md "Remote compute servers"): enroll
 * tokens and credentials (servers.ts), lease requests waiting for jobs
 * (desk.ts), leases in KV with fencing tokens (leases.ts). Served by every
 * supervisor as part of the `bosun` NATS service; a gateway only relays.
 * docs/compute.md tells the protocol.
 */
import type { JetStreamManager } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import { nuid, type MsgHdrs, type NatsConnection } from "@nats-io/nats-core";
import type { Logger } from "pino";
import type { z } from "zod";
import { BosunError, jobErrorOf, streams, type InterimRecord, type LeaseGrant, type JobEnvelope, type JobError, type JobStatus, type operations } from "../contract/index.js";
import type { ExecutionOutcome } from "../actors/pool/pool.js";
import { guard } from "../platform/guard.js";
import { ACK, NAK, WORKING, type JobMessage } from "../platform/puller.js";
import { unavailableOf } from "../platform/nats-errors.js";
import { readSeq } from "../platform/stream-reads.js";
import type { StreamWriter } from "../platform/stream-writer.js";
import { cancelledError, deliveryHistory, readBack, recordOf, type CancelRegistry, type JobStore, type LaneRegistry, type ParkedJob } from "../records/index.js";
import { LeaseDesk } from "./desk.js";
import { Grants, type Grant } from "./grants.js";
import type { LeaseLimits } from "./lease-limits.js";
import { checkHeld, LeaseBook, staleLease, staleReason, type HeldLease, type StoredLease } from "./leases.js";
import { ComputeServers, type StoredServer } from "./servers.js";

type Req<N extends keyof typeof operations> = z.output<(typeof operations)[N]["request"]>;
type Res<N extends keyof typeof operations> = z.output<(typeof operations)[N]["response"]>;

/** What the supervisor's outcome store (supervisor/settle.ts Settler) does for a lease. */
export interface OutcomeStore {
  pickUp(msg: JobMessage, runId: string, parked?: ParkedJob): Promise<{ job: JobEnvelope; inbound: { attemptOffset: number }; attempt: number; record: JobStatus; fencingToken: number } | undefined>;
  /** What it stored: the job's final state (a cancel's record may have got there first), "failed" when parked for its next attempt. */
  record(job: JobEnvelope, record: JobStatus & { fencing_token?: number }, history: JobError[], ran: ExecutionOutcome, runId: string, opts?: { retryAtOnce?: boolean; noRetry?: boolean }): Promise<"succeeded" | "cancelled" | "dead" | "failed" | "hand_back">;
}

export interface ComputeDeps {
  nc: NatsConnection;
  jsm: JetStreamManager;
  store: JobStore;
  lanes: LaneRegistry;
  cancels: CancelRegistry;
  outcomes: OutcomeStore;
  leasesKv: KV;
  /** Lease writes go through it, as the supervisor's own records do. */
  writer: StreamWriter;
  serversKv: KV;
  tokensKv: KV;
  /** The lane consumers' ack wait: a lease lasts as long between heartbeats. */
  leaseMs: number;
  /** The supervisor's per-queue limits over its desk's leases. */
  leaseLimits: LeaseLimits;
  log: Logger;
}

/** A server that has not called for this long is not counted as serving its queues. */
export const SERVER_LIVE_MS = 60_000;
/** How often stale lease entries are looked for (ones a redelivery did not replace: the job ran elsewhere). */
const SWEEP_MS = 10_000;
/** Between tries of storing a remote outcome the stream could not take (an election takes 4-9 s). */
const STORE_RETRY_GAP_MS = 250;

/** Names one remote run in the final record's write id (see Settler.finish). */
const runIdOf = (lease: Pick<StoredLease, "server_id" | "lease_id">) => `${lease.server_id}.${lease.lease_id}`;

export class Compute {
  readonly #servers: ComputeServers;
  readonly #book: LeaseBook;
  readonly #desk: LeaseDesk;
  readonly #grants = new Grants((grant) => void this.#showIfHeld(grant).catch((err: unknown) => this.deps.log.warn({ err, job_id: grant.held.lease.job_id }, "could not show a leased job running")));
  #sweeper: NodeJS.Timeout | undefined;

  constructor(private readonly deps: ComputeDeps) {
    this.#servers = new ComputeServers(deps.serversKv, deps.tokensKv, deps.log);
    this.#book = new LeaseBook(deps.leasesKv, deps.writer, deps.log);
    this.#desk = new LeaseDesk(deps.nc, deps.jsm, deps.store, deps.lanes, deps.leaseMs, deps.log, deps.leaseLimits, deps.cancels);
  }

  async start(): Promise<void> {
    await this.#servers.start();
    await this.deps.leaseLimits.start();
    this.#desk.start();
    this.#sweeper = setInterval(guard(this.deps.log, "compute lease sweep", () => void this.#sweep().catch((err: unknown) => this.deps.log.warn({ err }, "compute lease sweep failed"))), SWEEP_MS).unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.#sweeper);
    this.#servers.stop();
    await this.#desk.stop();
    this.deps.leaseLimits.stop();
  }

  /** Compute servers of a target serving a queue, seen lately (the submit's "someone serves it" check). */
  serves(queue: string, target: string): boolean {
    return this.#servers.live(SERVER_LIVE_MS).some((s) => s.target === target && s.queues.includes(queue));
  }

  /** What checks a compute server's credential (the gate's check for every compute operation). */
  get credentials(): ComputeServers {
    return this.#servers;
  }

  /**
   * The fencing token of a compute server's current lease of the job
   * (its credential in `headers`), for a file it uploads: `lease_stale`
   * (409) unless the lease is current and this server's, 401 without a
   * valid credential.
   */
  async checkLease(jobId: string, leaseId: string, headers: MsgHdrs | undefined): Promise<{ fencing_token: number }> {
    const server = await this.#servers.verify(headers);
    const held = await this.#book.held(jobId, leaseId, server.server_id);
    return { fencing_token: held.lease.fencing_token };
  }

  liveServers(): { server_id: string; target: string; queues: string[] }[] {
    return this.#servers.live(SERVER_LIVE_MS).map(({ server_id, target, queues }) => ({ server_id, target, queues }));
  }

  readonly api = {
    createEnrollToken: (req: Req<"compute_enroll_tokens_create">): Promise<Res<"compute_enroll_tokens_create">> => this.#servers.createToken(req),
    enroll: (req: Req<"compute_servers_enroll">): Promise<Res<"compute_servers_enroll">> => this.#servers.enroll(req),
    listServers: async (): Promise<Res<"compute_servers_list">> => {
      const leases = await this.#book.all();
      return {
        servers: this.#servers.list().map((s) => ({
          server_id: s.server_id,
          name: s.name,
          queues: s.queues,
          target: s.target,
          enrolled_at: s.enrolled_at,
          last_heartbeat_at: s.seen_at,
          leased_jobs: leases.filter((h) => h.lease.server_id === s.server_id).map((h) => h.lease.job_id),
        })),
      };
    },
    revoke: async (req: Req<"compute_servers_revoke">): Promise<Res<"compute_servers_revoke">> => {
      await this.#servers.revoke(req.server_id);
      const held = (await this.#book.all()).filter((h) => h.lease.server_id === req.server_id);
      const ended = await Promise.all(held.map((h) => this.#endQuietly(h, { code: "revoked", message: `compute server ${req.server_id} was revoked` })));
      return { server_id: req.server_id, status: "revoked", requeued: ended.filter(Boolean).length };
    },
    lease: (req: Req<"compute_lease">, headers: MsgHdrs | undefined): Promise<Res<"compute_lease">> => this.#lease(req, headers),
    heartbeat: async (req: Req<"compute_heartbeat">, headers: MsgHdrs | undefined): Promise<Res<"compute_heartbeat">> => {
      const server = await this.#servers.verify(headers);
      const held = await this.#heldBy(server, req);
      if (this.deps.cancels.has(req.job_id)) {
        // A cancel that found the job not yet shown running settled it itself: the lease only has to end.
        await this.#end(held, { ok: false, error: cancelledError, duration_ms: this.#ranMs(held.lease) }).catch((err: unknown) => {
          if (!(err instanceof BosunError && err.code === "lease_stale")) throw err;
        });
        throw new BosunError("cancelled", `job ${req.job_id} was cancelled: stop running it`);
      }
      if (Date.now() > held.lease.deadline) {
        await this.#end(held, { ok: false, error: jobErrorOf("timeout", "job exceeded its timeout_ms on its compute server"), duration_ms: this.#ranMs(held.lease) });
        throw staleLease("the job exceeded its timeout_ms");
      }
      const progress = req.progress ?? held.lease.progress;
      const renewed = await this.#onCurrent(held, (h) => this.#book.update(h, { expires_at: Date.now() + this.deps.leaseMs, progress }));
      this.deps.nc.publish(held.lease.ack_subject, WORKING);
      this.#grants.renewed(renewed, req.progress !== undefined);
      if (req.progress !== undefined) {
        const parked = await this.#parkedOf(renewed.lease);
        if (parked) this.#showRunning(renewed.lease, parked.job);
      }
      return { job_id: req.job_id, lease_id: req.lease_id, expires_at: new Date(renewed.lease.expires_at).toISOString() };
    },
    result: async (req: Req<"compute_result">, headers: MsgHdrs | undefined): Promise<Res<"compute_result">> => {
      const server = await this.#servers.verify(headers);
      return this.#endWith(server, req);
    },
    failed: async (req: Req<"compute_failed">, headers: MsgHdrs | undefined): Promise<Res<"compute_failed">> => {
      const server = await this.#servers.verify(headers);
      return this.#endWith(server, req);
    },
    outcomes: async (req: Req<"compute_outcomes">, headers: MsgHdrs | undefined): Promise<Res<"compute_outcomes">> => {
      const server = await this.#servers.verify(headers);
      const outcomes = await Promise.all(
        req.outcomes.map((item) =>
          this.#endWith(server, item).catch((err: unknown) => {
            // One refused or failed outcome answers for itself; the others stand.
            if (!(err instanceof BosunError)) this.deps.log.warn({ err, job_id: item.job_id }, "could not end a compute lease; the server may post it again");
            const refused = err instanceof BosunError ? err : new BosunError("unavailable", "the outcome could not be stored now: post it again");
            return { job_id: item.job_id, error: { code: refused.code, message: refused.message } };
          }),
        ),
      );
      return { outcomes };
    },
  };

  /** Ends the server's lease named in a result's or failure's call with that outcome. */
  async #endWith(server: StoredServer, call: Req<"compute_result"> | Req<"compute_failed">): Promise<Res<"compute_result">> {
    const held = await this.#heldBy(server, call).catch(async (err: unknown) => {
      // Posted again after an answer that never came: the lease's own stored outcome is the answer, and nothing changes.
      const stored = err instanceof BosunError && err.code === "lease_stale" ? await this.deps.store.finalRecordOf(call.job_id, runIdOf({ server_id: server.server_id, lease_id: call.lease_id })) : undefined;
      if (stored) return { job_id: call.job_id, state: stored.state };
      throw err;
    });
    if (!("lease" in held)) return held;
    const duration_ms = this.#ranMs(held.lease);
    if (!("error" in call)) return this.#end(held, { ok: true, value: call.result, duration_ms });
    // Not retryable: its attempts are used up at once.
    return this.#end(held, { ok: false, error: jobErrorOf(call.error.code, call.error.message), duration_ms }, { noRetry: !call.retryable });
  }

  /** Waits for jobs of the server's queues, leases them, and shows them running with the server as owner. */
  async #lease(req: Req<"compute_lease">, headers: MsgHdrs | undefined): Promise<Res<"compute_lease">> {
    const server = await this.#servers.verify(headers);
    // Queue limits: answered at once without a share, so the server's next call reaches a supervisor with one (lease-limits.ts).
    if (this.deps.leaseLimits.shareless(server.queues)) return { job: null, lease: null };
    const deadline = Date.now() + req.wait_ms;
    for (;;) {
      const delivered = await this.#desk.take(server, req.types, Math.max(0, deadline - Date.now()), req.max_jobs);
      if (delivered.length === 0) return { job: null, lease: null };
      // Queue limits: a delivery's admission is freed unless it became a lease (lease-limits.ts).
      const granting = delivered.map(({ msg, parked }) =>
        this.#grant(server, msg, parked)
          .catch((err: unknown) => this.#notGranted(err, msg))
          .finally(() => this.deps.leaseLimits.done(msg)),
      );
      const grants = (await Promise.all(granting)).filter((g) => g !== undefined);
      // Cancelled, attempts used up or malformed: settled there, and the wait goes on.
      const [first, ...more] = grants;
      if (first) return more.length > 0 ? { ...first, more } : first;
    }
  }

  /** A job of several that could not be leased must not cost the others theirs: it runs again after its ack wait. */
  #notGranted(err: unknown, msg: JobMessage): undefined {
    this.deps.log.warn({ err, stream_seq: msg.streamSeq }, "could not lease a delivered job; it returns after its lease");
    return undefined;
  }

  async #grant(server: StoredServer, msg: JobMessage, parked: ParkedJob | undefined): Promise<LeaseGrant | undefined> {
    const leaseId = nuid.next();
    const picked = await this.deps.outcomes.pickUp(msg, runIdOf({ server_id: server.server_id, lease_id: leaseId }), parked);
    if (!picked) return undefined;
    const { job, attempt, inbound } = picked;
    const now = Date.now();
    const lease: StoredLease = {
      lease_id: leaseId,
      server_id: server.server_id,
      job_id: job.job_id,
      fencing_token: picked.fencingToken,
      ack_subject: msg.ackSubject,
      stream_seq: msg.streamSeq,
      delivery_count: msg.deliveryCount,
      attempt,
      started_at: new Date(now).toISOString(),
      expires_at: now + this.deps.leaseMs,
      deadline: now + job.timeout_ms,
      progress: null,
      queue: job.queue,
      granted_by: this.deps.leaseLimits.workerId,
    };
    const held = await this.#book.open(lease);
    if (!held) {
      this.deps.log.warn({ job_id: job.job_id, fencing_token: lease.fencing_token }, "a newer lease of this job exists; the delivery is dropped");
      return undefined;
    }
    this.#grants.add(held, { job, offset: inbound.attemptOffset });
    this.deps.leaseLimits.leased(msg, lease);
    this.deps.log.info({ job_id: job.job_id, correlation_id: job.correlation_id, server_id: server.server_id, attempt, fencing_token: lease.fencing_token }, "job leased to a compute server");
    return {
      job: { job_id: job.job_id, type: job.type, payload: job.payload, attempt, timeout_ms: job.timeout_ms, correlation_id: job.correlation_id },
      lease: { lease_id: leaseId, fencing_token: lease.fencing_token, expires_at: new Date(lease.expires_at).toISOString() },
    };
  }

  /**
   * The lease a server's call names, from this supervisor's grant when it
   * made it (no read), else from KV; also from KV when the grant's copy
   * reads stale (a heartbeat through another supervisor extended it).
   */
  async #heldBy(server: StoredServer, call: { job_id: string; lease_id: string }): Promise<HeldLease> {
    const grant = this.#grants.of(call.job_id, call.lease_id);
    if (grant && !staleReason(grant.held, call.lease_id, server.server_id)) return grant.held;
    return this.#book.held(call.job_id, call.lease_id, server.server_id);
  }

  /**
   * A compare-and-set on a lease, tried again once from KV when it was
   * made on this supervisor's copy and lost: the copy's revision may be
   * behind (a heartbeat through another supervisor), not the lease gone.
   */
  async #onCurrent<T>(held: HeldLease, change: (held: HeldLease) => Promise<T>): Promise<T> {
    try {
      return await change(held);
    } catch (err) {
      if (!(err instanceof BosunError && err.code === "lease_stale") || !this.#grants.of(held.lease.job_id, held.lease.lease_id)) throw err;
      return change(checkHeld(await this.#book.read(held.lease.job_id), held.lease.lease_id, held.lease.server_id));
    }
  }

  /** The job as leased: kept by this supervisor's grant, else read back from the jobs stream (gone once acked). */
  async #parkedOf(lease: StoredLease): Promise<ParkedJob | undefined> {
    const grant = this.#grants.of(lease.job_id, lease.lease_id);
    if (grant) return grant.parked;
    const stored = await readSeq(this.deps.jsm, streams.jobs, lease.stream_seq);
    const parked = stored && readBack.queued(stored, this.deps.log);
    return parked && parked.job.job_id === lease.job_id ? parked : undefined;
  }

  /**
   * Ends a lease with an outcome: claims the end (the lease entry removed
   * at the revision read, so one call wins), stores the outcome as a
   * supervisor's run would, then acks the job's message. A crash in
   * between leaves the message unacked: JetStream redelivers it, and the
   * job runs again under a new lease. A revision that moved on since this
   * supervisor's grant (a heartbeat through another supervisor) is read
   * again once.
   */
  async #end(held: HeldLease, ran: ExecutionOutcome, opts: { noRetry?: boolean; retryAtOnce?: boolean } = {}): Promise<Res<"compute_result">> {
    const { lease } = held;
    const grant = this.#grants.of(lease.job_id, lease.lease_id);
    await this.#onCurrent(held, (h) => this.#book.claim(h));
    // Read before the grant goes: a grant's job is kept, not read back.
    const parked = await this.#parkedOf(lease);
    if (grant) this.#grants.drop(grant);
    // Acked meanwhile (a redelivery ran it elsewhere and finished): this lease was stale.
    if (!parked) throw staleLease("the job was settled by another run");
    const { job } = parked;
    const { history } = deliveryHistory(job, parked.offset, lease.delivery_count);
    const record = {
      ...recordOf(job, "running", lease.attempt, { started_at: lease.started_at, error: history.at(-1) ?? null, owner: { server_id: lease.server_id }, progress: lease.progress }),
      fencing_token: lease.fencing_token,
    };
    const outcome = await this.#recordRetrying(lease, () => this.deps.outcomes.record(job, record, history, ran, runIdOf(lease), opts));
    this.deps.nc.publish(lease.ack_subject, outcome === "hand_back" ? NAK : ACK);
    // A grant made here knows whether the job was shown running; one made elsewhere may have been.
    if (!grant || grant.shown) this.deps.store.dropInterim(lease.job_id).catch((err: unknown) => this.deps.log.warn({ err, job_id: lease.job_id }, "could not remove an interim record"));
    this.deps.log.info({ job_id: lease.job_id, correlation_id: job.correlation_id, server_id: lease.server_id, ok: ran.ok }, "compute lease ended");
    // What was stored, not what was posted: a cancel's record that got there first, a result too large to keep.
    return { job_id: lease.job_id, state: outcome === "hand_back" ? "queued" : outcome };
  }

  /**
   * The lease's end is claimed before its outcome is stored, so a repost
   * would be refused as stale: a write the stream cannot take now is tried
   * again (the same writes, made safe by their message ids) for up to a
   * lease, the job's message kept in hand meanwhile.
   */
  async #recordRetrying<T>(lease: StoredLease, store: () => Promise<T>): Promise<T> {
    const deadline = Date.now() + this.deps.leaseMs;
    for (;;) {
      try {
        return await store();
      } catch (err) {
        if (!unavailableOf(err) || Date.now() + STORE_RETRY_GAP_MS >= deadline) throw err;
        this.deps.log.warn({ err, job_id: lease.job_id }, "storing a remote outcome failed; retrying");
        this.deps.nc.publish(lease.ack_subject, WORKING);
        await new Promise((resolve) => setTimeout(resolve, STORE_RETRY_GAP_MS));
      }
    }
  }

  /** Ends a lease the server can no longer end itself (revoked): its job runs again at once. */
  async #endQuietly(held: HeldLease, error: JobError): Promise<boolean> {
    try {
      await this.#end(held, { ok: false, error, duration_ms: this.#ranMs(held.lease) }, { retryAtOnce: true });
      return true;
    } catch (err) {
      this.deps.log.warn({ err, job_id: held.lease.job_id }, "could not end a revoked server's lease");
      return false;
    }
  }

  /** A grant's job shows as running once its lease has lasted a while, if it still does (it may have ended through another supervisor). */
  async #showIfHeld(grant: Grant): Promise<void> {
    const now = await this.#book.read(grant.held.lease.job_id);
    if (now?.lease.lease_id === grant.held.lease.lease_id) this.#showRunning(now.lease, grant.parked.job);
    else this.#grants.drop(grant);
  }

  /** The interim record: the job reads `running` on this server (unacknowledged, as for a supervisor's run). */
  #showRunning(lease: StoredLease, job: JobEnvelope): void {
    const record: InterimRecord = {
      ...recordOf(job, "running", lease.attempt, { started_at: lease.started_at, owner: { server_id: lease.server_id }, progress: lease.progress }),
      generation: job.generation,
      fencing_token: lease.fencing_token,
    };
    this.deps.store.putRunning(record);
  }

  #ranMs(lease: StoredLease): number {
    return Math.max(0, Date.now() - Date.parse(lease.started_at));
  }

  /** Removes lease entries long past their expiry: their job was redelivered and ran (or runs) elsewhere. */
  async #sweep(): Promise<void> {
    this.#grants.dropOlderThan(2 * this.deps.leaseMs);
    const old = Date.now() - 2 * this.deps.leaseMs;
    for (const held of await this.#book.all()) if (held.lease.expires_at < old) await this.#book.close(held);
  }
}
