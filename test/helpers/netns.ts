/**
 * Network namespaces for cluster tests: one namespace per node, each with a
 * veth pair into one bridge in the host namespace, so every node has its
 * own address and a link the test can cut (`ip link set ... down` inside
 * the node's namespace) and heal. Needs root and `ip`; `netnsAvailable()`
 * says whether this machine allows it (tests fall back to loopback).
 *
 * Everything created is named `bsn<id>...` and recorded in a marker file
 * with the owner's pid, so a test process that died without its teardown
 * is cleaned up by the next one.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { isAlive } from "./wait.js";

const MARKER_PREFIX = "bosun-netns-";
const ip = (args: string[]) => execFileSync("ip", args, { stdio: ["ignore", "pipe", "pipe"] }).toString();
const ipQuiet = (args: string[]) => spawnSync("ip", args, { stdio: "ignore" }).status === 0;

let available: boolean | undefined;

/** True when `ip netns add` works here (root with CAP_NET_ADMIN), checked once with a throwaway namespace. */
export function netnsAvailable(): boolean {
  if (available !== undefined) return available;
  if (process.env.BOSUN_TEST_NO_NETNS) return (available = false);
  const probe = `bsnprobe${process.pid % 100000}`;
  available = ipQuiet(["netns", "add", probe]);
  if (available) ipQuiet(["netns", "del", probe]);
  return available;
}

export interface NetnsNode {
  ns: string;
  address: string;
  /** The veth end inside the namespace: down = the node is cut off. */
  innerLink: string;
}

/** A bridge and one namespace per node, on a random 10.x.y.0/24. */
export class NetnsLab {
  readonly nodes: NetnsNode[] = [];
  readonly #bridge: string;
  readonly #hostLinks: string[] = [];
  readonly #marker: string;
  #removed = false;

  private constructor(
    readonly id: string,
    readonly subnet: string,
  ) {
    this.#bridge = `bsn${id}br`;
    this.#marker = path.join(os.tmpdir(), `${MARKER_PREFIX}${id}`);
  }

  static create(nodeCount: number): NetnsLab {
    sweepAbandoned();
    const id = Math.random().toString(36).slice(2, 6);
    const subnet = `10.${100 + Math.floor(Math.random() * 150)}.${Math.floor(Math.random() * 250)}`;
    const lab = new NetnsLab(id, subnet);
    writeFileSync(lab.#marker, JSON.stringify({ pid: process.pid, id, nodes: nodeCount }));
    try {
      ip(["link", "add", lab.#bridge, "type", "bridge"]);
      ip(["addr", "add", `${subnet}.254/24`, "dev", lab.#bridge]);
      ip(["link", "set", lab.#bridge, "up"]);
      for (let i = 1; i <= nodeCount; i++) {
        const ns = `bsn${id}n${i}`;
        const hostLink = `bsn${id}h${i}`;
        const innerLink = `bsn${id}c${i}`;
        ip(["netns", "add", ns]);
        ip(["link", "add", hostLink, "type", "veth", "peer", "name", innerLink]);
        lab.#hostLinks.push(hostLink);
        ip(["link", "set", innerLink, "netns", ns]);
        ip(["link", "set", hostLink, "master", lab.#bridge]);
        ip(["link", "set", hostLink, "up"]);
        ip(["netns", "exec", ns, "ip", "addr", "add", `${subnet}.${i}/24`, "dev", innerLink]);
        ip(["netns", "exec", ns, "ip", "link", "set", innerLink, "up"]);
        ip(["netns", "exec", ns, "ip", "link", "set", "lo", "up"]);
        lab.nodes.push({ ns, address: `${subnet}.${i}`, innerLink });
      }
    } catch (err) {
      lab.remove();
      throw err;
    }
    return lab;
  }

  /** The command line that runs `command` inside node i's namespace (same pid: ip execs it). */
  wrap(i: number, command: string, args: readonly string[]): [string, string[]] {
    return ["ip", ["netns", "exec", this.nodes[i]!.ns, command, ...args]];
  }

  /** Node i's link down: its server and every process in its namespace are cut off from the rest. */
  cut(i: number): void {
    const node = this.nodes[i]!;
    ip(["netns", "exec", node.ns, "ip", "link", "set", node.innerLink, "down"]);
  }

  heal(i: number): void {
    const node = this.nodes[i]!;
    ip(["netns", "exec", node.ns, "ip", "link", "set", node.innerLink, "up"]);
  }

  /** Removes links, bridge and namespaces; kill the processes inside first. Never throws. */
  remove(): void {
    if (this.#removed) return;
    this.#removed = true;
    removeLab(this.id, this.nodes.length || 8);
    rmSync(this.#marker, { force: true });
  }
}

function removeLab(id: string, nodeCount: number): void {
  for (let i = 1; i <= nodeCount; i++) {
    ipQuiet(["link", "del", `bsn${id}h${i}`]);
    ipQuiet(["netns", "del", `bsn${id}n${i}`]);
  }
  ipQuiet(["link", "del", `bsn${id}br`]);
}

/** Labs whose owner process is gone (a test killed before its teardown): removed. */
function sweepAbandoned(): void {
  for (const file of readdirSync(os.tmpdir())) {
    if (!file.startsWith(MARKER_PREFIX)) continue;
    const marker = path.join(os.tmpdir(), file);
    try {
      const { pid, id, nodes } = JSON.parse(readFileSync(marker, "utf8")) as { pid: number; id: string; nodes: number };
      if (isAlive(pid)) continue;
      removeLab(id, nodes);
    } catch {
      // unreadable marker: drop it
    }
    if (existsSync(marker)) rmSync(marker, { force: true });
  }
}
