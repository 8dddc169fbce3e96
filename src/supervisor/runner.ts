/**
 * The execution side of a supervisor: pulls jobs from its queues' consumers
 * only while it has free execution processes, runs each on the pool, stores
 * the outcome durably and only then acks the message.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import type { JetStreamManager } from "@nats-io/jetstream";
import type { Logger } from "pino";
import { laneOfSubject, streams, type InterimRecord, type JobEnvelope, type JobError } from "../contract/index.js";
import { guard } from "../platform/guard.js";
import { ensureConsumer, laneConsumerConfig } from "../platform/topology.js";
import { laneFor, type CancelRegistry, type JobStore, type Lane, type LaneRegistry } from "../records/index.js";
import { readJobMessage, type InboundJob } from "./inbound.js";
import type { LaneOrder } from "./lane-order.js";
import { LanePulls, WATCH_EXPIRES_MS } from "./lane-pulls.js";
import { OutcomeGate } from "./outcome-gate.js";
import { MAX_RUNS_PER_ACTOR, NotStartedError, type ExecutionHandle, type Pool } from "../actors/pool/pool.js";
import { TypicalRun } from "../actors/pool/typical-run.js";
import { JobMessage, Puller } from "../platform/puller.js";
import { mayHaveLanded } from "../platform/stream-writer.js";
import { runIdOf, Settler } from "./settle.js";
import { UncountedRuns } from "./uncounted.js";
import { LeaseRenewal } from "./lease-renewal.js";
import type { Admission, QueueLimits } from "./queue-limits.js";
import { runningVisibility } from "./running-record.js";
import type { SupervisorMetrics } from "../platform/metrics.js";
import { hop, SpanKind } from "../platform/tracing.js";

/**
 * While this supervisor's jobs run shorter than this (a moving average), it
 * holds up to the pool's queue capacity of jobs beyond its free processes
 * (queued on busy actors, to start right after their current run): a job
 * held back waits a few runs, and no actor idles through a pull round trip.
 * How many runs an actor holds follows the typical run: the last of them
 * starts within half of PULLED_AHEAD_MAX_WAIT_MS (8 for runs up to 7 ms,
 * 3 for 20 ms ones). Against a fixed 4, noop throughput rose by about a
 * fifth over process and over thread isolation (8 alternating pairs).
 * Longer jobs, or a run going long now, stop it: jobs are then pulled only
 * for free processes. A job pulled ahead that finds no free process within
 * PULLED_AHEAD_MAX_WAIT_MS is handed back (no attempt used) for a supervisor
 * with room, so none waits behind a long run. Where nobody else could take
 * it, it waits in line up to ALONE_MAX_WAIT_MS instead: a hand-back puts it
 * behind the whole queue, so equal short jobs keep their order on a
 * supervisor alone on a lane, while one stuck behind a run that went long
 * still goes back to the stream (shown queued, for the next to start).
 */
const PULL_AHEAD_MAX_RUN_MS = 50;
const PULLED_AHEAD_MAX_WAIT_MS = 2 * PULL_AHEAD_MAX_RUN_MS;
const ALONE_MAX_WAIT_MS = 6 * PULL_AHEAD_MAX_RUN_MS;

export interface RunnerOptions {
  workerId: string;
  metrics: SupervisorMetrics;
  cancels: CancelRegistry;
  lanes: LaneRegistry;
  laneOrder: LaneOrder;
  /** Per-queue max_concurrency and rate_limit: how many jobs of a queue this supervisor may take. */
  limits: QueueLimits;
  queues: readonly string[];
  /** Only lanes of this target are this runner's (CONTRACT.md "Targets and ops flags"). */
  target: string;
  leaseMs: number;
  /** A run ended (its slot is free; not a job handed back unrun): intake's pacer grants a turn. */
  onRunEnded?: () => void;
  /** Whether another supervisor or a compute server could run this job now (it serves the job's type, queue and target). */
  othersServe?: (job: { type: string; queue: string }) => boolean;
  log: Logger;
  /** Resolves once an acknowledged write gets through (this node reaches the cluster's majority). */
  canStoreOutcomes(): Promise<unknown>;
}

export type RunnerState = "running" | "draining" | "stopped";

export class Runner {
  /** One puller per lane of this supervisor's queues, added as lanes appear, and their credits. */
  readonly #lanes: LanePulls;
  readonly #settler: Settler;
  /** Closed while job outcomes cannot be stored: nothing is pulled or started then. */
  readonly #gate: OutcomeGate;
  /** Runs whose outcome could not be stored before their lease: counted into the job once writes get through. */
  readonly #uncounted: UncountedRuns;
  /** Jobs received and not yet ended (they hold a process or are about to). */
  #executing = 0;
  /** Jobs received whose outcome is not yet stored and acked. */
  #unsettled = 0;
  #refillPending = false;
  /** Unknown (no pull-ahead) until a job has run. */
  readonly #typicalRun = new TypicalRun();
  #state: RunnerState = "running";
  #idle: (() => void) | undefined;
  readonly #leases: LeaseRenewal;
  readonly #running = new Map<string, ExecutionHandle>();

  constructor(
    private readonly nc: NatsConnection,
    private readonly jsm: JetStreamManager,
    private readonly store: JobStore,
    private readonly pool: Pool,
    private readonly opts: RunnerOptions,
  ) {
    this.#lanes = new LanePulls({ laneOrder: opts.laneOrder, limits: opts.limits, queueOf: (lane) => this.#queueOf(lane) });
    this.#settler = new Settler(store, opts.cancels, opts.metrics, opts.log, opts.workerId);
    this.#uncounted = new UncountedRuns(store, opts.log);
    this.#leases = new LeaseRenewal(opts.leaseMs, opts.log);
    this.#gate = new OutcomeGate({
      log: opts.log,
      probe: opts.canStoreOutcomes,
      onOpen: () => {
        this.#refillSoon();
        void this.#uncounted.flush();
      },
    });
  }

  get state(): RunnerState {
    return this.#state;
  }

  /** It holds every job it may (its processes busy, and their queue places while jobs run short); draining, with none, is not. */
  get saturated(): boolean {
    return this.pool.capacity > 0 && this.#room() <= 0;
  }

  /** Jobs it may still take: free processes, and queue places on busy ones while jobs run short (pulled ahead). */
  #room(): number {
    return this.pool.capacity + (this.#pullingAhead() ? this.pool.queueCapacity(this.#runsPerActor()) : 0) - this.#executing;
  }

  /** Runs one actor may hold while jobs run short (see PULL_AHEAD_MAX_RUN_MS). */
  #runsPerActor(): number {
    return Math.max(2, Math.min(MAX_RUNS_PER_ACTOR, 1 + Math.floor(this.#runsInHalfWait())));
  }

  /** How many runs one process gets through in half of PULLED_AHEAD_MAX_WAIT_MS, at the typical run time. */
  #runsInHalfWait(): number {
    return PULLED_AHEAD_MAX_WAIT_MS / 2 / Math.max(1, this.#typicalRun.ms);
  }

  /**
   * Jobs that dry lanes' open requests may bring beyond its room
   * (LanePulls.refill): while jobs run short, as many as its processes
   * start within half of PULLED_AHEAD_MAX_WAIT_MS at the typical run time,
   * less what the room already holds, so they start rather than being
   * handed back. Longer jobs: none (one job per dry lane's watch).
   */
  #standBeyond(): number {
    if (!this.#pullingAhead()) return 0;
    const started = Math.floor(this.pool.capacity * this.#runsInHalfWait());
    return Math.max(0, started - this.pool.capacity - this.pool.queueCapacity(this.#runsPerActor()));
  }

  #pullingAhead(): boolean {
    return this.#typicalRun.ms < PULL_AHEAD_MAX_RUN_MS && !this.#longRunNow();
  }

  /** Starts pulling: the default lane of each queue first (so its consumer exists), then every lane that appears. */
  async start(): Promise<void> {
    this.opts.cancels.onCancel((jobId) => this.#onCancel(jobId));
    this.#leases.start();
    for (const queue of this.opts.queues) await this.#addLane(laneFor(queue, null, 0, this.opts.target));
    this.opts.lanes.onLane((lane) => {
      if (this.opts.queues.includes(lane.queue) && lane.target === this.opts.target) this.#addLane(lane).catch((err: unknown) => this.opts.log.error({ err, lane: lane.code }, "could not start pulling a lane"));
    });
    this.refill();
  }

  async #addLane(lane: Lane): Promise<void> {
    if (this.#lanes.has(lane.code) || this.#state !== "running") return;
    await this.opts.lanes.ensure(lane);
    await ensureConsumer(this.jsm, streams.jobs, laneConsumerConfig(lane.code, this.opts.leaseMs));
    if (this.#lanes.has(lane.code)) return;
    this.#lanes.add(
      lane.code,
      new Puller(this.nc, {
        stream: streams.jobs,
        consumer: laneConsumerConfig(lane.code, this.opts.leaseMs).durable_name!,
        expiresMs: WATCH_EXPIRES_MS,
        log: this.opts.log,
        onJob: guard(this.opts.log, "job message", (msg: JobMessage) => this.#onJob(msg)),
        onCreditsReturned: () => {
          this.#lanes.ranDry(lane.code);
          this.#refillSoon();
        },
      }),
    );
    this.opts.log.debug({ lane: lane.code, queue: lane.queue, tenant: lane.tenant, band: lane.band }, "pulling a new lane");
    this.#refillSoon();
  }

  /** Asks for the jobs it has room for (LanePulls.refill), unless it is stopping or cannot store outcomes. */
  refill(): void {
    if (this.#state !== "running" || this.#gate.closed) return;
    this.#lanes.refill(this.#room(), this.#standBeyond());
  }

  /** The queue a lane belongs to, as its limits are kept; a lane not registered yet counts as its own. */
  #queueOf(lane: string): string {
    return this.opts.lanes.get(lane)?.queue ?? lane;
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
    setImmediate(
      guard(this.opts.log, "refill", () => {
        this.#refillPending = false;
        this.refill();
      }),
    );
  }

  /** After a reconnect the server may have forgotten our pull requests. */
  reconnected(): void {
    this.#lanes.reset();
    this.refill();
  }

  /** Stops pulling (messages already on their way are handed back) and waits until every job in hand is settled. */
  async drain(): Promise<void> {
    this.#state = "draining";
    await this.#lanes.close();
    if (this.#unsettled > 0) await new Promise<void>((resolve) => (this.#idle = resolve));
  }

  async stop(): Promise<void> {
    this.#state = "stopped";
    this.#gate.stop();
    this.#uncounted.stop();
    this.#leases.stop();
    await this.#lanes.close();
  }

  async #onJob(msg: JobMessage): Promise<void> {
    this.#unsettled++;
    const lane = laneOfSubject(msg.subject);
    if (this.#lanes.delivered(lane, msg.pending)) this.#refillSoon();
    if (this.#state !== "running" || this.#gate.closed) {
      // Arrived after intake stopped, or on a pull made before outcomes stopped getting stored:
      // straight back for another supervisor (or, cut off, back after its lease) rather than run
      // here where its outcome could not be reported.
      await this.#handBack(msg);
      this.#settled();
      return;
    }
    const admission = this.opts.limits.admit(this.#queueOf(lane));
    if (!admission) {
      // Beyond the queue's share here (a pull made before the share was lowered): another takes it, or this one later.
      await this.#handBack(msg);
      this.#settled();
      this.#refillSoon();
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
      this.opts.limits.release(admission);
      this.#refillSoon();
    };
    try {
      await this.#run(msg, releaseSlot, admission);
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
   * Gives back a job that never started (JobStore.handBack): "given" once it
   * is given back (or settled as cancelled, or was unreadable); "refused"
   * when the copy was not written, so the job is still only this
   * supervisor's to run; "unsure" when the copy may be stored unacknowledged.
   */
  async #handBack(msg: JobMessage, parsed?: InboundJob): Promise<"given" | "refused" | "unsure"> {
    try {
      const inbound = parsed ?? readJobMessage(msg, this.opts.log, "jobs stream");
      // A bad message is terminated by the decode boundary: nothing left to hand back.
      if (!inbound) return "given";
      await this.store.handBack(msg, { job: inbound.job, offset: inbound.attemptOffset }, { cancelled: this.opts.cancels.has(inbound.job.job_id) });
      return "given";
    } catch (err) {
      this.opts.log.warn({ err, seq: msg.streamSeq }, "could not hand a job back");
      return mayHaveLanded(err) ? "unsure" : "refused";
    }
  }

  async #run(msg: JobMessage, releaseSlot: () => void, admission: Admission): Promise<void> {
    const { log, workerId, cancels } = this.opts;
    const runId = runIdOf(workerId, msg);
    const picked = await this.#settler.pickUp(msg, runId);
    if (!picked) return;
    const { inbound, job, attempt, history, record } = picked;

    this.#leases.hold(msg);
    const interim: InterimRecord = { ...record, generation: job.generation };
    const visibility = runningVisibility(interim, this.store, this.opts.log);
    const trace = hop(`bosun.run ${job.type}`, SpanKind.CONSUMER, job.traceparent, {
      attributes: () => ({ "bosun.job_id": job.job_id, "bosun.queue": job.queue, "bosun.attempt": attempt, "bosun.worker_id": workerId }),
    });
    let runError: JobError | undefined;
    try {
      let handle: ExecutionHandle;
      const execute = (maxWaitMs?: number) =>
        this.pool.execute(
          { job_id: job.job_id, type: job.type, payload: job.payload, attempt, fencing_token: picked.fencingToken, correlation_id: job.correlation_id, traceparent: trace.traceparent },
          job.timeout_ms,
          { onProgress: visibility.progress, maxWaitMs, runsPerActor: this.#runsPerActor() },
        );
      try {
        try {
          handle = await execute(this.opts.othersServe?.(job) ? PULLED_AHEAD_MAX_WAIT_MS : ALONE_MAX_WAIT_MS);
        } catch (err) {
          // A job whose copy was refused (the stream is electing a leader) waits here for a process:
          // left to its lease it would come back counted as an attempt it never had. One whose copy
          // may be stored is not run here, or it could run twice: its lease brings it back.
          if (!(err instanceof NotStartedError) || (await this.#handBack(msg, inbound)) !== "refused" || this.#state !== "running") throw err;
          handle = await execute();
        }
      } catch (err) {
        if (err instanceof NotStartedError) {
          if (this.#state !== "running") log.warn({ job_id: job.job_id, seq: msg.streamSeq }, "job not started while draining; it returns after its lease");
          return;
        }
        // No process could be started: the attempt counts, so a broken handler module cannot loop forever.
        log.error({ err, job_id: job.job_id, correlation_id: job.correlation_id }, "no execution process for job; handed back");
        msg.nak(1000);
        return;
      }
      this.#running.set(job.job_id, handle);
      this.opts.limits.started(admission, handle.startedAt);
      this.opts.metrics.queueWait.observe({ queue: job.queue, type: job.type }, Math.max(0, Date.now() - Date.parse(job.created_at)) / 1000);
      record.owner = interim.owner = { worker_id: workerId, pid: handle.pid, ...(handle.threadId !== undefined && { thread_id: handle.threadId }) };
      record.started_at = interim.started_at = new Date(handle.startedAt).toISOString();
      visibility.started();
      // A cancel that landed while the process was being acquired.
      if (cancels.has(job.job_id)) handle.kill("cancelled");
      const outcome = await handle.outcome;
      if (!outcome.ok) runError = outcome.error;
      this.#typicalRun.observe(outcome.duration_ms);
      visibility.stop();
      this.#running.delete(job.job_id);
      releaseSlot();
      this.opts.onRunEnded?.();
      await this.#settleRetrying(() => this.#settler.settle(msg, job, { ...record, progress: interim.progress }, history, outcome), job, record.attempts, runId);
      // Only after the outcome is stored: until then a reader may still need it.
      if (visibility.written) this.store.dropInterim(job.job_id).catch((err: unknown) => log.warn({ err, job_id: job.job_id }, "could not remove an interim record"));
    } finally {
      visibility.stop();
      this.#leases.release(msg);
      trace.end(runError);
    }
  }

  /**
   * The run happened; storing its outcome should not be lost to a NATS
   * blip (a reconnect, a server restart, an election). Retries while the
   * lease is kept alive, with the outcome gate closed (no new jobs taken
   * meanwhile); past it, the job runs again elsewhere, which is the
   * guarantee, and this run is still counted once writes get through.
   */
  async #settleRetrying(settle: () => Promise<void>, job: JobEnvelope, attempt: number, runId: string): Promise<void> {
    try {
      await this.#gate.store(
        settle,
        Date.now() + this.opts.leaseMs,
        () => this.#state === "stopped",
        (err) => this.opts.log.warn({ err, job_id: job.job_id, correlation_id: job.correlation_id }, "storing a job outcome failed; retrying"),
      );
    } catch (err) {
      this.#uncounted.add(job.job_id, job.generation, attempt, runId);
      throw err;
    }
  }

  /** An acknowledged write besides outcomes (the heartbeat): one that hangs or is refused closes the outcome gate too. */
  watchWrite(write: Promise<unknown>): void {
    this.#gate.watch(write);
  }

  /** Kills the local execution of a job whose cancel was requested anywhere. */
  #onCancel(jobId: string): void {
    this.#running.get(jobId)?.kill("cancelled");
  }
}
