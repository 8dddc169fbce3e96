/**
 * `bosun dev`: nats-server (unless one answers at the URL already), one
 * supervisor and one gateway, as child processes of this one, and nothing
 * said to be up before it is. Ctrl-C, SIGTERM, SIGHUP (a closed terminal)
 * or the death of dev's own parent drain the gateway and the supervisor,
 * then stop nats-server; a second Ctrl-C stops at once. Whatever way dev
 * ends, even SIGKILL, it leaves no process behind (see processes.ts), and a
 * nats-server an earlier dev left running is stopped, not reused.
 *
 * The parts are separate so another layout can reuse them: nats-server.ts
 * starts one server (a cluster mode starts several), apps.ts the
 * supervisor and gateway, output.ts the pane they share.
 */
import type { Logger } from "pino";
import { App } from "./apps.js";
import { devRoles } from "../platform/nats-roles.js";
import { clusterReady, writeClusterConfigs } from "./cluster.js";
import { hostPort, startNatsServer, type DevNats } from "./nats-server.js";
import { DevOutput } from "./output.js";
import { DevError, portFree } from "./util.js";
import { rebuild, watchForChanges, type Change } from "./watch.js";

export interface DevOptions {
  natsUrl: string;
  /** The supervisor flags given to dev, passed on as they were. */
  supervisorArgs: string[];
  /** --metrics-port / BOSUN_METRICS_PORT; else dev picks the gateway's port + 1 (or any free one). */
  metricsPort: number | undefined;
  host: string;
  port: number;
  handlers: string | undefined;
  watch: boolean;
  dataDir: string;
  /** Three local nats-servers in one JetStream cluster (cluster.ts) instead of one; NATS_URL is then theirs. */
  cluster: boolean;
  /** The supervisor's drain grace, for the countdown's promise. */
  graceMs: number;
}

/** npm and a terminal can both deliver one Ctrl-C; two within this long count as one. */
const SAME_SIGNAL_MS = 500;
const PARENT_POLL_MS = 1000;
const GATEWAY_GRACE_MS = 10_000;
const CLUSTER_READY_MS = 30_000;

export async function runDev(opts: DevOptions): Promise<number> {
  return new DevSession(opts, await DevOutput.create()).run();
}

class DevSession {
  readonly log: Logger;
  readonly #nats: DevNats[] = [];
  /** Fresh role passwords per run: each process connects as its NATS role, as in production. */
  readonly #roles = devRoles();
  #natsUrl: string;
  readonly #apps: App[] = [];
  #stopping = false;
  #signalled = false;
  #forced = false;
  #firstSignalAt = 0;
  #unwatch: (() => void) | undefined;
  #reloads: Promise<void> = Promise.resolve();
  #requestStop: (code: number) => void = () => undefined;
  readonly #stopRequested = new Promise<number>((resolve) => (this.#requestStop = resolve));

  constructor(
    private readonly opts: DevOptions,
    private readonly out: DevOutput,
  ) {
    this.log = out.log;
    this.#natsUrl = opts.natsUrl;
  }

  async run(): Promise<number> {
    this.#handleSignals();
    let code = 0;
    try {
      await this.#startAll();
      if (!this.#stopping) {
        this.#announce();
        if (this.opts.watch) this.#unwatch = watchForChanges(this.opts.handlers, this.log, (change) => this.#reload(change));
      }
      code = await this.#stopRequested;
    } catch (err) {
      // A process stopped by our own Ctrl-C during start-up fails its start: that is no error.
      if (!this.#signalled) {
        this.out.stderr(`bosun dev: ${err instanceof Error ? err.message : String(err)}`);
        code = 1;
      }
    }
    await this.#stopAll();
    return this.#forced ? 130 : code;
  }

  async #startAll(): Promise<void> {
    const { opts } = this;
    if (!(await portFree(opts.host, opts.port))) throw new DevError(`port ${opts.port} on ${opts.host} is taken; choose another with --port N (or BOSUN_PORT)`);
    const metricsPort = opts.metricsPort ?? ((await portFree("127.0.0.1", opts.port + 1)) ? opts.port + 1 : 0);
    await this.#startNats();
    if (this.#stopping) return;

    const supervisorArgs = [...opts.supervisorArgs, ...(opts.metricsPort === undefined ? ["--metrics-port", String(metricsPort)] : [])];
    const supervisor = this.#app({
      name: "supervisor",
      args: supervisorArgs,
      graceMs: opts.graceMs,
      isReady: (l) => l.msg === "supervisor state" && l.to === "running",
      pick: (l) => (l.msg === "metrics listening" ? { metrics: l.url } : undefined),
    });
    const gateway = this.#app({
      name: "gateway",
      args: ["--port", String(opts.port), "--host", opts.host],
      graceMs: GATEWAY_GRACE_MS,
      // Listening is not enough: until it has NATS, it answers 503.
      isReady: (l) => l.msg === "NATS connected",
      pick: (l) => (typeof l.msg === "string" && l.msg.startsWith("Server listening at") ? { url: l.msg.slice("Server listening at ".length) } : undefined),
    });
    for (const app of [supervisor, gateway]) app.onUnexpectedExit = (info) => this.#appDied(app, info);
    await Promise.all([supervisor, gateway].map((app) => (this.#stopping ? undefined : app.start())));
  }

  async #startNats(): Promise<void> {
    const { opts } = this;
    if (!opts.cluster) {
      this.#nats.push(await startNatsServer({ url: opts.natsUrl, dataDir: opts.dataDir, log: this.log, roles: this.#roles }));
      return;
    }
    const { url, nodes } = writeClusterConfigs(opts.dataDir, hostPort(opts.natsUrl).port, this.#roles.configLine);
    this.#natsUrl = url;
    // Together: a node waits for the others' routes before its JetStream is usable.
    const started = await Promise.allSettled(
      nodes.map((node) => startNatsServer({ url: node.url, dataDir: opts.dataDir, log: this.log, name: node.name, configFile: node.configFile, roles: this.#roles })),
    );
    for (const s of started) if (s.status === "fulfilled") this.#nats.push(s.value);
    const failed = started.find((s): s is PromiseRejectedResult => s.status === "rejected");
    if (failed) throw failed.reason;
    if (this.#stopping) return;
    if (!(await clusterReady(nodes, CLUSTER_READY_MS))) throw new DevError(`the ${nodes.length} nats-servers did not form a JetStream cluster within ${CLUSTER_READY_MS / 1000} s; see their logs in ${opts.dataDir}`);
    this.log.info({ nats: url }, `a ${nodes.length}-node JetStream cluster is up; streams and buckets get 3 replicas`);
  }

  #app(spec: ConstructorParameters<typeof App>[0] & { name: "supervisor" | "gateway" }): App {
    // A server dev did not start has its own users: then a process is whoever the shell says (NATS_USER).
    const role = this.#nats.every((n) => n.child) ? this.#roles.envOf(spec.name) : {};
    const env = { ...process.env, ...role, NATS_URL: this.#natsUrl, BOSUN_DEV_PARENT_PID: String(process.pid) };
    const app = new App(spec, env, this.out, this.log);
    this.#apps.push(app);
    return app;
  }

  #announce(): void {
    const [supervisor, gateway] = this.#apps;
    const url = String(gateway!.facts.url ?? `http://${this.opts.host}:${this.opts.port}`);
    this.log.info(
      {
        gateway: url,
        docs: `${url}/docs`,
        metrics: `${url}/metrics`,
        supervisor_metrics: supervisor!.facts.metrics,
        nats: this.#natsUrl,
        pids: { nats_server: this.#nats[0]?.child?.pid, ...(this.opts.cluster && { nats_servers: this.#nats.map((n) => n.child?.pid) }), supervisor: supervisor!.pid, gateway: gateway!.pid },
      },
      `bosun dev is up at ${url}; Ctrl-C to stop`,
    );
  }

  #appDied(app: App, info: { code: number | null; signal: NodeJS.Signals | null }): void {
    if (this.#stopping) return;
    this.log.error({ child: app.spec.name, code: info.code, signal: info.signal }, `the ${app.spec.name} exited unexpectedly; stopping bosun dev`);
    this.#requestStop(1);
    void this.#stopAll();
  }

  #handleSignals(): void {
    // SIGHUP: a closed terminal (Node resets an inherited "ignore" at start, so nohup would not help anyway).
    for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(signal, () => this.#onStopSignal(signal));
    // Killed parent (a closed terminal's shell, a supervisor of dev): we are reparented.
    const parent = process.ppid;
    setInterval(() => {
      if (process.ppid !== parent) this.#onStopSignal("parent exited");
    }, PARENT_POLL_MS).unref();
  }

  #onStopSignal(why: NodeJS.Signals | "parent exited"): void {
    if (!this.#signalled) {
      this.#signalled = true;
      this.#firstSignalAt = Date.now();
      this.log.info(
        { signal: why, grace_s: Math.round(this.opts.graceMs / 1000) },
        "stopping: the gateway and the supervisor drain first (running jobs may finish); Ctrl-C again to stop at once",
      );
      this.#requestStop(0);
      void this.#stopAll();
      return;
    }
    if (why !== "SIGINT" || this.#forced || Date.now() - this.#firstSignalAt < SAME_SIGNAL_MS) return;
    this.#forced = true;
    this.log.warn("second Ctrl-C: stopping now; running jobs are killed and will run again on the next start");
    for (const app of this.#apps) app.kill();
  }

  /** Apps first (they drain against a live NATS), nats-server last. Safe to call again. */
  async #stopAll(): Promise<void> {
    this.#stopping = true;
    this.#unwatch?.();
    await Promise.all(this.#apps.map((app) => app.stop()));
    await Promise.all(this.#nats.map((n) => n.stop()));
  }

  #reload(change: Change): void {
    this.#reloads = this.#reloads.then(async () => {
      if (this.#stopping) return;
      const [supervisor, gateway] = this.#apps;
      try {
        if (change.kind === "source") {
          this.log.info({ file: change.file }, "source changed: rebuilding");
          const built = await rebuild();
          if (!built.ok) {
            this.log.error({ output: built.output.slice(0, 4000) }, "rebuild failed; still running the previous build");
            return;
          }
          await Promise.all([supervisor!.restart(), gateway!.restart()]);
        } else {
          await supervisor!.restart();
        }
        this.log.info({ file: change.file }, `restarted the ${change.kind === "source" ? "supervisor and the gateway" : "supervisor"} after a change`);
      } catch (err) {
        this.log.error({ file: change.file }, `${(err as Error).message}; fix it and save again`);
      }
    });
  }
}
