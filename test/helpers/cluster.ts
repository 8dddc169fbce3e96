/**
 * A real JetStream cluster for tests: N nats-servers, each in its own
 * network namespace with its own address (see netns.ts), or on loopback
 * with distinct ports where namespaces are not allowed (then a "cut" is a
 * SIGSTOP of the node: unresponsive rather than unreachable, and the test
 * output says so). Nodes are killed, restarted, wiped and cut off by the
 * tests; everything (processes, namespaces, store dirs) goes at teardown,
 * also when the test failed.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { connect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import type { Launcher } from "./bosun.js";
import { NATS_SERVER_BIN } from "./nats-server.js";
import { NetnsLab, netnsAvailable } from "./netns.js";
import { freePort } from "./ports.js";
import { ManagedProcess } from "./processes.js";
import { reportOnFailure, type TeardownHost } from "./teardown.js";
import { waitFor } from "./wait.js";

/** The shipped settings every node includes: the tests run what ships. */
export const COMMON_CONF = fileURLToPath(new URL("../../nats-cluster/common.conf", import.meta.url));
const READY_TIMEOUT_MS = 30_000;


export interface ClusterNode {
  index: number;
  name: string;
  host: string;
  port: number;
  clusterPort: number;
  storeDir: string;
  configFile: string;
  /** Runs a command where this node lives (its namespace), for supervisors "on" the node. */
  launch: Launcher;
  proc: ManagedProcess | undefined;
}

export class NatsCluster {
  readonly nodes: ClusterNode[] = [];
  #lab: NetnsLab | undefined;
  #frozen = new Set<number>();

  private constructor(readonly dir: string) {}

  /** "netns" (own addresses, links the test can cut) or "loopback" (distinct ports). */
  get mode(): "netns" | "loopback" {
    return this.#lab ? "netns" : "loopback";
  }

  /** Every node's client URL, comma-separated, as NATS_URL takes them. */
  get url(): string {
    return this.nodes.map((n) => this.urlOf(n.index)).join(",");
  }

  urlOf(i: number): string {
    const n = this.nodes[i]!;
    return `nats://${n.host}:${n.port}`;
  }

  static async start(t: TeardownHost, opts: { nodes?: number; name?: string } = {}): Promise<NatsCluster> {
    const count = opts.nodes ?? 3;
    const cluster = new NatsCluster(await mkdtemp(path.join(os.tmpdir(), "bosun-test-cluster-")));
    t.teardown(() => cluster.destroy());
    reportOnFailure(t, () => cluster.nodes.map((n) => n.proc?.tail(12) ?? `${n.name}: not running`).join("\n"));
    if (netnsAvailable()) cluster.#lab = NetnsLab.create(count);
    for (let i = 0; i < count; i++) {
      const lab = cluster.#lab;
      const host = lab ? lab.nodes[i]!.address : "127.0.0.1";
      const node: ClusterNode = {
        index: i,
        name: `n${i + 1}`,
        host,
        port: lab ? 4222 : await freePort(),
        clusterPort: lab ? 6222 : await freePort(),
        storeDir: path.join(cluster.dir, `n${i + 1}`),
        configFile: path.join(cluster.dir, `n${i + 1}.conf`),
        launch: lab ? (command, args) => lab.wrap(i, command, args) : (command, args) => [command, [...args]],
        proc: undefined,
      };
      cluster.nodes.push(node);
    }
    const routes = cluster.nodes.map((n) => `nats://${n.host}:${n.clusterPort}`);
    for (const node of cluster.nodes) {
      await writeFile(
        node.configFile,
        [
          `server_name: ${node.name}`,
          `listen: ${node.host}:${node.port}`,
          `jetstream { store_dir: "${node.storeDir}", max_memory_store: 256MB, max_file_store: 2GB }`,
          `cluster { name: ${opts.name ?? "bosun_test"}, listen: ${node.host}:${node.clusterPort}, routes: [${routes.join(", ")}] }`,
          // nats-server resolves an include relative to the including file.
          `include "${path.relative(cluster.dir, COMMON_CONF)}"`,
          "",
        ].join("\n"),
      );
    }
    await Promise.all(cluster.nodes.map((n) => cluster.#launch(n.index)));
    await cluster.waitReady();
    return cluster;
  }

  /** Until every running node routes to every other and JetStream has a meta leader. */
  async waitReady(timeoutMs = READY_TIMEOUT_MS): Promise<void> {
    const running = this.nodes.filter((n) => n.proc?.running && !this.#frozen.has(n.index));
    await waitFor(
      async () => {
        for (const node of running) {
          const nc = await connect({ servers: this.urlOf(node.index), timeout: 1000, reconnect: false, noAsyncTraces: true });
          try {
            if ((nc.info?.connect_urls?.length ?? 0) < running.length) return false;
            const info = JSON.parse(new TextDecoder().decode((await nc.request("$JS.API.INFO", "", { timeout: 2000 })).data)) as { error?: unknown };
            if (info.error) return false;
          } finally {
            await nc.close();
          }
        }
        return true;
      },
      { timeoutMs, intervalMs: 200, what: `a ${running.length}-node JetStream cluster` },
    );
  }

  /** The node (index) that leads a stream now, or undefined during an election. */
  async leaderOf(jsm: JetStreamManager, stream: string): Promise<number | undefined> {
    const info = await jsm.streams.info(stream);
    const leader = info.cluster?.leader;
    const index = this.nodes.findIndex((n) => n.name === leader);
    return index >= 0 ? index : undefined;
  }

  /** Waits until a stream has a leader and every replica is current; returns the leader. */
  async waitStreamHealthy(jsm: JetStreamManager, stream: string, timeoutMs = 60_000): Promise<number> {
    return waitFor(
      async () => {
        const info = await jsm.streams.info(stream);
        const leader = this.nodes.findIndex((n) => n.name === info.cluster?.leader);
        const replicas = info.cluster?.replicas ?? [];
        return leader >= 0 && replicas.every((r) => r.current && !r.offline) ? leader : undefined;
      },
      { timeoutMs, intervalMs: 250, what: `stream ${stream} to have a leader and current replicas` },
    );
  }

  async kill(i: number): Promise<void> {
    await this.nodes[i]!.proc?.kill();
  }

  async stop(i: number): Promise<void> {
    await this.nodes[i]!.proc?.stop(10_000);
  }

  /** Starts a stopped node again, on its config and store dir. */
  async restart(i: number): Promise<void> {
    await this.nodes[i]!.proc?.stop(10_000);
    await this.#launch(i);
  }

  /** Empties a stopped node's store dir: it comes back with nothing and must catch up. */
  async wipe(i: number): Promise<void> {
    await rm(this.nodes[i]!.storeDir, { recursive: true, force: true });
  }

  /** Cuts node i off (its link down; on loopback: the node frozen with SIGSTOP). */
  cut(i: number): void {
    if (this.#lab) return this.#lab.cut(i);
    this.#frozen.add(i);
    process.kill(this.nodes[i]!.proc!.pid, "SIGSTOP");
  }

  heal(i: number): void {
    if (this.#lab) return this.#lab.heal(i);
    this.#frozen.delete(i);
    process.kill(this.nodes[i]!.proc!.pid, "SIGCONT");
  }

  /** A client connected to every node (reconnecting across them), closed at teardown. */
  async client(t: TeardownHost): Promise<{ nc: NatsConnection; jsm: JetStreamManager }> {
    const { natsOptions } = await import("../../src/platform/nats-options.js");
    const nc = await connect({ ...natsOptions(this.url, "bosun-test"), reconnectTimeWait: 200 });
    t.teardown(() => nc.close().catch(() => undefined));
    return { nc, jsm: await jetstreamManager(nc, { timeout: 5000 }) };
  }

  async destroy(): Promise<void> {
    for (const i of this.#frozen) this.heal(i);
    await Promise.all(this.nodes.map((n) => n.proc?.stop(5000)));
    this.#lab?.remove();
    await rm(this.dir, { recursive: true, force: true }).catch(() => undefined);
  }

  async #launch(i: number): Promise<void> {
    const node = this.nodes[i]!;
    const proc = (node.proc = new ManagedProcess(...node.launch(NATS_SERVER_BIN, ["-c", node.configFile]), { name: `nats-server:${node.name}` }));
    await waitFor(
      async () => {
        const nc = await connect({ servers: this.urlOf(i), timeout: 500, reconnect: false, noAsyncTraces: true });
        await nc.close();
        return true;
      },
      {
        timeoutMs: READY_TIMEOUT_MS,
        intervalMs: 100,
        what: `${node.name} to accept connections`,
        abortIf: () => (proc.running ? undefined : new Error(`${node.name} exited: ${JSON.stringify(proc.exitInfo)}\n${proc.tail()}`)),
      },
    );
  }
}
