/**
 * Job intake and job commands: validates a submit, writes the job (one
 * acknowledged write: its message, queued or parked until due), and with
 * wait_ms waits for its result. Also batch submit, status, result, cancel,
 * retry and list.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import { nuid } from "@nats-io/nats-core";
import type { Logger } from "pino";
import {
  BosunError,
  FINAL_STATES,
  errorReply,
  FinalRecord,
  isJobId,
  laneOf,
  parseWith,
  resultSubject,
  streams,
  SubmitQueue,
  SubmitRequest,
  summarizeIssues,
  type Backoff,
  type BatchSubmitReply,
  type CancelReply,
  type JobEnvelope,
  type JobResult,
  type JobStatus,
  type ListJobsReply,
  type ListJobsRequest,
  type ScheduleOrigin,
  type SubmitReply,
} from "../contract/index.js";
import type { HandlerDefinition } from "../actors/handlers.js";
import {
  IdempotencyIndex,
  laneFor,
  listJobs,
  requireStatus,
  resultOf,
  type CancelRegistry,
  type JobStore,
  type LaneRegistry,
} from "../records/index.js";
import { assertFitsJobMessage } from "../platform/nats.js";
import { unavailableOf } from "../platform/nats-errors.js";
import { readInbound } from "../platform/guard.js";
import type { SupervisorMetrics } from "../platform/metrics.js";
import type { PendingCounts } from "./pending-counts.js";
import { forwardToAny, routeSubmit, type RouteDeps } from "./submit-route.js";

export interface JobDefaults {
  timeout_ms: number;
  max_attempts: number;
  backoff: Backoff;
}

export interface IntakeDeps extends Omit<RouteDeps, "remoteServes"> {
  nc: NatsConnection;
  store: JobStore;
  lanes: LaneRegistry;
  cancels: CancelRegistry;
  idempotency: IdempotencyIndex;
  /** Whether remote compute servers serve this queue for this target (default: none do). */
  remoteServes?(queue: string, target: string): boolean;
  /** The ops flag: submits to this queue are refused for now. */
  submissionsPaused(queue: string): boolean;
  /** The queue's max_pending from the ops flags, if set. */
  maxPending(queue: string): number | undefined;
  pending: PendingCounts;
  defaults: JobDefaults;
  metrics: SupervisorMetrics;
  log: Logger;
}

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
  readonly #route: RouteDeps;

  constructor(private readonly deps: IntakeDeps) {
    this.#route = { ...deps, remoteServes: deps.remoteServes ?? (() => false) };
  }

  /**
   * Accepts a job into the lane of its queue's active target. A supervisor
   * that does not run the type there forwards the submit to one of that
   * target that does (once: `forwarded` stops a second hop), so payload
   * schemas and per-type defaults always apply (submit-route.ts).
   */
  async submit(req: SubmitRequest, ctx: SubmitContext = {}): Promise<SubmitReply | JobResult> {
    const { correlationId, forwarded = false, traceparent, authorization, origin } = ctx;
    const { store, log, idempotency } = this.deps;
    if (this.deps.submissionsPaused(req.queue)) {
      throw new BosunError("unavailable", `submissions to queue "${req.queue}" are paused by an operator`, { queue: req.queue });
    }
    // A batch has counted its jobs in already, a forwarded submit was counted by its sender, and a
    // schedule's tick is claimed once: refused, it would be lost rather than retried.
    if (!ctx.counted && !forwarded && !origin) await this.deps.pending.admit(req.queue, 1, this.deps.maxPending(req.queue));
    const route = routeSubmit(this.#route, req, forwarded);
    if (route.kind === "forward") return forwardToAny(this.#route, route, req, { correlationId, traceparent, authorization });
    const { handler, target } = route;
    if (handler?.payload) {
      const checked = handler.payload.safeParse(req.payload);
      if (!checked.success) {
        throw new BosunError("validation_error", `payload does not match the schema of "${req.type}": ${summarizeIssues(checked.error.issues)}`, checked.error.issues);
      }
    }
    const lane = laneFor(req.queue, req.tenant ?? null, req.priority ?? 0, target);
    let job = this.#envelope(lane.code, req, handler, correlationId, traceparent, origin);
    // Before anything is written (the lane, the idempotency key, the job): a 413 leaves nothing behind.
    assertFitsJobMessage(this.deps.nc, job);
    await this.deps.lanes.ensure(lane);
    const indexKey = req.idempotency_key === undefined ? undefined : IdempotencyIndex.keyFor(job.tenant, req.idempotency_key);
    let adopted = false;
    if (indexKey) {
      const existing = await this.#existingFor(indexKey, job.job_id, lane.code, IdempotencyIndex.fingerprint(job.type, job.payload));
      if (existing?.adopt) {
        job = { ...job, job_id: existing.jobId };
        adopted = true;
      } else if (existing) return this.#replyForExisting(existing.jobId, req.wait_ms);
    }

    const dueAt = req.run_at ? Date.parse(req.run_at) : req.delay_ms ? Date.now() + req.delay_ms : 0;
    const scheduled = dueAt > Date.now();
    // Subscribe before publishing, so a fast job's result cannot slip past.
    const waiter = req.wait_ms ? this.#waitForResult(job.job_id, req.wait_ms) : undefined;
    try {
      // The one acknowledged write of a submit: the message carries every field of the record.
      // Through an election it is retried for a while (its message id makes that safe).
      const retry = { retryForMs: SUBMIT_RETRY_MS };
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
    // Backpressure refuses a batch whole, before any of it is written: a caller retries one request, not the entries
    // that happened to be left over.
    await this.deps.pending.admitBatch(entries.map((e) => SubmitQueue.safeParse(e).data?.queue), this.deps.maxPending);
    const replies = await Promise.all(
      entries.map(async (entry) => {
        try {
          const req = parseWith(SubmitRequest, entry);
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

  async status(jobId: string): Promise<JobStatus> {
    return this.deps.store.status(jobId);
  }

  async result(jobId: string): Promise<JobResult> {
    const { store } = this.deps;
    const sources = await store.sources(jobId);
    const status = requireStatus(jobId, sources);
    if (sources.final && FINAL_STATES.has(status.state)) return resultOf(sources.final);
    throw new BosunError("not_finished", `job ${jobId} is ${status.state}`, { state: status.state });
  }

  /**
   * A queued or scheduled job never runs (its message is removed); a running
   * one has its process killed by whichever supervisor runs it. Cancelling
   * twice is harmless; cancelling a finished job is a conflict that changes
   * nothing.
   */
  async cancel(jobId: string): Promise<CancelReply> {
    const { store, cancels, log } = this.deps;
    const sources = await store.sources(jobId);
    const record = requireStatus(jobId, sources);
    if (record.state === "cancelled") return { job_id: jobId, state: "cancelled" };
    if (FINAL_STATES.has(record.state)) throw new BosunError("conflict", `job ${jobId} is ${record.state} already`, { state: record.state });
    await cancels.request(jobId);
    log.info({ job_id: jobId, correlation_id: record.correlation_id, state: record.state }, "job cancel requested");
    if (record.state === "running") return { job_id: jobId, state: "running", cancel_requested: true };
    const waiting = (sources.queued ?? sources.scheduled)?.job;
    const generation = waiting?.generation ?? 0;
    const claimed = await store.claimResult({
      ...record,
      state: "cancelled",
      owner: record.owner,
      error: cancelledError,
      finished_at: new Date().toISOString(),
      progress: record.progress,
      result: null,
      duration_ms: null,
      generation,
    }, { traceparent: waiting?.traceparent });
    if (!claimed) {
      // It ran and finished meanwhile (fast jobs never show as running).
      const now = await store.status(jobId);
      if (now.state === "cancelled") return { job_id: jobId, state: "cancelled" };
      throw new BosunError("conflict", `job ${jobId} is ${now.state} already`, { state: now.state });
    }
    // Its messages go, so it counts nowhere as waiting; a copy already in a supervisor's
    // hands finds the request (kept a while after this) and is dropped unrun.
    if (sources.seqs.queued !== undefined) await store.drop(streams.jobs, sources.seqs.queued);
    if (sources.seqs.scheduled !== undefined) await store.drop(streams.scheduled, sources.seqs.scheduled);
    cancels.releaseLater(jobId);
    this.deps.metrics.cancelled.inc({ queue: record.queue, type: record.type });
    return { job_id: jobId, state: "cancelled" };
  }

  /** Requeues a dead job with fresh attempts (its dead letter keeps the old errors). */
  async retry(jobId: string): Promise<SubmitReply> {
    const { store, log } = this.deps;
    const sources = await store.sources(jobId);
    const record = requireStatus(jobId, sources);
    if (record.state !== "dead") {
      throw new BosunError("conflict", `only dead jobs can be retried; job ${jobId} is ${record.state}`, { state: record.state });
    }
    const dead = await store.deadLetter(jobId);
    if (!dead) throw new BosunError("conflict", `job ${jobId} has no dead letter to retry from`);
    const job: JobEnvelope = { ...dead.letter.job, generation: dead.letter.job.generation + 1, errors: [], owner: null, started_at: null };
    // Queued first, so no crash after this point can lose the job: the message id (job,
    // generation, attempt) makes a concurrent retry of the same dead job the same message,
    // and its newer generation outranks the old final record for every reader. The old
    // final record and dead letter go last, by sequence, so a new death meanwhile stays.
    await store.enqueue(job, 0);
    if (sources.seqs.final !== undefined) await store.drop(streams.results, sources.seqs.final);
    await store.drop(streams.dead, dead.seq);
    log.info({ job_id: jobId, correlation_id: job.correlation_id, generation: job.generation }, "dead job requeued");
    return { job_id: jobId, state: "queued" };
  }

  list(filter: ListJobsRequest): Promise<ListJobsReply> {
    return listJobs(this.deps.store.jsm, this.deps.store.log, this.deps.lanes, filter);
  }

  #envelope(
    lane: string,
    req: SubmitRequest,
    handler: HandlerDefinition | undefined,
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
      timeout_ms: req.timeout_ms ?? handler?.timeout_ms ?? defaults.timeout_ms,
      max_attempts: req.max_attempts ?? handler?.max_attempts ?? defaults.max_attempts,
      backoff: req.backoff ?? handler?.backoff ?? defaults.backoff,
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
   * The job an idempotency key already points at, or undefined once this
   * submit holds the key. Another type or payload under the key is a
   * conflict: the caller learns its job was not taken, and which one was.
   */
  /**
   * The job a key already names: `{ jobId }` when it is stored; `{ jobId,
   * adopt }` when it is not (yet): its claimer may still be writing it, or
   * got a 503 after an election and left the key claimed. Then this submit
   * writes the job under the claimed id: the job message's id makes the two
   * writes one job, whichever lands. Undefined: the key is this submit's.
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
    const sources = await this.deps.store.sources(jobId);
    const status = requireStatus(jobId, sources);
    if (sources.final && FINAL_STATES.has(status.state)) {
      waiter?.cancel();
      return waitMs ? resultOf(sources.final) : { job_id: jobId, state: status.state, duplicate: true };
    }
    return (await waiter?.result) ?? { job_id: jobId, state: status.state, duplicate: true };
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

export const cancelledError = { code: "cancelled", message: "job was cancelled" } as const;
