/**
 * `bosun compute-worker`: the reference remote compute server. HTTP only,
 * no NATS: it enrolls once (or reuses its saved credential), keeps one
 * lease request long-polling per execution actor, runs each leased job in
 * the same pool a supervisor uses (timeouts, crashes, recycling), heartbeats
 * the lease with the job's progress, and posts the outcome. A heartbeat's
 * 409 (`cancelled`, or `lease_stale`: expired, past its timeout, revoked)
 * kills the run; a 401 (revoked) stops the worker. docs/compute.md.
 */
import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "pino";
import { z } from "zod";
import { EnrolledServer, LeaseReply, type LeasedJob, type Lease } from "../contract/index.js";
import { Pool, type ExecutionHandle } from "../actors/pool/pool.js";
import { HttpTransport } from "../client/http.js";
import { routeTable } from "../client/routes.js";
import { CancelledError, LeaseStaleError, UnauthorizedError } from "../client/errors.js";
import type { ComputeWorkerConfig } from "../platform/config.js";
import { failStartup, onShutdownSignals } from "../platform/lifecycle.js";
import { createLogger } from "../platform/logger.js";
import { logUnhandledRejections } from "../platform/guard.js";

const SavedCredential = EnrolledServer.extend({ gateway: z.string() });
type SavedCredential = z.infer<typeof SavedCredential>;
/** A gateway that cannot be reached, or answers 5xx: wait this long before the next call. */
const RETRY_MS = 1000;
/** Heartbeats at least this often, whatever the lease says. */
const MIN_HEARTBEAT_MS = 250;

export async function runComputeWorker(config: ComputeWorkerConfig): Promise<void> {
  const log = createLogger("bosun.compute-worker");
  logUnhandledRejections(log);
  let saved: SavedCredential;
  try {
    saved = await credentialFor(config, log);
  } catch (err) {
    failStartup(err, log);
  }
  const worker = new ComputeWorker(config, saved, log);
  onShutdownSignals(() => worker.stop(), log);
  await worker.run();
}

/** The saved credential for this gateway, or a new one from the enroll token (saved 0600). */
async function credentialFor(config: ComputeWorkerConfig, log: Logger): Promise<SavedCredential> {
  const file = config.credential_file ?? path.join(os.homedir(), ".bosun", `compute-${config.name}.json`);
  const text = await readFile(file, "utf8").catch(() => undefined);
  const parsed = text === undefined ? undefined : SavedCredential.safeParse(JSON.parse(text));
  if (parsed?.success && parsed.data.gateway === config.gateway) {
    log.info({ server_id: parsed.data.server_id, file }, "using the saved compute credential");
    return parsed.data;
  }
  if (!config.enroll_token) throw new Error(`no saved credential for ${config.gateway} in ${file}: pass --enroll-token`);
  const client = new HttpTransport(routeTable(), { url: config.gateway });
  const enrolled = EnrolledServer.parse(await client.call("compute_servers_enroll", { enroll_token: config.enroll_token, name: config.name, ...(config.target && { target: config.target }) }));
  const saved = { ...enrolled, gateway: config.gateway };
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  await writeFile(file, JSON.stringify(saved), { mode: 0o600 });
  await chmod(file, 0o600);
  log.info({ server_id: saved.server_id, queues: saved.queues, target: saved.target, file }, "enrolled as a compute server; credential saved");
  return saved;
}

class ComputeWorker {
  readonly #client: HttpTransport;
  readonly #pool: Pool;
  readonly #stop = new AbortController();
  #revoked = false;

  constructor(
    private readonly config: ComputeWorkerConfig,
    private readonly server: SavedCredential,
    private readonly log: Logger,
  ) {
    this.#client = new HttpTransport(routeTable(), { url: config.gateway, key: server.credential });
    this.#pool = new Pool({
      isolation: config.isolation,
      min: config.min,
      max: config.max,
      maxExecutions: config.max_executions,
      maxMemoryMb: config.max_memory_mb,
      idleTimeoutMs: config.idle_timeout_ms,
      killGraceMs: config.kill_grace_ms,
      handlersPath: config.handlers,
      builtins: config.builtins,
      env: {},
      maxRestarts: config.max_restarts,
      restartWindowMs: config.restart_window_ms,
      log,
      onChange: () => undefined,
    });
  }

  async run(): Promise<void> {
    this.#pool.start();
    this.log.info({ server_id: this.server.server_id, gateway: this.config.gateway, max: this.config.max }, "compute worker running");
    await Promise.all(Array.from({ length: this.config.max }, () => this.#leaseLoop()));
    if (this.#revoked) {
      await this.#pool.drain(0);
      this.log.error({ server_id: this.server.server_id }, "this compute server's credential was refused (revoked?): stopping");
      process.exit(1);
    }
  }

  /** SIGTERM: no more leases; running jobs get the grace period, then their outcomes are posted. */
  async stop(): Promise<void> {
    this.#stop.abort();
    await this.#pool.drain(this.config.grace_ms);
  }

  async #leaseLoop(): Promise<void> {
    const signal = this.#stop.signal;
    while (!signal.aborted && !this.#revoked) {
      let leased: { job: LeasedJob; lease: Lease } | undefined;
      try {
        const reply = LeaseReply.parse(await this.#client.call("compute_lease", { wait_ms: this.config.wait_ms, ...(this.config.types && { types: this.config.types }) }, { signal }) ?? { job: null, lease: null });
        leased = reply.job ? { job: reply.job, lease: reply.lease! } : undefined;
      } catch (err) {
        if (signal.aborted) return;
        if (err instanceof UnauthorizedError) {
          this.#revoked = true;
          return;
        }
        this.log.warn({ err }, "lease request failed; trying again");
        await sleep(RETRY_MS, undefined, { signal }).catch(() => undefined);
        continue;
      }
      if (leased) await this.#run(leased.job, leased.lease);
    }
  }

  async #run(job: LeasedJob, lease: Lease): Promise<void> {
    const logCtx = { job_id: job.job_id, correlation_id: job.correlation_id, attempt: job.attempt, fencing_token: lease.fencing_token };
    let progress: number | undefined;
    let handle: ExecutionHandle;
    try {
      handle = await this.#pool.execute(
        { job_id: job.job_id, type: job.type, payload: job.payload, attempt: job.attempt, fencing_token: lease.fencing_token, correlation_id: job.correlation_id },
        job.timeout_ms,
        { onProgress: (p) => (progress = p) },
      );
    } catch (err) {
      // Never started (draining, or no actor could start): the lease lapses and the job runs elsewhere.
      this.log.warn({ ...logCtx, err }, "leased job not started; its lease will lapse");
      return;
    }
    this.log.info(logCtx, "leased job started");
    let expiresAt = Date.parse(lease.expires_at);
    let lost = false;
    const beat = async () => {
      try {
        const renewed = (await this.#client.call("compute_heartbeat", { job_id: job.job_id, lease_id: lease.lease_id, ...(progress !== undefined && { progress }) })) as { expires_at: string };
        expiresAt = Date.parse(renewed.expires_at);
      } catch (err) {
        if (err instanceof CancelledError || err instanceof LeaseStaleError || err instanceof UnauthorizedError) {
          lost = true;
          if (err instanceof UnauthorizedError) this.#revoked = true;
          this.log.warn({ ...logCtx, code: (err as { code: string }).code }, "lease ended by the gateway: killing the run");
          handle.kill("cancelled");
          return;
        }
        this.log.warn({ ...logCtx, err }, "heartbeat failed; trying again");
      }
    };
    let timer: NodeJS.Timeout | undefined;
    const schedule = () => {
      timer = setTimeout(() => void beat().finally(() => !lost && schedule()), Math.max(MIN_HEARTBEAT_MS, (expiresAt - Date.now()) / 3));
    };
    schedule();
    const outcome = await handle.outcome;
    clearTimeout(timer);
    if (lost) return;
    const end = outcome.ok
      ? this.#post("compute_result", { job_id: job.job_id, lease_id: lease.lease_id, result: outcome.value ?? null })
      : this.#post("compute_failed", { job_id: job.job_id, lease_id: lease.lease_id, error: outcome.error, retryable: true });
    await end;
    this.log.info({ ...logCtx, ok: outcome.ok, duration_ms: outcome.duration_ms }, "leased job ended");
  }

  /** Posts an outcome, retrying through an unreachable gateway until the lease would have lapsed anyway. */
  async #post(operation: "compute_result" | "compute_failed", body: Record<string, unknown>): Promise<void> {
    for (let tries = 0; tries < 30; tries++) {
      try {
        await this.#client.call(operation, body);
        return;
      } catch (err) {
        if (err instanceof CancelledError || err instanceof LeaseStaleError || err instanceof UnauthorizedError) {
          this.log.warn({ job_id: body.job_id, code: (err as { code: string }).code }, "outcome refused: the lease is no longer this server's");
          return;
        }
        await sleep(RETRY_MS);
      }
    }
  }
}
