/**
 * The compute worker's loop: one slot per execution actor (`--max`), each
 * keeping one lease request long-polling while its actor is free, running
 * what it leases in the pool, and posting the outcome while it already
 * polls for the next job (the actor is free again once the run is over).
 * At most one outcome per slot is on its way at a time.
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "pino";
import type { BosunError } from "../contract/errors.js";
import type { JobError } from "../contract/schemas.js";
import { Pool, poolSettingsOf, type ExecutionHandle, type ExecutionOutcome } from "../actors/pool/pool.js";
import type { ComputeClient, LeasedRun } from "../client/compute.js";
import { CancelledError, UnauthorizedError } from "../client/errors.js";
import type { ComputeWorkerConfig } from "../platform/config.js";
import { backoffDelay } from "../supervisor/backoff.js";
import { endsLease, LeaseKeeper } from "./lease-keeper.js";

/** A gateway that is unreachable or answers 5xx: the next call waits this long, doubling per failure in a row. */
const RETRY = { type: "exponential", delay_ms: 250, max_delay_ms: 10_000 } as const;

export type WorkerEnd = "stopped" | "revoked";

export class ComputeWorker {
  readonly #pool: Pool;
  /** Aborted when leasing stops (a drain or a revoke): lease requests in flight end at once. */
  readonly #leasing = new AbortController();
  readonly #running = new Set<ExecutionHandle>();
  #slots: Promise<void>[] = [];
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
    this.#slots = Array.from({ length: this.config.max }, () => this.#slot());
    this.log.info({ gateway: this.config.gateway, slots: this.config.max, types: this.types ?? "any" }, "compute worker running");
    await Promise.all(this.#slots);
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
      await this.#pool.drain(this.config.grace_ms);
      await Promise.all(this.#slots);
    })();
    return this.#draining;
  }

  /** The credential was refused: stop leasing and kill every run (nobody would take their outcomes). */
  #revoke(): void {
    if (this.#revoked) return;
    this.#revoked = true;
    this.#leasing.abort();
    for (const handle of this.#running) handle.kill("lease_lost");
  }

  async #slot(): Promise<void> {
    const signal = this.#leasing.signal;
    let posting: Promise<void> = Promise.resolve();
    let failures = 0;
    while (!signal.aborted) {
      let run: LeasedRun | undefined;
      try {
        run = await this.client.lease(this.config.wait_ms, this.types, { signal });
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
      if (!run) continue;
      const ended = await this.#execute(run);
      // The next lease overlaps this outcome's post, but waits for the one before: a worker that
      // dies then leaves at most one job run and unposted per slot (beside the one leased or running).
      await posting;
      // Its boundary: an unexpected throw must not end the slot's loop (the job then runs again after its lease).
      if (ended) posting = this.#post(ended.run, ended.keeper, ended.outcome).catch((err: unknown) => this.log.error({ err, job_id: ended.run.job.job_id }, "posting an outcome failed unexpectedly; the job runs again once its lease lapses"));
    }
    await posting;
  }

  /** Runs a leased job; what to post once it is over, or nothing when its lease was lost meanwhile. */
  async #execute(run: LeasedRun): Promise<{ run: LeasedRun; keeper: LeaseKeeper; outcome: ExecutionOutcome } | undefined> {
    const { job } = run;
    const logCtx = { job_id: job.job_id, correlation_id: job.correlation_id, attempt: job.attempt, fencing_token: run.fencing_token };
    let handle: ExecutionHandle | undefined;
    // Heartbeats start with the lease: its clock runs from the grant, not from the start of the run.
    const keeper = new LeaseKeeper(this.client, run, this.log, (err) => this.#onLost(err, handle, logCtx));
    keeper.start();
    try {
      handle = await this.#pool.execute(
        {
          job_id: job.job_id,
          type: job.type,
          payload: job.payload,
          attempt: job.attempt,
          fencing_token: run.fencing_token,
          correlation_id: job.correlation_id,
          files: { transport: "http", gateway: this.config.gateway, credential: this.credential, lease_id: run.lease_id },
        },
        job.timeout_ms,
        { onProgress: (fraction) => (keeper.progress = fraction) },
      );
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

  /**
   * Posts a run's outcome (a handler error is a retryable failure, like a
   * crash or a timeout, each with its code), retrying transient failures
   * until the lease would have lapsed: past that the gateway refuses it
   * anyway, and the job runs again.
   */
  async #post(run: LeasedRun, keeper: LeaseKeeper, outcome: ExecutionOutcome): Promise<void> {
    await keeper.stop();
    const logCtx = { job_id: run.job.job_id, correlation_id: run.job.correlation_id, attempt: run.job.attempt };
    for (let failures = 1; !this.#revoked && !keeper.lost; failures++) {
      try {
        const ended = outcome.ok ? await this.client.result(run, outcome.value) : await this.client.failed(run, outcome.error, true);
        this.log.info({ ...logCtx, ok: outcome.ok, state: ended.state, duration_ms: outcome.duration_ms, ...(!outcome.ok && { error: outcome.error.code }) }, "leased job ended");
        return;
      } catch (err) {
        if (err instanceof UnauthorizedError) return this.#revoke();
        if (endsLease(err)) {
          this.log.warn({ ...logCtx, code: err.code, err: err.message }, "outcome refused: the lease is no longer this server's");
          return;
        }
        const left = keeper.expiresAt - Date.now();
        if (left <= 0) {
          this.log.error({ ...logCtx, err: (err as Error).message }, "outcome not posted before its lease lapsed: the job runs again");
          return;
        }
        const retryInMs = Math.min(left, backoffDelay(RETRY, failures));
        this.log.warn({ ...logCtx, err: (err as Error).message, retry_in_ms: retryInMs }, "posting the outcome failed; trying again");
        await sleep(retryInMs);
      }
    }
  }
}
