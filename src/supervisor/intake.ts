/**
 * Job intake and job commands: validates a submit, writes the job's record,
 * publishes it to its queue (or parks it until due), and with wait_ms waits
 * for its result. Also status, result, cancel, retry and list.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import { headers as natsHeaders, nuid } from "@nats-io/nats-core";
import type { Logger } from "pino";
import {
  BosunError,
  controlSubject,
  CORRELATION_HEADER,
  encodeJson,
  FINAL_STATES,
  JobResult,
  parseWith,
  resultSubject,
  type Backoff,
  type CancelReply,
  type JobEnvelope,
  type ListJobsRequest,
  type SubmitReply,
  type SubmitRequest,
} from "../contract/index.js";
import type { HandlerDefinition } from "../actors/handlers.js";
import type { CancelRegistry } from "./cancels.js";
import { IdempotencyIndex } from "./idempotency.js";
import { recordOf } from "./records.js";
import type { JobStore } from "./store.js";
import { readReply } from "../platform/nats.js";
import type { SupervisorMetrics } from "../platform/metrics.js";

export interface JobDefaults {
  timeout_ms: number;
  max_attempts: number;
  backoff: Backoff;
}

export interface IntakeDeps {
  nc: NatsConnection;
  store: JobStore;
  cancels: CancelRegistry;
  idempotency: IdempotencyIndex;
  handlers: ReadonlyMap<string, HandlerDefinition>;
  queues: readonly string[];
  workerId: string;
  /** Live supervisors serving this type on this queue (this one included). */
  serversOf(type: string, queue: string): string[];
  /** The ops flag: submits to this queue are refused for now. */
  submissionsPaused(queue: string): boolean;
  defaults: JobDefaults;
  metrics: SupervisorMetrics;
  log: Logger;
}

const decoder = new TextDecoder();
const FORWARD_TIMEOUT_MS = 5000;
/**
 * How long a submit keeps retrying writes the stream cannot take (a leader
 * election takes 4-9 s, up to ~16 s after a partition heals), then answers
 * 503 with Retry-After; within the gateway's default 5 s request timeout.
 */
export const SUBMIT_RETRY_MS = 4000;

export class Intake {
  constructor(private readonly deps: IntakeDeps) {}

  /**
   * Accepts a job. A supervisor without the handler forwards the submit to
   * one that has it (once: `forwarded` stops a second hop), so payload
   * schemas and per-type defaults always apply.
   */
  async submit(req: SubmitRequest, headerCorrelationId?: string, forwarded = false): Promise<SubmitReply | JobResult> {
    const { store, log, idempotency } = this.deps;
    if (this.deps.submissionsPaused(req.queue)) {
      throw new BosunError("unavailable", `submissions to queue "${req.queue}" are paused by an operator`, { queue: req.queue });
    }
    const handler = this.deps.queues.includes(req.queue) ? this.deps.handlers.get(req.type) : undefined;
    if (!handler) {
      const others = forwarded ? [] : this.deps.serversOf(req.type, req.queue).filter((w) => w !== this.deps.workerId);
      if (others.length === 0) {
        throw new BosunError("unknown_type", `no live supervisor serves job type "${req.type}" on queue "${req.queue}"`, { type: req.type, queue: req.queue });
      }
      return this.#forward(others[Math.floor(Math.random() * others.length)]!, req, headerCorrelationId);
    }
    if (handler.payload) {
      const checked = handler.payload.safeParse(req.payload);
      if (!checked.success) throw new BosunError("validation_error", `payload does not match the schema of "${req.type}"`, checked.error.issues);
    }
    const job = this.#envelope(req, handler, headerCorrelationId);
    const indexKey = req.idempotency_key === undefined ? undefined : IdempotencyIndex.keyFor(job.tenant, req.idempotency_key);
    if (indexKey) {
      const existing = await this.#existingFor(indexKey, job.job_id);
      if (existing) return this.#replyForExisting(existing, req.wait_ms);
    }

    const dueAt = req.run_at ? Date.parse(req.run_at) : req.delay_ms ? Date.now() + req.delay_ms : 0;
    const scheduled = dueAt > Date.now();
    const record = recordOf(job, scheduled ? "scheduled" : "queued", 0);
    // Subscribe before publishing, so a fast job's result cannot slip past.
    const waiter = req.wait_ms ? this.#waitForResult(job.job_id, req.wait_ms) : undefined;
    try {
      // Both writes leave in one flush; the server stores them in this order. A fresh
      // nuid never collides, so the create cannot fail where the publish succeeds.
      // Through an election both are retried for a while (their message ids make that safe).
      const retry = { retryForMs: SUBMIT_RETRY_MS };
      await Promise.all([store.create(record, retry), scheduled ? store.schedule(job, 0, dueAt, retry) : store.enqueue(job, 0, "", retry)]);
    } catch (err) {
      waiter?.cancel();
      if (indexKey) await idempotency.release(indexKey).catch(() => undefined);
      throw err;
    }
    log.debug({ job_id: job.job_id, correlation_id: job.correlation_id, type: job.type, queue: job.queue, state: record.state }, "job submitted");
    this.deps.metrics.submitted.inc({ queue: job.queue, type: job.type });
    const reply: SubmitReply = { job_id: job.job_id, state: record.state };
    return (await waiter?.result) ?? reply;
  }

  async result(jobId: string): Promise<JobResult> {
    const result = await this.deps.store.getResult(jobId);
    if (result) return result;
    const { record } = await this.deps.store.require(jobId);
    throw new BosunError("not_finished", `job ${jobId} is ${record.state}`, { state: record.state });
  }

  /**
   * A queued or scheduled job never runs; a running one has its process
   * killed by whichever supervisor runs it. Cancelling twice is harmless;
   * cancelling a finished job is a conflict that changes nothing.
   */
  async cancel(jobId: string): Promise<CancelReply> {
    const { store, cancels, log } = this.deps;
    const { record, revision } = await store.current(jobId);
    if (record.state === "cancelled") return { job_id: jobId, state: "cancelled" };
    if (FINAL_STATES.has(record.state)) throw new BosunError("conflict", `job ${jobId} is ${record.state} already`, { state: record.state });
    await cancels.request(jobId);
    log.info({ job_id: jobId, correlation_id: record.correlation_id, state: record.state }, "job cancel requested");
    if (record.state === "running") return { job_id: jobId, state: "running", cancel_requested: true };
    const claimed = await store.claimResult({
      job_id: jobId,
      state: "cancelled",
      result: null,
      error: cancelledError,
      attempts: record.attempts,
      duration_ms: null,
      correlation_id: record.correlation_id,
    });
    if (!claimed) {
      // It ran and finished meanwhile (fast jobs never show as running).
      const now = await store.status(jobId);
      if (now.state === "cancelled") return { job_id: jobId, state: "cancelled" };
      throw new BosunError("conflict", `job ${jobId} is ${now.state} already`, { state: now.state });
    }
    try {
      await store.update({ ...record, state: "cancelled", owner: null, finished_at: new Date().toISOString() }, revision);
    } catch (err) {
      // It started meanwhile: the supervisor running it sees the request, kills it and finishes the record.
      if (!(err instanceof BosunError && err.code === "conflict")) throw err;
    }
    this.deps.metrics.cancelled.inc({ queue: record.queue, type: record.type });
    return { job_id: jobId, state: "cancelled" };
  }

  /** Requeues a dead job with fresh attempts (its dead letter keeps the old errors). */
  async retry(jobId: string): Promise<SubmitReply> {
    const { store, log } = this.deps;
    const { record, revision } = await store.current(jobId);
    if (record.state !== "dead") {
      throw new BosunError("conflict", `only dead jobs can be retried; job ${jobId} is ${record.state}`, { state: record.state });
    }
    const dead = await store.deadLetter(record.queue, jobId);
    if (!dead) throw new BosunError("conflict", `job ${jobId} has no dead letter to retry from`);
    const job: JobEnvelope = { ...dead.letter.job, generation: dead.letter.job.generation + 1, errors: [] };
    const deadResult = (await store.storedResult(jobId))?.seq;
    // Queued first, so no crash after this point can lose the job: the message id (job,
    // generation, attempt) makes a concurrent retry of the same dead job the same message.
    // The record then claims the retry; the old result and dead letter go last, by sequence,
    // so a new run's result or dead letter written meanwhile stays.
    await store.enqueue(job, 0);
    try {
      await store.update(recordOf(job, "queued", 0), revision);
    } catch (err) {
      // Changed meanwhile: by the new run already, or by a concurrent retry of the same job.
      if (!(err instanceof BosunError && err.code === "conflict") || (await store.current(jobId)).record.state === "dead") throw err;
    }
    if (deadResult !== undefined) await store.dropResult(deadResult);
    await store.dropDeadLetter(dead.seq);
    log.info({ job_id: jobId, correlation_id: job.correlation_id, generation: job.generation }, "dead job requeued");
    return { job_id: jobId, state: "queued" };
  }

  list(filter: ListJobsRequest) {
    return this.deps.store.list(filter);
  }

  #envelope(req: SubmitRequest, handler: HandlerDefinition, headerCorrelationId: string | undefined): JobEnvelope {
    const { defaults } = this.deps;
    return {
      job_id: nuid.next(),
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
    };
  }

  /** The job an idempotency key already points at, or undefined once this submit holds the key. */
  async #existingFor(indexKey: string, jobId: string): Promise<string | undefined> {
    const { idempotency, store } = this.deps;
    const claim = await idempotency.claim(indexKey, jobId);
    if (claim.claimed) return undefined;
    if (await store.get(claim.jobId)) return claim.jobId;
    // The claimer died before writing its job: take the key over once the claim is stale.
    if (await idempotency.takeOver(indexKey, jobId, claim)) return undefined;
    throw new BosunError("unavailable", "a submit with this idempotency key is still being accepted; retry shortly");
  }

  /** What a repeated submit gets: the first job, finished or not (waiting like the first would). */
  async #replyForExisting(jobId: string, waitMs: number | undefined): Promise<SubmitReply | JobResult> {
    const waiter = waitMs ? this.#waitForResult(jobId, waitMs) : undefined;
    const finished = await this.deps.store.getResult(jobId);
    if (finished) {
      waiter?.cancel();
      return waitMs ? finished : { job_id: jobId, state: finished.state, duplicate: true };
    }
    const state = (await this.deps.store.status(jobId)).state;
    return (await waiter?.result) ?? { job_id: jobId, state, duplicate: true };
  }

  async #forward(workerId: string, req: SubmitRequest, correlationId: string | undefined): Promise<SubmitReply | JobResult> {
    const headers = natsHeaders();
    if (correlationId) headers.set(CORRELATION_HEADER, correlationId);
    let reply;
    try {
      reply = await this.deps.nc.request(controlSubject(workerId, "submit"), encodeJson(req), { timeout: (req.wait_ms ?? 0) + FORWARD_TIMEOUT_MS, headers });
    } catch (err) {
      throw new BosunError("unavailable", `supervisor ${workerId}, which serves "${req.type}", did not answer`, undefined, { cause: err });
    }
    return readReply<SubmitReply | JobResult>(reply);
  }

  #waitForResult(jobId: string, waitMs: number): { result: Promise<JobResult | undefined>; cancel(): void } {
    const sub = this.deps.nc.subscribe(resultSubject(jobId), { max: 1 });
    const timer = setTimeout(() => sub.unsubscribe(), waitMs);
    const result = (async () => {
      // Results are only ever published for finished jobs.
      for await (const msg of sub) return parseWith(JobResult, JSON.parse(decoder.decode(msg.data)));
      return undefined;
    })().finally(() => clearTimeout(timer));
    return { result, cancel: () => sub.unsubscribe() };
  }
}

export const cancelledError = { code: "cancelled", message: "job was cancelled" } as const;
