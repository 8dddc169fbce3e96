/**
 * A disposable nats-server with JetStream on a free port and a temp store
 * dir, torn down (process stopped, dir removed) when the test ends.
 */
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { connect } from "@nats-io/transport-node";
import { ManagedProcess, type ExitInfo } from "./processes.js";
import { freePort } from "./ports.js";
import { reportOnFailure, type TeardownHost } from "./teardown.js";
import { waitFor } from "./wait.js";

/** $NATS_SERVER_BIN, else the Debian package's binary (in /usr/sbin), else whatever PATH finds. */
export const NATS_SERVER_BIN =
  process.env.NATS_SERVER_BIN ?? ["/usr/sbin/nats-server", "/usr/bin/nats-server"].find((p) => existsSync(p)) ?? "nats-server";
const READY_TIMEOUT_MS = 15_000;

export interface NatsServerOptions {
  /** A config file (nats.conf with its roles, its store_dir pointed somewhere temporary); the port still comes from here. */
  configFile?: string;
  env?: Record<string, string>;
  /** Credentials of the readiness probe, when the config requires them. */
  probeAs?: { user: string; pass: string };
  /** Serve nats-server's monitoring endpoints (for subscribedSubjects). */
  monitor?: boolean;
}

export class NatsServer {
  #proc: ManagedProcess | undefined;

  private constructor(
    readonly port: number,
    readonly storeDir: string,
    private readonly opts: NatsServerOptions = {},
    private readonly monitorPort?: number,
  ) {}

  /** Every subject some client is subscribed to now, once per subscription (needs `monitor`). */
  async subscribedSubjects(): Promise<string[]> {
    if (this.monitorPort === undefined) throw new Error("started without monitor: true");
    const res = await fetch(`http://127.0.0.1:${this.monitorPort}/connz?subs=1&limit=1024`);
    const body = (await res.json()) as { connections?: { subscriptions_list?: string[] }[] };
    return (body.connections ?? []).flatMap((c) => c.subscriptions_list ?? []);
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  get process(): ManagedProcess | undefined {
    return this.#proc;
  }

  get running(): boolean {
    return this.#proc?.running ?? false;
  }

  /** Starts a server and registers its teardown on `t`. */
  static async start(t: TeardownHost, opts: NatsServerOptions = {}): Promise<NatsServer> {
    const storeDir = await mkdtemp(path.join(os.tmpdir(), "bosun-test-nats-"));
    let server: NatsServer | undefined;
    t.teardown(async () => {
      await server?.stop().catch(() => undefined);
      await rm(storeDir, { recursive: true, force: true }).catch(() => undefined);
    });
    reportOnFailure(t, () => server?.process?.tail(20) ?? "nats-server never started");
    // The port was free a moment ago; if someone takes it first, pick another.
    let lastError: unknown;
    for (let attempt = 0; attempt < 3; attempt++) {
      server = new NatsServer(await freePort(), storeDir, opts, opts.monitor ? await freePort() : undefined);
      try {
        await server.#launch();
        return server;
      } catch (err) {
        lastError = err;
        await server.stop().catch(() => undefined);
      }
    }
    throw lastError;
  }

  /** SIGTERM and wait for the exit (SIGKILL if it takes over 5 s). */
  async stop(): Promise<ExitInfo | undefined> {
    return this.#proc?.stop(5000);
  }

  /** SIGKILL: the abrupt crash. */
  async kill(): Promise<ExitInfo | undefined> {
    return this.#proc?.kill();
  }

  /** Starts again on the same port and store dir (stops the old process first). */
  async restart(): Promise<void> {
    await this.stop();
    await this.#launch();
  }

  async #launch(): Promise<void> {
    // A config file brings its own JetStream block (store_dir included); the port is still this one.
    const config = [...(this.opts.configFile ? ["-c", this.opts.configFile] : ["-js", "-sd", this.storeDir]), ...(this.monitorPort === undefined ? [] : ["-m", String(this.monitorPort)])];
    this.#proc = new ManagedProcess(NATS_SERVER_BIN, [...config, "-a", "127.0.0.1", "-p", String(this.port)], {
      name: `nats-server:${this.port}`,
      env: { ...process.env, ...this.opts.env },
    });
    const proc = this.#proc;
    await waitFor(
      async () => {
        const nc = await connect({ servers: this.url, timeout: 500, reconnect: false, noAsyncTraces: true, ...this.opts.probeAs });
        await nc.close();
        return true;
      },
      {
        timeoutMs: READY_TIMEOUT_MS,
        intervalMs: 50,
        what: `nats-server on ${this.url} to accept connections`,
        abortIf: () => (proc.running ? undefined : new Error(`nats-server exited: ${JSON.stringify(proc.exitInfo)}`)),
      },
    ).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}\n${proc.tail()}`);
    });
  }
}
