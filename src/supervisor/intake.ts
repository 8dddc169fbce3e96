/**
 * Job intake: validates a submit, writes the job's record, publishes it to
 * its queue, and (with wait_ms) waits for its result. Also the read side:
 * status and result lookups.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import { nuid } from "@nats-io/nats-core";
import type { Logger } from "pino";
import {
  BosunError,
  JobResult,
  parseWith,
  resultSubject,
  type Backoff,
  type JobEnvelope,
  type JobStatus,
  type SubmitReply,
  type SubmitRequest,
} from "../contract/index.js";
import type { HandlerDefinition } from "../actors/handlers.js";
import type { JobStore } from "./store.js";

export interface JobDefaults {
  timeout_ms: number;
  max_attempts: number;
  backoff: Backoff;
}

export interface IntakeDeps {
  nc: NatsConnection;
  store: JobStore;
  handlers: ReadonlyMap<string, HandlerDefinition>;
  queues: readonly string[];
  /** Whether a live supervisor (maybe another one) serves this type on this queue. */
  servedElsewhere(type: string, queue: string): boolean;
  defaults: JobDefaults;
  log: Logger;
}

const decoder = new TextDecoder();

export class Intake {
  constructor(private readonly deps: IntakeDeps) {}

  async submit(req: SubmitRequest, headerCorrelationId?: string): Promise<SubmitReply | JobResult> {
    const { store, log } = this.deps;
    const handler = this.#handlerFor(req.type, req.queue);
    if (handler?.payload) {
      const checked = handler.payload.safeParse(req.payload);
      if (!checked.success) throw new BosunError("validation_error", `payload does not match the schema of "${req.type}"`, checked.error.issues);
    }
    const defaults = this.deps.defaults;
    const now = new Date().toISOString();
    const envelope: JobEnvelope = {
      job_id: nuid.next(),
      type: req.type,
      queue: req.queue,
      tenant: req.tenant ?? null,
      payload: req.payload,
      timeout_ms: req.timeout_ms ?? handler?.timeout_ms ?? defaults.timeout_ms,
      max_attempts: req.max_attempts ?? handler?.max_attempts ?? defaults.max_attempts,
      backoff: req.backoff ?? handler?.backoff ?? defaults.backoff,
      priority: req.priority ?? 0,
      correlation_id: req.correlation_id ?? headerCorrelationId ?? nuid.next(),
      created_at: now,
    };
    const record: JobStatus = {
      job_id: envelope.job_id,
      type: envelope.type,
      queue: envelope.queue,
      tenant: envelope.tenant,
      state: "queued",
      attempts: 0,
      max_attempts: envelope.max_attempts,
      created_at: now,
      started_at: null,
      finished_at: null,
      owner: null,
      progress: null,
      error: null,
      correlation_id: envelope.correlation_id,
    };
    // Subscribe before publishing, so a fast job's result cannot slip past.
    const waiter = req.wait_ms ? this.#waitForResult(envelope.job_id, req.wait_ms) : undefined;
    try {
      // Both writes leave in one flush; the server stores them in this order. A fresh
      // nuid never collides, so the create cannot fail where the enqueue succeeds.
      await Promise.all([store.create(record), store.enqueue(envelope, 0)]);
    } catch (err) {
      waiter?.cancel();
      throw err;
    }
    log.info({ job_id: envelope.job_id, correlation_id: envelope.correlation_id, type: envelope.type, queue: envelope.queue }, "job submitted");
    const reply: SubmitReply = { job_id: envelope.job_id, state: record.state };
    return (await waiter?.result) ?? reply;
  }

  async result(jobId: string): Promise<JobResult> {
    const result = await this.deps.store.getResult(jobId);
    if (result) return result;
    const record = await this.deps.store.require(jobId);
    throw new BosunError("not_finished", `job ${jobId} is ${record.state}`, { state: record.state });
  }

  #handlerFor(type: string, queue: string): HandlerDefinition | undefined {
    const local = this.deps.queues.includes(queue) ? this.deps.handlers.get(type) : undefined;
    if (local || this.deps.servedElsewhere(type, queue)) return local;
    throw new BosunError("unknown_type", `no live supervisor serves job type "${type}" on queue "${queue}"`, { type, queue });
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
