/**
 * Job intake and job commands: validates a submit, writes the job (one
 * acknowledged write: its message, queued or parked until due), and with
 * wait_ms waits for its result. Also batch submit, status, result, cancel,
 * retry and list.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import { errors, headers as natsHeaders, nuid } from "@nats-io/nats-core";
import type { Logger } from "pino";
import {
  BosunError,
  controlSubject,
  CORRELATION_HEADER,
  encodeJson,
  FINAL_STATES,
  errorReply,
  FinalRecord,
  isJobId,
  laneOf,
  tryParseWith,
  resultSubject,
  SubmitRequest,
  TICK_KEY_PREFIX,
  summarizeIssues,
  DEFAULT_TARGET,
  type Backoff,
  type BatchSubmitReply,
  type JobEnvelope,
  type JobResult,
  type ScheduleOrigin,
  type SubmitReply,
} from "../contract/index.js";
import type { HandlerDefinition } from "../actors/handlers.js";

import {
  IdempotencyIndex,
  laneFor,
  requireStatus,
  resultOf,
  type CancelRegistry,
  type JobStore,
  type LaneRegistry,
} from "../records/index.js";
import { encodeJobMessage, readReply } from "../platform/nats.js";
import { unavailableOf } from "../platform/nats-errors.js";
import { AUTHORIZATION_HEADER } from "../auth/index.js";
import { readInbound } from "../platform/guard.js";
import type { SupervisorMetrics } from "../platform/metrics.js";
import { TRACEPARENT } from "../platform/tracing.js";
import type { PendingCounts } from "./pending-counts.js";

/** Runs nowhere here: a remote server's handler runs the job (see #remoteHandler). */
const REMOTE_HANDLER: HandlerDefinition = {
  run: () => {
    throw new Error("a remote compute server's job type");
  },
};

export interface JobDefaults {
  timeout_ms: number;
  max_attempts: number;
  backoff: Backoff;
}

export interface IntakeDeps {
  nc: NatsConnection;
  store: JobStore;
  lanes: LaneRegistry;
  cancels: CancelRegistry;
  idempotency: IdempotencyIndex;
  handlers: ReadonlyMap<string, HandlerDefinition>;
  queues: readonly string[];
  workerId: string;
  /** Live supervisors of the target serving the type on the queue (this one included). */
  serversOf(type: string, queue: string, target: string): string[];
  /** Remote compute servers of the target, seen lately, serve this queue (they name no types up front: any type is theirs to run). */
  remoteServes(queue: string, target: string): boolean;
  /** This supervisor's target. */
  target: string;
  /** The queue's active target (ops flags): where its new submissions go. */
  activeTarget(queue: string): string;
  /** A supervisor that turned out not to be there. */
  forgetWorker(workerId: string): void;
  /** The ops flag: submits to this queue are refused for now. */
  submissionsPaused(queue: string): boolean;
  /** The queue's max_pending from the ops flags, if set. */
  maxPending(queue: string): number | undefined;
  pending: PendingCounts;
  /** Waits for a turn while this supervisor holds every job it may (SubmitPacer); undefined: go on. */
  pace(): Promise<void> | undefined;
  defaults: JobDefaults;
  metrics: SupervisorMetrics;
  log: Logger;
}

const FORWARD_TIMEOUT_MS = 5000;
/** Supervisors a submit is offered to before it is refused (each costs a no-responders round trip when gone). */
const MAX_FORWARD_TRIES = 3;
/**
 * How long a submit keeps retrying writes the stream cannot take (a leader
 * election takes 4-9 s, up to ~16 s after a partition heals), then answers
 * 503 with Retry-After; within the gateway's default 5 s request timeout.
 */
export const SUBMIT_RETRY_MS = 4000;

/** Where a submit comes from, besides its body. */
export interface SubmitContext {
  /** The request's correlation id header (the body's wins). */
  correlationId?: string;
  /** Sent on by another supervisor: not forwarded again. */
  forwarded?: boolean;
  traceparent?: string;
  /** The caller's Authorization header, passed on with a forward (checked again there). */
  authorization?: string;
  /** A schedule's tick (schedule_id, tick_at) for the job's record. */
  origin?: ScheduleOrigin;
  /** Already counted against the queue's max_pending (a batch). */
  counted?: boolean;
}

export class Intake {
  constructor(private readonly deps: IntakeDeps) {}

  /**
   * Accepts a job into the lane of its queue's active target. A supervisor
   * that does not run the type there forwards the submit to one of that
   * target that does (once: `forwarded` stops a second hop), so payload
   * schemas and per-type defaults always apply.
   */
  async submit(req: SubmitRequest, ctx: SubmitContext = {}): Promise<SubmitReply | JobResult> {
    const { correlationId, forwarded = false, traceparent, authorization, origin } = ctx;
    const { store, log, idempotency } = this.deps;
    // A forwarded submit was checked by its sender, and a tick is a schedule's (it comes with its origin).
    if (req.idempotency_key?.startsWith(TICK_KEY_PREFIX) && !forwarded && !origin) {
      throw new BosunError("validation_error", `idempotency_key: keys beginning "${TICK_KEY_PREFIX}" are the schedules' own, one per tick`);
    }
    if (this.deps.submissionsPaused(req.queue)) {
      throw new BosunError("unavailable", `submissions to queue "${req.queue}" are paused by an operator`, { queue: req.queue });
    }
    // A batch has counted its jobs in already, a forwarded submit was counted by its sender (and is not
    // held twice: neither side paces a forward), and a schedule's tick is claimed once: refused, it would
    // be lost rather than retried; held, late.
    const paced = !ctx.counted && !forwarded && !origin;
    if (paced) await this.deps.pending.admit(req.queue, 1, this.deps.maxPending(req.queue));
    // Checked by a supervisor of the target that runs it: it has the handler, its payload schema and defaults.
    // A forwarded submit was sent here as to a supervisor of the active target its sender saw, and that
    // choice stands: a switch one of the two has seen and the other not yet neither refuses it nor moves it.
    const target = forwarded ? this.deps.target : this.deps.activeTarget(req.queue);
    const ours = this.deps.queues.includes(req.queue) && this.deps.target === target;
    const handler = (ours ? this.deps.handlers.get(req.type) : undefined) ?? this.#remoteHandler(req, forwarded, target);
    if (!handler) {
      const others = forwarded ? [] : this.deps.serversOf(req.type, req.queue, target).filter((w) => w !== this.deps.workerId);
      if (others.length === 0) {
        const where = target === DEFAULT_TARGET ? "" : ` of target "${target}"`;
        throw new BosunError("unknown_type", `no live supervisor${where} serves job type "${req.type}" on queue "${req.queue}"`, { type: req.type, queue: req.queue, target });
      }
      return this.#forwardToAny(others, req, correlationId, traceparent, authorization);
    }
    if (handler.payload) {
      const checked = handler.payload.safeParse(req.payload);
      if (!checked.success) {
        throw new BosunError("validation_error", `payload does not match the schema of "${req.type}": ${summarizeIssues(checked.error.issues)}`, checked.error.issues);
      }
    }
    const lane = laneFor(req.queue, req.tenant ?? null, req.priority ?? 0, target);
    let job = this.#envelope(lane.code, req, handler, correlationId, traceparent, origin);
    // Before anything is written (the lane, the idempotency key, the job): a 413 leaves nothing behind.
    let encoded = encodeJobMessage(this.deps.nc, job);
    await this.deps.lanes.ensure(lane);
    const indexKey = req.idempotency_key === undefined ? undefined : IdempotencyIndex.keyFor(job.tenant, req.idempotency_key);
    let adopted = false;
    if (indexKey) {
      const existing = await this.#existingFor(indexKey, job.job_id, lane.code, IdempotencyIndex.fingerprint(job.type, job.payload));
      if (existing?.adopt) {
        job = { ...job, job_id: existing.jobId };
        encoded = encodeJson(job);
        adopted = true;
      } else if (existing) return this.#replyForExisting(existing.jobId, req.wait_ms);
    }

    // Only a submit about to be written waits its turn: bad input is refused at once, a repeat answered at once.
    if (paced) await this.deps.pace();
    const dueAt = req.run_at ? Date.parse(req.run_at) : req.delay_ms ? Date.now() + req.delay_ms : 0;
    const scheduled = dueAt > Date.now();
    // Subscribe before publishing, so a fast job's result cannot slip past.
    const waiter = req.wait_ms ? this.#waitForResult(job.job_id, req.wait_ms) : undefined;
    try {
      // The one acknowledged write of a submit: the message carries every field of the record.
      // Through an election it is retried for a while (its message id makes that safe).
      const retry = { retryForMs: SUBMIT_RETRY_MS, encoded };
      await (scheduled ? store.schedule(job, 0, dueAt, retry) : store.enqueue(job, 0, "", retry));
    } catch (err) {
      waiter?.cancel();
      // Unavailable: the write may have landed unacknowledged. The key stays claimed then, so a
      // retry finds that job if it did (or takes the stale claim over), never a second job.
      if (indexKey && !adopted && !unavailableOf(err)) await idempotency.release(indexKey).catch(() => undefined);
      throw err;
    }
    const state = scheduled ? "scheduled" : "queued";
    log.debug({ job_id: job.job_id, correlation_id: job.correlation_id, type: job.type, queue: job.queue, state }, "job submitted");
    this.deps.metrics.submitted.inc({ queue: job.queue, type: job.type });
    const reply: SubmitReply = { job_id: job.job_id, state };
    return (await waiter?.result) ?? reply;
  }

  /**
   * Up to MAX_BATCH submits in one request: each entry is validated and
   * accepted on its own (an error where it stands), all written in one
   * flush, the replies in the same order.
   */
  async submitBatch(entries: readonly unknown[], ctx: Omit<SubmitContext, "forwarded" | "origin" | "counted"> = {}): Promise<BatchSubmitReply> {
    // Each entry parsed once, before anything is counted: an entry that is refused anyway counts against no limit.
    const requests = entries.map((entry) => tryParseWith(SubmitRequest, entry));
    // Backpressure refuses a batch whole, before any of it is written: a caller retries one request, not the entries
    // that happened to be left over.
    await this.deps.pending.admitBatch(
      requests.map((r) => (r instanceof BosunError ? undefined : r.queue)),
      this.deps.maxPending,
    );
    const replies = await Promise.all(
      requests.map(async (req) => {
        try {
          if (req instanceof BosunError) throw req;
          if (req.wait_ms !== undefined) throw new BosunError("validation_error", "wait_ms: not in a batch (submit the job on its own to wait for it)");
          return (await this.submit(req, { ...ctx, counted: true })) as SubmitReply;
        } catch (err) {
          const reply = errorReply(err);
          if (reply.body.error.code === "internal_error") this.deps.log.error({ err, endpoint: "jobs_submit_batch" }, "request failed");
          return reply.body;
        }
      }),
    );
    return { jobs: replies };
  }

  /**
   * A job for a queue only remote compute servers serve: accepted with the
   * defaults (their handlers are theirs, so no payload schema applies).
   * Where a supervisor also serves it, the submit goes there for its checks.
   */
  #remoteHandler(req: SubmitRequest, forwarded: boolean, target: string): HandlerDefinition | undefined {
    if (!this.deps.remoteServes(req.queue, target)) return undefined;
    if (!forwarded && this.deps.serversOf(req.type, req.queue, target).some((w) => w !== this.deps.workerId)) return undefined;
    return REMOTE_HANDLER;
  }

  #envelope(
    lane: string,
    req: SubmitRequest,
    handler: HandlerDefinition,
    headerCorrelationId: string | undefined,
    traceparent: string | undefined,
    origin: ScheduleOrigin | undefined,
  ): JobEnvelope {
    const { defaults } = this.deps;
    return {
      job_id: lane + nuid.next(),
      type: req.type,
      queue: req.queue,
      tenant: req.tenant ?? null,
      payload: req.payload,
      timeout_ms: req.timeout_ms ?? handler.timeout_ms ?? defaults.timeout_ms,
      max_attempts: req.max_attempts ?? handler.max_attempts ?? defaults.max_attempts,
      backoff: req.backoff ?? handler.backoff ?? defaults.backoff,
      priority: req.priority ?? 0,
      correlation_id: req.correlation_id ?? headerCorrelationId ?? nuid.next(),
      created_at: new Date().toISOString(),
      generation: 0,
      errors: [],
      owner: null,
      started_at: null,
      ...(traceparent && { traceparent }),
      ...origin,
    };
  }

  /** Whether this supervisor runs jobs of this type on this queue itself (a schedule's ticks are claimed only there). */
  serves(type: string, queue: string): boolean {
    return this.deps.queues.includes(queue) && this.deps.handlers.has(type);
  }

  /**
   * The job a key already names: `{ jobId }` when it is stored; `{ jobId,
   * adopt }` when it is not (yet): its claimer may still be writing it, or
   * got a 503 after an election and left the key claimed. Then this submit
   * writes the job under the claimed id: the job message's id makes the two
   * writes one job, whichever lands. Undefined: the key is this submit's.
   * Another type or payload under the key is a conflict: the caller learns
   * its job was not taken, and which one was.
   */
  async #existingFor(indexKey: string, jobId: string, laneCode: string, fingerprint: string): Promise<{ jobId: string; adopt?: true } | undefined> {
    const { idempotency, store } = this.deps;
    const claim = await idempotency.claim(indexKey, jobId, fingerprint);
    if (claim.claimed) return undefined;
    if (claim.fingerprint && claim.fingerprint !== fingerprint) {
      throw new BosunError("idempotency_conflict", `idempotency key already used by job ${claim.jobId} with another type or payload`, { job_id: claim.jobId });
    }
    const found = await store.status(claim.jobId).catch((err: unknown) => {
      if (err instanceof BosunError && err.code === "not_found") return undefined;
      throw err;
    });
    if (found) return { jobId: claim.jobId };
    // The claimer died before writing its job, or the job is past its retention: take the key over once the claim is stale.
    if (await idempotency.takeOver(indexKey, jobId, fingerprint, claim)) return undefined;
    // Fresh and not stored: written under the claimed id (same lane: the id is built on it; the claim is
    // younger than the job stream's duplicate window, so a write of it that did land makes this one a no-op).
    if (isJobId(claim.jobId) && laneOf(claim.jobId) === laneCode) return { jobId: claim.jobId, adopt: true };
    throw new BosunError("unavailable", "a submit with this idempotency key is still being accepted; retry shortly");
  }

  /** What a repeated submit gets: the first job, finished or not (waiting like the first would). */
  async #replyForExisting(jobId: string, waitMs: number | undefined): Promise<SubmitReply | JobResult> {
    const waiter = waitMs ? this.#waitForResult(jobId, waitMs) : undefined;
    let sources, status;
    try {
      sources = await this.deps.store.sources(jobId);
      status = requireStatus(jobId, sources);
    } catch (err) {
      // Not left waiting for up to wait_ms on a read that failed.
      waiter?.cancel();
      throw err;
    }
    if (sources.final && FINAL_STATES.has(status.state)) {
      waiter?.cancel();
      return waitMs ? resultOf(sources.final) : { job_id: jobId, state: status.state, duplicate: true };
    }
    return (await waiter?.result) ?? { job_id: jobId, state: status.state, duplicate: true };
  }

  /**
   * Forwards to one of the supervisors whose heartbeats say they serve the
   * type, in random order. One that has no subscription on its control
   * subject is no supervisor at all (a spoofed or stale heartbeat): it is
   * forgotten and the next is tried, so it cannot turn a 422 into a 503.
   */
  async #forwardToAny(
    candidates: string[],
    req: SubmitRequest,
    correlationId: string | undefined,
    traceparent: string | undefined,
    authorization: string | undefined,
  ): Promise<SubmitReply | JobResult> {
    const order = [...candidates].sort(() => Math.random() - 0.5);
    for (const workerId of order.slice(0, MAX_FORWARD_TRIES)) {
      const headers = natsHeaders();
      if (correlationId) headers.set(CORRELATION_HEADER, correlationId);
      if (traceparent) headers.set(TRACEPARENT, traceparent);
      if (authorization) headers.set(AUTHORIZATION_HEADER, authorization);
      let reply;
      try {
        reply = await this.deps.nc.request(controlSubject(workerId, "submit"), encodeJson(req), { timeout: (req.wait_ms ?? 0) + FORWARD_TIMEOUT_MS, headers });
      } catch (err) {
        if (err instanceof errors.RequestError && err.isNoResponders()) {
          this.deps.forgetWorker(workerId);
          continue;
        }
        throw new BosunError("unavailable", `supervisor ${workerId}, which serves "${req.type}", did not answer`, undefined, { cause: err });
      }
      return readReply<SubmitReply | JobResult>(reply);
    }
    throw new BosunError("unknown_type", `no live supervisor serves job type "${req.type}" on queue "${req.queue}"`, { type: req.type, queue: req.queue });
  }

  #waitForResult(jobId: string, waitMs: number): { result: Promise<JobResult | undefined>; cancel(): void } {
    const sub = this.deps.nc.subscribe(resultSubject(jobId));
    const timer = setTimeout(() => sub.unsubscribe(), waitMs);
    const result = (async () => {
      // Final records are only ever published for finished jobs; anything else published there is skipped.
      for await (const msg of sub) {
        const record = readInbound(FinalRecord, msg.data, { log: this.deps.log, source: "final record", subject: msg.subject });
        if (record?.job_id === jobId) return resultOf(record);
      }
      return undefined;
    })().finally(() => {
      clearTimeout(timer);
      sub.unsubscribe();
    });
    return { result, cancel: () => sub.unsubscribe() };
  }
}

