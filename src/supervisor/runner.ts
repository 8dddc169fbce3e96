/**
 * The execution side of a supervisor: pulls jobs from its queues' consumers
 * only while it has free execution processes, runs each on the pool, stores
 * the outcome durably and only then acks the message.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import type { Logger } from "pino";
import {
  JobEnvelope,
  parseWith,
  queueConsumer,
  streams,
  type JobError,
  type JobResult,
  type JobStatus,
} from "../contract/index.js";
import type { ExecutionOutcome, Pool } from "./pool.js";
import { JobMessage, Puller } from "./puller.js";
import { ATTEMPT_OFFSET_HEADER, type JobStore } from "./store.js";

const decoder = new TextDecoder();
/** Progress reports are written to the job record at most this often. */
const PROGRESS_WRITE_GAP_MS = 250;

export interface RunnerOptions {
  workerId: string;
  queues: readonly string[];
  leaseMs: number;
  log: Logger;
}

export type RunnerState = "running" | "draining" | "stopped";

export class Runner {
  readonly #pullers: Puller[];
  /** Jobs received and not yet ended (they hold a process or are about to). */
  #executing = 0;
  /** Jobs received whose outcome is not yet stored and acked. */
  #unsettled = 0;
  #next = 0;
  #state: RunnerState = "running";
  #idle: (() => void) | undefined;
  /** Messages whose jobs are running: their ack deadline is pushed back together, on one timer. */
  readonly #leased = new Set<JobMessage>();
  #leaseTimer: NodeJS.Timeout | undefined;

  constructor(
    nc: NatsConnection,
    private readonly store: JobStore,
    private readonly pool: Pool,
    private readonly opts: RunnerOptions,
  ) {
    // One queue can wait on the server for the whole expiry while holding a credit; with
    // several queues keep that short so an idle queue does not starve a busy one.
    const expiresMs = opts.queues.length > 1 ? 1000 : 10_000;
    this.#pullers = opts.queues.map(
      (queue) =>
        new Puller(nc, {
          stream: streams.jobs,
          consumer: queueConsumer(queue),
          expiresMs,
          log: opts.log,
          onJob: (msg) => void this.#onJob(msg),
        }),
    );
  }

  get state(): RunnerState {
    return this.#state;
  }

  start(): void {
    this.#leaseTimer = setInterval(() => {
      for (const msg of this.#leased) msg.working();
    }, Math.max(250, Math.floor(this.opts.leaseMs / 3)));
    this.refill();
  }

  /** Asks the server for as many jobs as there are free processes not already asked for. */
  refill(): void {
    if (this.#state !== "running") return;
    const outstanding = this.#pullers.reduce((n, p) => n + p.outstanding, 0);
    let credits = this.pool.capacity - this.#executing - outstanding;
    // Spread credits over the queues, starting at a rotating one so none starves.
    for (let i = 0; credits > 0 && i < this.#pullers.length; i++) {
      const share = Math.ceil(credits / (this.#pullers.length - i));
      this.#pullers[(this.#next + i) % this.#pullers.length]!.pull(share);
      credits -= share;
    }
    this.#next = (this.#next + 1) % this.#pullers.length;
  }

  /** After a reconnect the server may have forgotten our pull requests. */
  reconnected(): void {
    for (const p of this.#pullers) p.reset();
    this.refill();
  }

  /** Stops pulling and waits until every job in flight has been settled. */
  async drain(): Promise<void> {
    this.#state = "draining";
    if (this.#unsettled > 0) await new Promise<void>((resolve) => (this.#idle = resolve));
  }

  async stop(): Promise<void> {
    this.#state = "stopped";
    clearInterval(this.#leaseTimer);
    await Promise.all(this.#pullers.map((p) => p.close()));
  }

  async #onJob(msg: JobMessage): Promise<void> {
    if (this.#state !== "running") {
      // Arrived after intake stopped: hand it straight back for another supervisor.
      msg.nak();
      return;
    }
    this.#executing++;
    this.#unsettled++;
    // The slot is free as soon as the job has ended, before its outcome is stored,
    // so pulling the next job overlaps with that write.
    let released = false;
    const releaseSlot = () => {
      if (released) return;
      released = true;
      this.#executing--;
      this.refill();
    };
    try {
      await this.#run(msg, releaseSlot);
    } catch (err) {
      // Not acked: JetStream redelivers it once the lease lapses.
      this.opts.log.error({ err }, "job handling failed; it will be redelivered");
    } finally {
      releaseSlot();
      this.#unsettled--;
      if (this.#idle && this.#unsettled === 0) this.#idle();
    }
  }

  async #run(msg: JobMessage, releaseSlot: () => void): Promise<void> {
    const { log, workerId } = this.opts;
    let job: JobEnvelope;
    try {
      job = parseWith(JobEnvelope, JSON.parse(decoder.decode(msg.data)));
    } catch (err) {
      log.error({ err, seq: msg.streamSeq }, "dropping a malformed job message");
      msg.term();
      return;
    }
    const attempt = Number(msg.header(ATTEMPT_OFFSET_HEADER) ?? 0) + msg.deliveryCount;
    const logCtx = { job_id: job.job_id, correlation_id: job.correlation_id, attempt };
    const record = this.#baseRecord(job, attempt);

    if (attempt > job.max_attempts) {
      // Every attempt was used by runs that never reported back (crashed supervisors).
      await this.#settle(msg, job, record, { ok: false, error: { code: "attempts_exhausted", message: "attempts used up by lost runs" }, duration_ms: 0 });
      return;
    }

    this.#leased.add(msg);
    try {
      let lastProgressWrite = 0;
      const handle = await this.pool.execute(
        { job_id: job.job_id, type: job.type, payload: job.payload, attempt, correlation_id: job.correlation_id },
        job.timeout_ms,
        (progress) => {
          record.progress = progress;
          if (Date.now() - lastProgressWrite < PROGRESS_WRITE_GAP_MS) return;
          lastProgressWrite = Date.now();
          this.store.putInterim(record);
        },
      );
      record.state = "running";
      record.owner = { worker_id: workerId, pid: handle.pid };
      this.store.putInterim(record);
      log.debug({ ...logCtx, child_pid: handle.pid, type: job.type }, "job started");
      const outcome = await handle.outcome;
      releaseSlot();
      await this.#settle(msg, job, record, outcome);
    } finally {
      this.#leased.delete(msg);
    }
  }

  #baseRecord(job: JobEnvelope, attempt: number): JobStatus {
    return {
      job_id: job.job_id,
      type: job.type,
      queue: job.queue,
      tenant: job.tenant,
      state: "running",
      attempts: attempt,
      max_attempts: job.max_attempts,
      created_at: job.created_at,
      started_at: new Date().toISOString(),
      finished_at: null,
      owner: null,
      progress: null,
      error: null,
      correlation_id: job.correlation_id,
    };
  }

  /** Stores the attempt's outcome, then acks: a crash before the ack reruns the job, never loses it. */
  async #settle(msg: JobMessage, job: JobEnvelope, record: JobStatus, outcome: ExecutionOutcome): Promise<void> {
    const { log } = this.opts;
    const logCtx = { job_id: job.job_id, correlation_id: job.correlation_id, attempt: record.attempts };
    const finishedAt = new Date().toISOString();
    if (outcome.ok) {
      await this.#finish(record, { state: "succeeded", finished_at: finishedAt, progress: 1 }, outcome.value, null, outcome.duration_ms);
      log.info({ ...logCtx, duration_ms: outcome.duration_ms }, "job succeeded");
    } else if (record.attempts < job.max_attempts) {
      await this.store.enqueue(job, record.attempts);
      await this.store.put({ ...record, state: "queued", owner: null, error: outcome.error });
      log.warn({ ...logCtx, error: outcome.error }, "job attempt failed; requeued");
    } else {
      await this.#finish(record, { state: "dead", finished_at: finishedAt }, null, outcome.error, outcome.duration_ms);
      log.warn({ ...logCtx, error: outcome.error }, "job dead: attempts used up");
    }
    msg.ack();
  }

  async #finish(record: JobStatus, change: Partial<JobStatus>, value: unknown, error: JobError | null, durationMs: number): Promise<void> {
    const final: JobStatus = { ...record, ...change, error };
    const result: JobResult = {
      job_id: record.job_id,
      state: final.state,
      result: (value ?? null) as JobResult["result"],
      error,
      attempts: record.attempts,
      duration_ms: durationMs,
    };
    // The result is the durable outcome; the record follows it on the same connection
    // without an ack of its own (status reads fall back on the result, see JobStore.status).
    const stored = this.store.publishResult(result);
    this.store.putInterim(final);
    await stored;
  }
}
