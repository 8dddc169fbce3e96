/**
 * The execution side of a supervisor: pulls jobs from its queues' consumers
 * only while it has free execution processes, runs each on the pool, stores
 * the outcome durably and only then acks the message.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import type { Logger } from "pino";
import {
  headerNames,
  JobEnvelope,
  parseWith,
  queueConsumer,
  streams,
  type JobError,
  type JobStatus,
} from "../contract/index.js";
import { backoffDelay } from "./backoff.js";
import type { CancelRegistry } from "./cancels.js";
import { cancelledError } from "./intake.js";
import { NotStartedError, type ExecutionHandle, type ExecutionOutcome, type Pool } from "./pool.js";
import { OutcomeGate } from "./outcome-gate.js";
import { UncountedRuns } from "./uncounted.js";
import { JobMessage, Puller } from "./puller.js";
import { recordOf } from "./records.js";
import type { JobStore } from "./store.js";
import type { SupervisorMetrics } from "../platform/metrics.js";

const decoder = new TextDecoder();
/** Progress reports are written to the job record at most this often. */
const PROGRESS_WRITE_GAP_MS = 250;
/**
 * A job shows as running once it has run this long. Most jobs finish sooner,
 * and for them the result alone is the durable outcome: two record writes
 * fewer per job (status reads put record and result together).
 */
const RUNNING_RECORD_DELAY_MS = 20;
/**
 * While this supervisor's jobs run shorter than this (a moving average), it
 * holds up to a pool's worth of jobs beyond its free processes: a job held
 * back waits about one run, and no process idles through a pull round trip.
 * Longer jobs, or a run going long now, stop it: jobs are then pulled only
 * for free processes. A job pulled ahead that finds no free process within
 * PULLED_AHEAD_MAX_WAIT_MS is handed back (no attempt used) for a supervisor
 * with room, so none waits behind a long run.
 */
const PULL_AHEAD_MAX_RUN_MS = 50;
const PULLED_AHEAD_MAX_WAIT_MS = 2 * PULL_AHEAD_MAX_RUN_MS;
const RUN_MS_WEIGHT = 0.2;

export interface RunnerOptions {
  workerId: string;
  metrics: SupervisorMetrics;
  cancels: CancelRegistry;
  queues: readonly string[];
  leaseMs: number;
  log: Logger;
  /** Resolves once an acknowledged write gets through (this node reaches the cluster's majority). */
  canStoreOutcomes(): Promise<unknown>;
}

export type RunnerState = "running" | "draining" | "stopped";

export class Runner {
  readonly #pullers: Puller[];
  /** Jobs received and not yet ended (they hold a process or are about to). */
  #executing = 0;
  /** Jobs received whose outcome is not yet stored and acked. */
  #unsettled = 0;
  /** Closed while job outcomes cannot be stored: nothing is pulled or started then. */
  readonly #gate: OutcomeGate;
  readonly #uncounted: UncountedRuns;
  #next = 0;
  #refillPending = false;
  /** Moving average of run times; unknown (no pull-ahead) until a job has run. */
  #typicalRunMs = Number.POSITIVE_INFINITY;
  #state: RunnerState = "running";
  #idle: (() => void) | undefined;
  /** Messages whose jobs are running: their ack deadline is pushed back together, on one timer. */
  readonly #leased = new Set<JobMessage>();
  #leaseTimer: NodeJS.Timeout | undefined;
  readonly #running = new Map<string, ExecutionHandle>();

  constructor(
    nc: NatsConnection,
    private readonly store: JobStore,
    private readonly pool: Pool,
    private readonly opts: RunnerOptions,
  ) {
    // One queue can wait on the server for the whole expiry while holding a credit; with
    // several queues keep that short so an idle queue does not starve a busy one.
    const expiresMs = opts.queues.length > 1 ? 1000 : 10_000;
    this.#uncounted = new UncountedRuns(store, opts.log);
    this.#gate = new OutcomeGate({
      log: opts.log,
      probe: opts.canStoreOutcomes,
      onOpen: () => {
        this.#refillSoon();
        void this.#uncounted.flush();
      },
    });
    this.#pullers = opts.queues.map(
      (queue) =>
        new Puller(nc, {
          stream: streams.jobs,
          consumer: queueConsumer(queue),
          expiresMs,
          log: opts.log,
          onJob: (msg) => void this.#onJob(msg),
          onCreditsReturned: () => this.#refillSoon(),
        }),
    );
  }

  get state(): RunnerState {
    return this.#state;
  }

  start(): void {
    this.opts.cancels.onCancel((jobId) => this.#onCancel(jobId));
    this.#leaseTimer = setInterval(() => {
      for (const msg of this.#leased) msg.working();
    }, Math.max(250, Math.floor(this.opts.leaseMs / 3)));
    this.refill();
  }

  /** Asks the server for as many jobs as there are free processes not already asked for (see PULL_AHEAD_MAX_RUN_MS). */
  refill(): void {
    if (this.#state !== "running" || this.#gate.closed) return;
    const outstanding = this.#pullers.reduce((n, p) => n + p.outstanding, 0);
    // Short jobs: ask for a pool's worth more than the free processes, so a process that
    // comes free finds its next job here instead of waiting a pull round trip for it.
    const ahead = this.#typicalRunMs < PULL_AHEAD_MAX_RUN_MS && !this.#longRunNow() ? this.pool.capacity : 0;
    let credits = this.pool.capacity + ahead - this.#executing - outstanding;
    // Spread credits over the queues, starting at a rotating one so none starves.
    for (let i = 0; credits > 0 && i < this.#pullers.length; i++) {
      const share = Math.ceil(credits / (this.#pullers.length - i));
      this.#pullers[(this.#next + i) % this.#pullers.length]!.pull(share);
      credits -= share;
    }
    this.#next = (this.#next + 1) % this.#pullers.length;
  }

  #longRunNow(): boolean {
    const now = Date.now();
    for (const handle of this.#running.values()) if (now - handle.startedAt > PULL_AHEAD_MAX_RUN_MS) return true;
    return false;
  }

  /** Slots freed in one turn of the event loop go out as one pull request, not one each. */
  #refillSoon(): void {
    if (this.#refillPending) return;
    this.#refillPending = true;
    setImmediate(() => {
      this.#refillPending = false;
      this.refill();
    });
  }

  /** After a reconnect the server may have forgotten our pull requests. */
  reconnected(): void {
    for (const p of this.#pullers) p.reset();
    this.refill();
  }

  /** Stops pulling and waits until every job in flight has been settled. */
  /** Stops pulling (messages already on their way are handed back) and waits until every job in hand is settled. */
  async drain(): Promise<void> {
    this.#state = "draining";
    await Promise.all(this.#pullers.map((p) => p.close()));
    if (this.#unsettled > 0) await new Promise<void>((resolve) => (this.#idle = resolve));
  }

  async stop(): Promise<void> {
    this.#state = "stopped";
    this.#gate.stop();
    this.#uncounted.stop();
    clearInterval(this.#leaseTimer);
    await Promise.all(this.#pullers.map((p) => p.close()));
  }

  async #onJob(msg: JobMessage): Promise<void> {
    this.#unsettled++;
    if (this.#state !== "running" || this.#gate.closed) {
      // Arrived after intake stopped, or on a pull made before outcomes stopped getting stored:
      // straight back for another supervisor (or, cut off, back after its lease) rather than run
      // here where its outcome could not be reported.
      await this.#handBack(msg);
      this.#settled();
      return;
    }
    this.#executing++;
    // The slot is free as soon as the job has ended, before its outcome is stored,
    // so pulling the next job overlaps with that write.
    let released = false;
    const releaseSlot = () => {
      if (released) return;
      released = true;
      this.#executing--;
      this.#refillSoon();
    };
    try {
      await this.#run(msg, releaseSlot);
    } catch (err) {
      // Not acked: JetStream redelivers it once the lease lapses.
      this.opts.log.error({ err }, "job handling failed; it will be redelivered");
    } finally {
      releaseSlot();
      this.#settled();
    }
  }

  #settled(): void {
    this.#unsettled--;
    if (this.#idle && this.#unsettled === 0) this.#idle();
  }

  /**
   * Gives back a job that never started, as a new message carrying the same
   * attempt number: JetStream would count a nak as a delivery, and the job
   * would lose an attempt it never used.
   */
  async #handBack(msg: JobMessage, parsed?: JobEnvelope): Promise<boolean> {
    try {
      const job = parsed ?? parseWith(JobEnvelope, JSON.parse(decoder.decode(msg.data)));
      const offset = Number(msg.header(headerNames.attemptOffset) ?? 0) + msg.deliveryCount - 1;
      await this.store.enqueue(job, offset, `handback-${msg.streamSeq}-${msg.deliveryCount}`);
      msg.ack();
      return true;
    } catch (err) {
      this.opts.log.warn({ err, seq: msg.streamSeq }, "could not hand a job back");
      return false;
    }
  }

  async #run(msg: JobMessage, releaseSlot: () => void): Promise<void> {
    const { log, workerId, cancels } = this.opts;
    let job: JobEnvelope;
    try {
      job = parseWith(JobEnvelope, JSON.parse(decoder.decode(msg.data)));
    } catch (err) {
      log.error({ err, seq: msg.streamSeq }, "dropping a malformed job message");
      msg.term();
      return;
    }
    const attempt = Number(msg.header(headerNames.attemptOffset) ?? 0) + msg.deliveryCount;
    // Earlier deliveries of this message never reported back: their supervisor died.
    const lost = Array.from({ length: msg.deliveryCount - 1 }, (_, i) => lostRun(attempt - msg.deliveryCount + 1 + i));
    const history = [...job.errors, ...lost];
    const record = recordOf(job, "running", attempt, { started_at: new Date().toISOString(), error: history.at(-1) ?? null });

    if (cancels.has(job.job_id)) {
      await this.#finish(msg, job, record, { state: "cancelled", error: cancelledError, durationMs: null });
      msg.ack();
      return;
    }
    if (attempt > job.max_attempts) {
      await this.#bury(msg, job, record, history, lostRun(attempt - 1), null);
      msg.ack();
      return;
    }

    this.#leased.add(msg);
    const visibility = this.#runningVisibility(record);
    try {
      let handle: ExecutionHandle;
      const execute = (maxWaitMs?: number) =>
        this.pool.execute(
          { job_id: job.job_id, type: job.type, payload: job.payload, attempt, correlation_id: job.correlation_id },
          job.timeout_ms,
          { onProgress: visibility.progress, maxWaitMs },
        );
      try {
        try {
          handle = await execute(PULLED_AHEAD_MAX_WAIT_MS);
        } catch (err) {
          // A job that cannot be handed back now (the stream is electing a leader) waits here for a
          // process: left to its lease it would come back counted as an attempt it never had.
          if (!(err instanceof NotStartedError) || (await this.#handBack(msg, job)) || this.#state !== "running") throw err;
          handle = await execute();
        }
      } catch (err) {
        if (err instanceof NotStartedError) {
          if (this.#state !== "running") this.opts.log.warn({ job_id: job.job_id, seq: msg.streamSeq }, "job not started while draining; it returns after its lease");
          return;
        }
        // No process could be started: the attempt counts, so a broken handler module cannot loop forever.
        log.error({ err, job_id: job.job_id, correlation_id: job.correlation_id }, "no execution process for job; handed back");
        msg.nak(1000);
        return;
      }
      this.#running.set(job.job_id, handle);
      this.opts.metrics.queueWait.observe({ queue: job.queue, type: job.type }, Math.max(0, Date.now() - Date.parse(job.created_at)) / 1000);
      record.owner = { worker_id: workerId, pid: handle.pid };
      visibility.started();
      // A cancel that landed while the process was being acquired.
      if (cancels.has(job.job_id)) handle.kill("cancelled");
      const outcome = await handle.outcome;
      this.#typicalRunMs = Number.isFinite(this.#typicalRunMs)
        ? this.#typicalRunMs + RUN_MS_WEIGHT * (outcome.duration_ms - this.#typicalRunMs)
        : outcome.duration_ms;
      visibility.stop();
      this.#running.delete(job.job_id);
      releaseSlot();
      await this.#settleRetrying(msg, job, record, history, outcome, visibility.written);
    } finally {
      visibility.stop();
      this.#leased.delete(msg);
    }
  }

  /**
   * The run happened; storing its outcome should not be lost to a NATS
   * blip (a reconnect, a server restart). Retries while the lease is kept
   * alive; past it, the job runs again elsewhere, which is the guarantee.
   */
  async #settleRetrying(msg: JobMessage, job: JobEnvelope, record: JobStatus, history: JobError[], outcome: ExecutionOutcome, recordShown: boolean): Promise<void> {
    try {
      await this.#gate.store(
        () => this.#settle(msg, job, record, history, outcome, recordShown),
        Date.now() + this.opts.leaseMs,
        () => this.#state === "stopped",
        (err) => this.opts.log.warn({ err, job_id: job.job_id, correlation_id: job.correlation_id }, "storing a job outcome failed; retrying"),
      );
    } catch (err) {
      // It runs again elsewhere; this run is still counted once writes get through.
      this.#uncounted.add(job.job_id, record.attempts, this.#runId(msg));
      throw err;
    }
  }

  /**
   * When the job's record says "running": RUNNING_RECORD_DELAY_MS after it
   * started, or at its first progress report. Progress goes to the record at
   * most every PROGRESS_WRITE_GAP_MS; a report inside the gap is written when
   * it closes, so the last one shows.
   */
  #runningVisibility(record: JobStatus): { started(): void; progress(fraction: number): void; stop(): void; readonly written: boolean } {
    let lastWrite = 0;
    let timer: NodeJS.Timeout | undefined;
    let stopped = false;
    const write = () => {
      timer = undefined;
      if (stopped) return;
      lastWrite = Date.now();
      this.store.putInterim(record);
    };
    return {
      started: () => {
        if (lastWrite === 0) timer ??= setTimeout(write, RUNNING_RECORD_DELAY_MS);
      },
      progress: (fraction) => {
        record.progress = fraction;
        const wait = lastWrite + PROGRESS_WRITE_GAP_MS - Date.now();
        if (wait <= 0) {
          clearTimeout(timer);
          write();
        } else timer ??= setTimeout(write, wait);
      },
      stop: () => {
        stopped = true;
        clearTimeout(timer);
      },
      get written() {
        return lastWrite > 0;
      },
    };
  }

  /** Kills the local execution of a job whose cancel was requested anywhere. */
  #onCancel(jobId: string): void {
    this.#running.get(jobId)?.kill("cancelled");
  }

  /** Stores the attempt's outcome, then acks: a crash before the ack reruns the job, never loses it. */
  async #settle(msg: JobMessage, job: JobEnvelope, record: JobStatus, history: JobError[], outcome: ExecutionOutcome, recordShown: boolean): Promise<void> {
    const { log, metrics } = this.opts;
    const logCtx = { job_id: job.job_id, correlation_id: job.correlation_id, attempt: record.attempts };
    const labels = { queue: job.queue, type: job.type };
    metrics.duration.observe(labels, outcome.duration_ms / 1000);
    if (outcome.ok) metrics.succeeded.inc(labels);
    else if (outcome.error.code === "cancelled") metrics.cancelled.inc(labels);
    else if (outcome.error.code !== "shutdown") metrics.failed.inc(labels);
    if (outcome.ok) {
      await this.#finish(msg, job, { ...record, progress: 1 }, { state: "succeeded", value: outcome.value, error: null, durationMs: outcome.duration_ms }, recordShown);
      log.debug({ ...logCtx, duration_ms: outcome.duration_ms }, "job succeeded");
    } else if (outcome.error.code === "shutdown") {
      // Killed by a drain past its grace: hand it back to run elsewhere (the attempt counts).
      msg.nak();
      log.warn(logCtx, "job handed back after the drain grace period");
      return;
    } else if (outcome.error.code === "cancelled") {
      await this.#finish(msg, job, record, { state: "cancelled", error: cancelledError, durationMs: outcome.duration_ms });
      log.info(logCtx, "job cancelled while running");
    } else if (record.attempts < job.max_attempts) {
      await this.#retryLater(job, record, [...history, outcome.error]);
      metrics.retried.inc(labels);
      log.warn({ ...logCtx, error: outcome.error }, "job attempt failed");
    } else {
      await this.#bury(msg, job, record, history, outcome.error, outcome.duration_ms);
      metrics.dead.inc(labels);
      log.warn({ ...logCtx, error: outcome.error }, "job dead: attempts used up");
    }
    msg.ack();
  }

  /** The next attempt after the backoff: parked in the scheduler, or queued at once when there is none. */
  async #retryLater(job: JobEnvelope, record: JobStatus, errors: JobError[]): Promise<void> {
    const next: JobEnvelope = { ...job, errors };
    const delay = backoffDelay(job.backoff, record.attempts);
    const failed = { ...record, owner: null, error: errors.at(-1) ?? null };
    if (delay > 0) {
      await this.store.schedule(next, record.attempts, Date.now() + delay);
      await this.store.put({ ...failed, state: "failed" });
    } else {
      await this.store.enqueue(next, record.attempts);
      await this.store.put({ ...failed, state: "queued" });
    }
  }

  /** Dead: kept in the dead-letter stream with every attempt's error, then finished. */
  async #bury(msg: JobMessage, job: JobEnvelope, record: JobStatus, history: JobError[], lastError: JobError, durationMs: number | null): Promise<void> {
    const errors = [...history, lastError];
    const dead = { ...record, state: "dead" as const, owner: null, error: lastError, finished_at: new Date().toISOString() };
    await this.store.bury({ job: { ...job, errors }, record: dead });
    await this.#finish(msg, job, dead, { state: "dead", error: lastError, durationMs });
  }

  #runId(msg: JobMessage): string {
    return `${this.opts.workerId}.${msg.receipt}`;
  }

  /**
   * The result is the durable outcome (a cancel may have claimed it first:
   * then the cancel stands). The run is named by this supervisor and its
   * receipt of the message, so a retried write of it is recognised as the
   * same run, and a second delivery JetStream numbered the same (a consumer
   * leader lost its state) as another. The record is brought to the final state only
   * where a reader could find it stale on its own: it showed "running", or
   * the job did not succeed (retry and cleanup go by dead/cancelled records).
   */
  async #finish(
    msg: JobMessage,
    job: JobEnvelope,
    record: JobStatus,
    end: { state: "succeeded" | "cancelled" | "dead"; value?: unknown; error: JobError | null; durationMs: number | null },
    recordShown = true,
  ): Promise<void> {
    const standing = await this.store.settleResult({
      job_id: job.job_id,
      state: end.state,
      result: end.value ?? null,
      error: end.error,
      attempts: record.attempts,
      duration_ms: end.durationMs,
      correlation_id: job.correlation_id,
    }, this.#runId(msg));
    if (!recordShown && standing.state === "succeeded") return;
    // Not acked: the result is stored already, and status reads fall back on it.
    this.store.putInterim({ ...record, state: standing.state, owner: null, error: standing.error, finished_at: record.finished_at ?? new Date().toISOString() });
  }
}

const lostRun = (attempt: number): JobError => ({ code: "lost", message: `attempt ${attempt} never reported back (its supervisor stopped)` });
