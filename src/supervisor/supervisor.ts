/**
 * A supervisor: a long-lived actor that owns a pool of execution processes,
 * pulls jobs for its queues, runs them, publishes results and heartbeats,
 * and serves the `bosun` NATS API. Its lifecycle is one state union, and
 * every transition is logged.
 */
import os from "node:os";
import type { NatsConnection, Subscription } from "@nats-io/nats-core";
import { nuid } from "@nats-io/nats-core";
import type { Service } from "@nats-io/services";
import type { Logger } from "pino";
import type { WorkerInfo } from "../contract/index.js";
import { loadHandlers } from "../actors/handlers.js";
import { retentionOf, type SupervisorConfig } from "../platform/config.js";
import { connectNats } from "../platform/nats.js";
import { provisionTopology } from "../platform/topology.js";
import { serveForwardedSubmits, startApi } from "./api.js";
import { Gate, KeyStore, type AuthSettings } from "../auth/index.js";
import { Heartbeats } from "./heartbeat.js";
import { Intake } from "./intake.js";
import { JobActions } from "./job-actions.js";
import { Pool, poolSettingsOf } from "../actors/pool/pool.js";
import { SubmitPacer } from "./submit-pacer.js";
import { Runner } from "./runner.js";
import { CancelRegistry, IdempotencyIndex, JobStore, LaneRegistry } from "../records/index.js";
import { BandsThenTurns } from "./lane-order.js";
import { QueueLimits } from "./queue-limits.js";
import { PendingCounts } from "./pending-counts.js";
import { Scheduler } from "./scheduler.js";
import { Operations } from "./operations.js";
import { OpsFlagsView } from "../platform/ops.js";
import { serveMetrics, SupervisorMetrics } from "../platform/metrics.js";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { StreamWriter } from "../platform/stream-writer.js";
import { forEachGuarded, guard } from "../platform/guard.js";
import { Schedules } from "../schedules/index.js";
import { Compute } from "../compute/index.js";
import { LeaseLimits } from "../compute/lease-limits.js";
import { Settler } from "./settle.js";
import { Files } from "../files/index.js";
import { openFileStores } from "../files/stores.js";
import { Targets } from "../targets/index.js";

/** How often a supervisor removes cancel requests whose job has ended (left by a supervisor that stopped). */
const CANCEL_SWEEP_MS = 10 * 60_000;

const DRAIN_COUNTDOWN_MS = 5000;

export type SupervisorState = "starting" | "running" | "draining" | "stopped";

export class Supervisor {
  readonly workerId: string;
  readonly startedAt = new Date();
  #state: SupervisorState = "starting";
  #nc: NatsConnection | undefined;
  #pool: Pool | undefined;
  #runner: Runner | undefined;
  #heartbeats: Heartbeats | undefined;
  #service: Service | undefined;
  #writer: StreamWriter | undefined;
  #scheduler: Scheduler | undefined;
  #schedules: Schedules | undefined;
  #cancels: CancelRegistry | undefined;
  #lanes: LaneRegistry | undefined;
  #keys: KeyStore | undefined;
  #sweeper: NodeJS.Timeout | undefined;
  #ops: OpsFlagsView | undefined;
  #operations: Operations | undefined;
  #metricsServer: Server | undefined;
  #forwarded: Subscription | undefined;
  #jobTypes: string[] = [];
  #limits: QueueLimits | undefined;
  #compute: Compute | undefined;
  #leaseLimits: LeaseLimits | undefined;

  constructor(
    private readonly config: SupervisorConfig,
    private readonly log: Logger,
    private readonly auth: AuthSettings,
  ) {
    this.workerId = config.worker_id ?? `${os.hostname().replace(/[^A-Za-z0-9_-]/g, "-").slice(0, 40)}-${nuid.next().slice(-8)}`;
  }

  get state(): SupervisorState {
    return this.#state;
  }

  async start(): Promise<void> {
    const { config, log, workerId } = this;
    // The maintenance tasks' payload checks at submit read the temp dir as the tasks do.
    if (config.temp_dir) process.env.BOSUN_TEMP_DIR = config.temp_dir;
    const handlers = await loadHandlers(config.handlers, config.builtins);
    this.#jobTypes = [...handlers.keys()];
    const nc = (this.#nc = await connectNats(config.nats_url, `bosun-supervisor-${workerId}`, log));
    if (config.retention_ms === undefined && config.results_ttl_ms !== undefined) log.warn("--results-ttl-ms is deprecated: use --retention-ms");
    const topologyOptions = { retentionMs: retentionOf(config), idempotencyWindowMs: config.idempotency_window_ms, replicas: config.replicas };
    const topology = await provisionTopology(nc, topologyOptions, log);
    const writer = (this.#writer = new StreamWriter(nc));
    const store = new JobStore(writer, topology.jsm, log);
    const lanes = (this.#lanes = new LaneRegistry(topology.lanesKv, log));

    const metrics = new SupervisorMetrics(() => this.#pool?.snapshot() ?? []);
    const heartbeats = (this.#heartbeats = new Heartbeats(nc, {
      workerId,
      intervalMs: config.heartbeat_ms,
      log,
      snapshot: () => this.info(),
      writer,
      // Before the runner exists nothing is taken, so there is no gate to close.
      onWrite: (write) => (this.#runner ? this.#runner.watchWrite(write) : write.catch(() => undefined)),
    }));
    const pool = (this.#pool = new Pool({
      ...poolSettingsOf(config),
      env: {
        NATS_URL: config.nats_url,
        BOSUN_CLEANUP_MAX_AGE_HOURS: String(config.cleanup_max_age_hours),
        ...(config.temp_dir && { BOSUN_TEMP_DIR: config.temp_dir }),
      },
      log,
      metrics,
      onChange: () => heartbeats.changed(),
    }));
    // A cancel request outlives its job's end by two leases: any copy of the job in flight has met it by then.
    const cancels = (this.#cancels = new CancelRegistry(topology.cancelsKv, topology.jsm, log, 2 * config.lease_ms));
    const ops = (this.#ops = new OpsFlagsView(log));
    const keys = (this.#keys = new KeyStore(topology.keysKv, log, this.auth.adminKeyHash));
    const gate = new Gate(this.auth, keys, lanes);
    const operations = (this.#operations = new Operations({ nc, jsm: topology.jsm, opsKv: topology.opsKv, ops, heartbeats, lanes, pool, workerId, gate, log }));
    const pending = new PendingCounts(topology.jsm, lanes);
    const limits = (this.#limits = new QueueLimits({
      workerId,
      heartbeatMs: config.heartbeat_ms,
      limitsOf: (queue) => ops.limits(queue),
      live: () => heartbeats.live(),
      draining: () => heartbeats.draining(),
      // Remote leases are within the limits too (compute/lease-limits.ts).
      remoteServed: (queue) => this.#compute?.liveServers().some((s) => s.queues.includes(queue)) ?? false,
      uncounted: (queue) => this.#leaseLimits?.uncounted(queue) ?? 0,
      onRoom: () => this.#roomAgain(),
      onUse: () => heartbeats.changed(),
      log,
    }));
    const pacer = new SubmitPacer(
      () => runner.saturated,
      () => metrics.submitsHeld.inc(),
    );
    const runner = (this.#runner = new Runner(nc, topology.jsm, store, pool, {
      workerId,
      cancels,
      lanes,
      laneOrder: new BandsThenTurns((code) => lanes.get(code)?.band),
      limits,
      metrics,
      queues: config.queues,
      target: config.target,
      leaseMs: config.lease_ms,
      onRunEnded: () => pacer.ran(),
      othersServe: ({ type, queue }) =>
        heartbeats.serversOf(type, queue, config.target).some((id) => id !== workerId) || (this.#compute?.serves(queue, config.target) ?? false),
      log,
      canStoreOutcomes: () => heartbeats.confirm(),
    }));
    const scheduler = (this.#scheduler = new Scheduler(nc, store, cancels, log));
    const intake = new Intake({
      nc,
      store,
      lanes,
      cancels,
      idempotency: new IdempotencyIndex(topology.idempotencyKv, topology.jsm, log),
      handlers,
      queues: config.queues,
      workerId,
      serversOf: (type, queue, target) => heartbeats.serversOf(type, queue, target),
      remoteServes: (queue, target) => this.#compute?.serves(queue, target) ?? false,
      target: config.target,
      activeTarget: (queue) => ops.activeTarget(queue),
      forgetWorker: (id) => heartbeats.forget(id),
      submissionsPaused: (queue) => ops.submissionsPaused(queue),
      maxPending: (queue) => ops.limits(queue).max_pending,
      pending,
      pace: () => pacer.turn(),
      defaults: {
        timeout_ms: config.default_timeout_ms,
        max_attempts: config.default_max_attempts,
        backoff: { type: "exponential", delay_ms: config.default_backoff_ms, max_delay_ms: config.default_max_backoff_ms },
      },
      metrics,
      log,
    });

    const schedules = (this.#schedules = new Schedules(topology.schedulesKv, topology.jsm, intake, log));
    const leaseLimits = (this.#leaseLimits = new LeaseLimits({
      workerId,
      limits,
      leasesKv: topology.leasesKv,
      reporters: () => [...heartbeats.live(), ...heartbeats.draining()].map((w) => w.worker_id),
      log,
    }));
    const compute = (this.#compute = new Compute({
      nc,
      jsm: topology.jsm,
      store,
      lanes,
      cancels,
      outcomes: new Settler(store, cancels, metrics, log, workerId),
      leasesKv: topology.leasesKv,
      writer,
      serversKv: topology.computeServersKv,
      tokensKv: topology.enrollTokensKv,
      leaseMs: config.lease_ms,
      leaseLimits,
      log,
    }));
    gate.checkServersWith(compute.credentials);
    const targets = new Targets({ opsKv: topology.opsKv, ops, supervisors: () => heartbeats.live(), servers: () => compute.liveServers() });
    metrics.watchSchedules(() => schedules.summary());
    metrics.watchPendingByBand(async () =>
      (await operations.queues())
        .filter((q) => config.queues.includes(q.queue))
        .flatMap((q) => Object.entries(q.pending_by_band).map(([band, pending]) => ({ queue: q.queue, band, pending }))),
    );
    metrics.watchQueueLimits(() => limits.samples(config.queues, (queue) => pending.last(queue)));

    pool.start();
    await lanes.start();
    await keys.start();
    // Supervisors decide: one started without auth beside others with it answers everyone.
    if (!this.auth.on && keys.list().length > 0) log.warn({ keys: keys.list().length }, "auth is OFF on this supervisor although API keys exist: it allows every request; set BOSUN_ADMIN_KEY like on the others");
    await cancels.start();
    await ops.watch(topology.opsKv);
    await heartbeats.start(topology.jsm);
    operations.start();
    await compute.start();
    const files = new Files({
      stores: await openFileStores(nc, log, topology.fileListsKv),
      status: (jobId) => store.status(jobId),
      checkLease: (jobId, leaseId, headers) => compute.checkLease(jobId, leaseId, headers),
    });
    const actions = new JobActions({ store, cancels, lanes, metrics, log });
    this.#service = await startApi(nc, { workerId, intake, actions, operations, keys, gate, schedules: schedules.api, compute: compute.api, files: files.api, targets: targets.api, computeEnabled: () => ops.computeEndpointsEnabled, log });
    this.#forwarded = serveForwardedSubmits(nc, workerId, intake, gate, log);
    await runner.start();
    limits.start();
    // A limit raised or cleared is room at once (a lowered one needs nothing: pulls just stop).
    ops.onChange(() => this.#roomAgain());
    scheduler.start();
    await schedules.start();
    const sweep = () =>
      void cancels
        .sweep(async (jobId) => (await store.finalRecord(jobId)) !== null)
        .catch((err: unknown) => log.warn({ err }, "cancel request sweep failed"));
    sweep();
    this.#sweeper = setInterval(guard(log, "cancel request sweep", sweep), CANCEL_SWEEP_MS).unref();
    if (config.metrics_port !== undefined) {
      this.#metricsServer = await serveMetrics(metrics.registry, config.metrics_host, config.metrics_port);
      log.info({ url: `http://${config.metrics_host}:${(this.#metricsServer.address() as AddressInfo).port}/metrics` }, "metrics listening");
    }
    void forEachGuarded(nc.status(), log, "reconnect handling", (s) => {
      if (s.type !== "reconnect") return;
      runner.reconnected();
      scheduler.reconnected();
      // A restarted nats-server has lost what it kept in memory (the heartbeats stream).
      provisionTopology(nc, topologyOptions, log).catch((err: unknown) => log.warn({ err }, "could not restore the topology after a reconnect"));
    });
    // "running" promises that requests find us: the server must have our subscriptions first.
    await nc.flush();
    this.#transition("running");
  }

  /**
   * Graceful drain: stop intake and pulling, let running jobs finish within
   * grace_ms (then kill them: their messages are not acked, so they run
   * again elsewhere), and close the connection.
   */
  async stop(): Promise<void> {
    if (this.#state === "draining" || this.#state === "stopped") return;
    this.#transition("draining");
    this.#heartbeats?.leave();
    await this.#service?.stop().catch(() => undefined);
    this.#forwarded?.unsubscribe();
    this.#operations?.stop();
    this.#schedules?.stop();
    await this.#compute?.stop();
    this.#ops?.stop();
    await this.#scheduler?.stop();
    const countdown = this.#drainCountdown();
    await Promise.all([this.#runner?.drain(), this.#pool?.drain(this.config.grace_ms)]);
    clearInterval(countdown);
    await this.#runner?.stop();
    this.#limits?.stop();
    clearInterval(this.#sweeper);
    this.#cancels?.stop();
    this.#lanes?.stop();
    this.#keys?.stop();
    await this.#heartbeats?.stop();
    this.#writer?.close();
    await this.#nc?.drain().catch(() => undefined);
    this.#metricsServer?.close();
    this.#transition("stopped");
  }

  info(): WorkerInfo {
    const processes = this.#pool?.snapshot() ?? [];
    const busy = processes.filter((p) => p.state === "busy").length;
    return {
      worker_id: this.workerId,
      started_at: this.startedAt.toISOString(),
      hostname: os.hostname(),
      min_workers: this.config.min,
      max_workers: this.config.max,
      pool_size: processes.length,
      idle_count: processes.filter((p) => p.state === "idle").length,
      busy_count: busy,
      processes,
      queues: [...this.config.queues],
      target: this.config.target,
      job_types: this.#jobTypes,
      supervision: this.#pool?.supervision() ?? { decision: "restart", crashes_in_window: 0, spawn_paused_ms: 0 },
      heartbeat_ms: this.config.heartbeat_ms,
      schedules: this.#schedules?.summary() ?? { active: 0, next_run_at: null },
      queue_use: this.#limits?.use() ?? {},
    };
  }

  /** A limited queue may have room again: the runner and the lease desk both pull. */
  #roomAgain(): void {
    this.#runner?.refill();
    this.#leaseLimits?.room();
  }

  /** While jobs still run, says every few seconds how many and how long until they are killed. */
  #drainCountdown(): NodeJS.Timeout {
    const deadline = Date.now() + this.config.grace_ms;
    const say = () => {
      const running = this.#pool?.snapshot().filter((p) => p.state === "busy").length ?? 0;
      const secondsLeft = Math.max(0, Math.round((deadline - Date.now()) / 1000));
      if (running === 0) return;
      this.log.info(
        { worker_id: this.workerId, running, seconds_left: secondsLeft },
        `draining: ${running} job(s) still running, killed in ${secondsLeft} s unless they finish (a second Ctrl-C or SIGTERM stops now)`,
      );
    };
    say();
    return setInterval(say, DRAIN_COUNTDOWN_MS);
  }

  #transition(to: SupervisorState): void {
    const from = this.#state;
    this.#state = to;
    this.log.info({ worker_id: this.workerId, from, to }, "supervisor state");
  }
}
