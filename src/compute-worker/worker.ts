/**
 * The compute worker's loop. One lease request at a time asks for as many
 * jobs as the worker has room for, and outcomes are posted in batches, one
 * call at a time: those that end while a post is on its way go in the next
 * one. Jobs that run short are leased ahead, up to twice `--max` (eight
 * times for sub-millisecond runs), so the actors have the next ones queued
 * while a lease call is on its way, and each call carries many jobs: a
 * call's cost in every process it crosses is what bounds remote throughput
 * (bench/RESULTS.md, issue 14 session 8). A job's timeout counts from its
 * lease, so long ones are not leased ahead. At most as
 * many outcomes as it may hold jobs wait unposted: a worker that dies
 * leaves no more than that run and unposted.
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "pino";
import type { BosunError } from "../contract/errors.js";
import { MAX_LEASE_JOBS } from "../contract/compute.js";
import type { JobError } from "../contract/schemas.js";
import { NotStartedError, Pool, poolSettingsOf, type ExecutionHandle, type ExecutionOutcome } from "../actors/pool/pool.js";
import { TypicalRun } from "../actors/pool/typical-run.js";
import type { ComputeClient, LeasedRun } from "../client/compute.js";
import { CancelledError, UnauthorizedError } from "../client/errors.js";
import type { ComputeWorkerConfig } from "../platform/config.js";
import { backoffDelay } from "../supervisor/backoff.js";
import { endsLease, LeaseKeeper } from "./lease-keeper.js";

/** A gateway that is unreachable or answers 5xx: the next call waits this long, doubling per failure in a row. */
const RETRY = { type: "exponential", delay_ms: 250, max_delay_ms: 10_000 } as const;
/** Runs shorter than this on average are leased ahead of the actors, SHORT_AHEAD × --max in hand. */
const SHORT_RUN_MS = 50;
const SHORT_AHEAD = 2;
/** Runs under PACKED_RUN_MS: this many × --max in hand (8 back to back per actor wait a few ms at most). */
const SUB_MS_AHEAD = 8;
/**
 * Runs shorter than this on average are packed on busy actors before idle
 * ones: an actor runs such runs back to back and answers them together
 * (actors/serve.ts), so a lease's jobs cost one wake-up per few of them
 * rather than one each, with no run waiting long behind another.
 */
const PACKED_RUN_MS = 1;
/** A short run queued on a busy actor that has not started by then waits for the next free one. */
const QUEUED_MAX_WAIT_MS = 1000;
/** What a gateway answers for an outcome it will never take. */
const REFUSED = new Set(["lease_stale", "cancelled"]);

interface Ended {
  run: LeasedRun;
  keeper: LeaseKeeper;
  outcome: ExecutionOutcome;
  /** Posts that failed for it in a row. */
  failures: number;
}

export type WorkerEnd = "stopped" | "revoked";

export class ComputeWorker {
  readonly #pool: Pool;
  /** Aborted when leasing stops (a drain or a revoke): lease requests in flight end at once. */
  readonly #leasing = new AbortController();
  readonly #running = new Set<ExecutionHandle>();
  /** Leased jobs not yet over (running, or waiting for an actor). */
  readonly #inHand = new Set<Promise<void>>();
  readonly #unposted: Ended[] = [];
  #posting: Promise<void> | undefined;
  /** Wakes the leaser when room may have come (a job over, an outcome posted). */
  #roomMade: (() => void) | undefined;
  readonly #typicalRun = new TypicalRun();
  #draining: Promise<void> | undefined;
  #revoked = false;

  constructor(
    private readonly config: ComputeWorkerConfig,
    private readonly client: ComputeClient,
    /** For the execution actors' ctx.files, which upload through the gateway under the run's lease. */
    private readonly credential: string,
    private readonly types: readonly string[] | undefined,
    private readonly log: Logger,
  ) {
    this.#pool = new Pool({
      ...poolSettingsOf(config),
      env: {},
      log,
      // Nothing reports pool changes: a compute server's liveness is its calls.
      onChange: () => undefined,
    });
  }

  /** Leases and runs jobs until stopped (drained) or revoked (runs killed, outcomes dropped). */
  async run(): Promise<WorkerEnd> {
    this.#pool.start();
    this.log.info({ gateway: this.config.gateway, slots: this.config.max, types: this.types ?? "any" }, "compute worker running");
    await this.#lease();
    await this.#settled();
    if (!this.#revoked) {
      await this.#draining;
      return "stopped";
    }
    await this.#pool.drain(0);
    return "revoked";
  }

  /** SIGTERM: no more leases; running jobs get --grace-ms (then are killed and handed back); every outcome is posted. */
  stop(): Promise<void> {
    this.#draining ??= (async () => {
      this.log.info({ running: this.#running.size, grace_ms: this.config.grace_ms }, "draining: no more leases");
      this.#leasing.abort();
      this.#roomMade?.();
      await this.#pool.drain(this.config.grace_ms);
      await this.#settled();
    })();
    return this.#draining;
  }

  /** Every leased job over and every outcome posted (or given up on). */
  async #settled(): Promise<void> {
    while (this.#inHand.size > 0 || this.#posting) {
      await Promise.all(this.#inHand);
      await this.#posting;
    }
  }

  /** The credential was refused: stop leasing and kill every run (nobody would take their outcomes). */
  #revoke(): void {
    if (this.#revoked) return;
    this.#revoked = true;
    this.#leasing.abort();
    this.#roomMade?.();
    for (const handle of this.#running) handle.kill("lease_lost");
  }

  /** Sub-millisecond runs: packed, as many on one actor as are leased per actor (SUB_MS_AHEAD). */
  #packing(): { pack: boolean; runsPerActor?: number } {
    return this.#typicalRun.ms < PACKED_RUN_MS ? { pack: true, runsPerActor: SUB_MS_AHEAD } : { pack: false };
  }

  #leasesAhead(): boolean {
    return this.#typicalRun.ms < SHORT_RUN_MS;
  }

  /** Jobs a lease call may ask for now: none while the room is too small to be worth a call. */
  #room(): number {
    const capacity = this.config.max * (this.#typicalRun.ms < PACKED_RUN_MS ? SUB_MS_AHEAD : this.#leasesAhead() ? SHORT_AHEAD : 1);
    const held = this.#inHand.size + this.#unposted.length;
    const room = capacity - held;
    // Leasing ahead: asked for once half of it is free, so the actors still have jobs while the call is out.
    const worthACall = capacity > this.config.max && held > 0 ? capacity / 2 : 1;
    return room >= worthACall ? Math.min(room, MAX_LEASE_JOBS) : 0;
  }

  async #lease(): Promise<void> {
    const signal = this.#leasing.signal;
    let failures = 0;
    while (!signal.aborted) {
      const room = this.#room();
      if (room === 0) {
        await new Promise<void>((resolve) => (this.#roomMade = resolve));
        continue;
      }
      let runs: LeasedRun[];
      try {
        runs = await this.client.leaseMany(room, this.config.wait_ms, this.types, { signal });
        failures = 0;
      } catch (err) {
        if (signal.aborted) break;
        if (err instanceof UnauthorizedError) {
          this.#revoke();
          break;
        }
        const retryInMs = backoffDelay(RETRY, ++failures);
        this.log.warn({ err: (err as Error).message, code: (err as BosunError).code, retry_in_ms: retryInMs }, "lease request failed; backing off");
        await sleep(retryInMs, undefined, { signal }).catch(() => undefined);
        continue;
      }
      for (const run of runs) {
        // Its boundary: an unexpected throw must not end the loop (the job then runs again after its lease).
        const held: Promise<void> = this.#execute(run)
          .then((ended) => ended && this.#queuePost({ ...ended, failures: 0 }))
          .catch((err: unknown) => this.log.error({ err, job_id: run.job.job_id }, "a leased run failed unexpectedly; the job runs again once its lease lapses"))
          .finally(() => {
            this.#inHand.delete(held);
            this.#roomMade?.();
          });
        this.#inHand.add(held);
      }
    }
  }

  /** Runs a leased job; what to post once it is over, or nothing when its lease was lost meanwhile. */
  async #execute(run: LeasedRun): Promise<Omit<Ended, "failures"> | undefined> {
    const { job } = run;
    const logCtx = { job_id: job.job_id, correlation_id: job.correlation_id, attempt: job.attempt, fencing_token: run.fencing_token };
    let handle: ExecutionHandle | undefined;
    // Heartbeats start with the lease: its clock runs from the grant, not from the start of the run.
    const keeper = new LeaseKeeper(this.client, run, this.log, (err) => this.#onLost(err, handle, logCtx));
    keeper.start();
    const spec = {
      job_id: job.job_id,
      type: job.type,
      payload: job.payload,
      attempt: job.attempt,
      fencing_token: run.fencing_token,
      correlation_id: job.correlation_id,
      files: { transport: "http" as const, gateway: this.config.gateway, credential: this.credential, lease_id: run.lease_id },
    };
    const opts = { onProgress: (fraction: number) => (keeper.progress = fraction) };
    try {
      // Short runs queue on busy actors (several runs per wake-up, as on a supervisor); one withdrawn
      // there waits for the next free actor instead.
      handle = await (this.#leasesAhead()
        ? this.#pool.execute(spec, job.timeout_ms, { ...opts, maxWaitMs: QUEUED_MAX_WAIT_MS, ...this.#packing() }).catch((err: unknown) => {
            if (!(err instanceof NotStartedError) || this.#draining) throw err;
            return this.#pool.execute(spec, job.timeout_ms, opts);
          })
        : this.#pool.execute(spec, job.timeout_ms, opts));
    } catch (err) {
      // Leased as a drain began: "shutdown" hands it back at once. Any other failure to start (no
      // execution actor could be spawned) counts as the attempt's, so a broken handler module cannot loop.
      const message = err instanceof Error ? err.message : String(err);
      const error: JobError = this.#draining ? { code: "shutdown", message: "the compute worker was draining when the job was leased" } : { code: "not_started", message };
      this.log.warn({ ...logCtx, err: message }, "leased job not started");
      return { run, keeper, outcome: { ok: false, error, duration_ms: 0 } };
    }
    if (keeper.lost || this.#revoked) handle.kill(keeper.lost instanceof CancelledError ? "cancelled" : "lease_lost");
    this.#running.add(handle);
    this.log.info({ ...logCtx, type: job.type, pid: handle.pid }, "leased job started");
    const outcome = await handle.outcome;
    this.#running.delete(handle);
    this.#typicalRun.observe(outcome.duration_ms);
    if (!keeper.lost && !this.#revoked) return { run, keeper, outcome };
    await keeper.stop();
    this.log.info({ ...logCtx, reason: keeper.lost?.code ?? "unauthorized", duration_ms: outcome.duration_ms }, "leased job killed; its outcome is not posted");
    return undefined;
  }

  #onLost(err: BosunError, handle: ExecutionHandle | undefined, logCtx: object): void {
    if (err instanceof UnauthorizedError) return this.#revoke();
    this.log.warn({ ...logCtx, code: err.code, err: err.message }, "lease ended by the gateway: killing the run");
    handle?.kill(err instanceof CancelledError ? "cancelled" : "lease_lost");
  }

  #queuePost(ended: Ended): void {
    this.#unposted.push(ended);
    // Its boundary: an unexpected throw must not reject what run() and stop() wait on (the jobs run again after their leases).
    this.#posting ??= this.#postAll()
      .catch((err: unknown) => this.log.error({ err }, "posting outcomes failed unexpectedly; their jobs run again once their leases lapse"))
      .finally(() => (this.#posting = undefined));
  }

  /** Posts what waits, a batch per call, until nothing does. */
  async #postAll(): Promise<void> {
    while (this.#unposted.length > 0 && !this.#revoked) {
      const batch = this.#unposted.splice(0, MAX_LEASE_JOBS);
      // An outcome posted while a heartbeat is on its way would race it for the lease.
      await Promise.all(batch.map((e) => e.keeper.stop()));
      const live = batch.filter((e) => !e.keeper.lost);
      if (live.length > 0) await this.#post(live);
      this.#roomMade?.();
    }
  }

  /**
   * One call for a batch of outcomes (a handler error is a retryable
   * failure, like a crash or a timeout, each with its code). One that
   * failed for a transient reason is posted again, backing off, until its
   * lease would have lapsed: past that the gateway refuses it anyway, and
   * the job runs again.
   */
  async #post(batch: Ended[]): Promise<void> {
    let answers: Map<string, Awaited<ReturnType<ComputeClient["outcomes"]>>[number]> | undefined;
    let callError: { code: string; message: string; endsLease: boolean } | undefined;
    try {
      const answered = await this.client.outcomes(batch.map(({ run, outcome }) => ({ run, outcome: outcome.ok ? { ok: true, value: outcome.value } : { ok: false, error: outcome.error, retryable: true } })));
      // By job id, not position: an answer is input, and one that skips or reorders outcomes must not misattribute them.
      answers = new Map(answered.map((a) => [a.job_id, a]));
    } catch (err) {
      if (err instanceof UnauthorizedError) return this.#revoke();
      callError = { code: (err as BosunError).code ?? "unavailable", message: (err as Error).message, endsLease: endsLease(err) };
    }
    const again: Ended[] = [];
    for (const e of batch) {
      const { run, outcome } = e;
      const logCtx = { job_id: run.job.job_id, correlation_id: run.job.correlation_id, attempt: run.job.attempt };
      const answer = answers?.get(run.job.job_id);
      if (answer && "state" in answer) {
        this.log.info({ ...logCtx, ok: outcome.ok, state: answer.state, duration_ms: outcome.duration_ms, ...(!outcome.ok && { error: outcome.error.code }) }, "leased job ended");
        continue;
      }
      const why = answer ? { ...answer.error, endsLease: REFUSED.has(answer.error.code) } : (callError ?? { code: "internal_error", message: "the gateway's answer has none for this outcome", endsLease: false });
      if (why.endsLease) this.log.warn({ ...logCtx, code: why.code, err: why.message }, "outcome refused: the lease is no longer this server's");
      else if (e.keeper.expiresAt <= Date.now()) this.log.error({ ...logCtx, err: why.message }, "outcome not posted before its lease lapsed: the job runs again");
      else {
        this.log.warn({ ...logCtx, err: why.message }, "posting the outcome failed; trying again");
        again.push({ ...e, failures: e.failures + 1 });
      }
    }
    if (again.length === 0) return;
    const soonest = Math.min(...again.map((e) => e.keeper.expiresAt)) - Date.now();
    await sleep(Math.max(0, Math.min(soonest, backoffDelay(RETRY, Math.max(...again.map((e) => e.failures))))));
    this.#unposted.unshift(...again);
  }
}
