/**
 * Every process the benchmark starts: nats-server, redis-server, Bosun
 * supervisors and gateway, BullMQ worker hosts. Each runs in its own process
 * group (so its children go with it), logs to a file in one temp dir, and is
 * killed at the end of the run, on error, on Ctrl-C, or when this process exits.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { setTimeout as delay } from "node:timers/promises";
import { connect } from "@nats-io/transport-node";

/** The repository root: the nearest folder above this file whose package.json is Bosun's. */
export function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (true) {
    const pkg = path.join(dir, "package.json");
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, "utf8")) as { name?: string }).name === "bosun") return dir;
    const up = path.dirname(dir);
    if (up === dir) throw new Error("cannot find Bosun's package.json above the benchmark");
    dir = up;
  }
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => (port ? resolve(port) : reject(new Error("no free port from the OS"))));
    });
  });
}

/** Polls `probe` until it returns true; throws after `timeoutMs`. */
export async function waitUntil(what: string, probe: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      if (await probe()) return;
    } catch (err) {
      last = err;
    }
    await delay(50);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last instanceof Error ? `: ${last.message}` : ""}`);
}

/** Rejects with "`what` not within `ms` ms" unless `work` settles first. */
export async function withTimeout<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} not within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** A binary's full path: PATH first, then the sbin folders Debian installs servers to (often not in a user's PATH). */
export function findBinary(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? "").split(path.delimiter), "/usr/sbin", "/usr/local/sbin", "/sbin", "/usr/bin", "/usr/local/bin"];
  for (const dir of dirs) {
    if (dir && existsSync(path.join(dir, name))) return path.join(dir, name);
  }
  return undefined;
}

/** A server binary's path, installing its Debian package first if it is missing (the harness runs as root here). */
export function ensureDebianPackage(binary: string, pkg: string): string {
  const found = findBinary(binary);
  if (found) return found;
  process.stdout.write(`bench: ${binary} not found; installing the Debian package: apt-get install -y ${pkg}\n`);
  if (process.getuid?.() !== 0) throw new Error(`${binary} is missing and this is not root: run "sudo apt-get install -y ${pkg}" first`);
  const install = () => spawnSync("apt-get", ["install", "-y", pkg], { stdio: "inherit", env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } });
  if (install().status !== 0) {
    process.stdout.write("bench: apt-get install failed; running apt-get update and trying once more\n");
    spawnSync("apt-get", ["update"], { stdio: "inherit" });
    install();
  }
  const installed = findBinary(binary);
  if (!installed) throw new Error(`could not install ${pkg}`);
  process.stdout.write(`bench: installed ${pkg} (${installed}). Debian may also have registered a system service for it; the benchmark never uses it.\n`);
  return installed;
}

export interface Proc {
  readonly name: string;
  readonly pid: number;
  readonly child: ChildProcess;
  readonly logFile: string;
  readonly exited: Promise<void>;
  /** How it ended ("exit code 1", "signal SIGKILL"), once it has. */
  readonly howEnded: () => string;
}

export class Procs {
  readonly root = repoRoot();
  readonly tmp = mkdtempSync(path.join(os.tmpdir(), "bosun-bench-"));
  readonly #live = new Set<Proc>();
  /** Every process group ever started, for the final check that none is left. */
  readonly #groups: number[] = [];
  #seq = 0;

  constructor() {
    // Last resort: whatever is still running when this process exits dies with it.
    process.on("exit", () => {
      for (const p of this.#live) killGroup(p.pid, "SIGKILL");
    });
  }

  /** Bosun's CLI: this checkout's build, or BENCH_CLI (another build's dist/cli/main.js, or dist/cli.js of an older one, for A/B runs). */
  get cli(): string {
    return process.env.BENCH_CLI ? path.resolve(process.env.BENCH_CLI) : path.join(this.root, "dist", "cli", "main.js");
  }

  /** Starts a process in its own process group, stdout and stderr to a log file. */
  spawn(name: string, command: string, args: string[], opts: { env?: NodeJS.ProcessEnv; ipc?: boolean } = {}): Proc {
    const logFile = path.join(this.tmp, `${String(++this.#seq).padStart(3, "0")}-${name.replace(/[^\w.-]/g, "_")}.log`);
    const fd = openSync(logFile, "a");
    const child = spawn(command, args, {
      cwd: this.root,
      env: { ...process.env, ...opts.env },
      stdio: opts.ipc ? ["ignore", fd, fd, "ipc"] : ["ignore", fd, fd],
      detached: true,
    });
    closeSync(fd);
    if (child.pid === undefined) throw new Error(`could not start ${name} (${command})`);
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    const howEnded = () => (child.signalCode ? `signal ${child.signalCode}` : child.exitCode !== null ? `exit code ${child.exitCode}` : "still running");
    const proc: Proc = { name, pid: child.pid, child, logFile, exited, howEnded };
    this.#live.add(proc);
    this.#groups.push(proc.pid);
    void exited.then(() => this.#live.delete(proc));
    child.once("error", () => this.#live.delete(proc));
    return proc;
  }

  /** SIGTERM, then SIGKILL to the whole group after `graceMs`; always reaps leftovers of the group. */
  async stop(proc: Proc, graceMs = 15_000): Promise<void> {
    if (proc.child.exitCode === null && proc.child.signalCode === null) {
      try {
        process.kill(proc.pid, "SIGTERM");
      } catch {
        // already gone
      }
      const timer = setTimeout(() => killGroup(proc.pid, "SIGKILL"), graceMs);
      await proc.exited;
      clearTimeout(timer);
    }
    // Children of the group (execution processes, sandboxed processors) must not outlive it.
    killGroup(proc.pid, "SIGKILL");
    this.#live.delete(proc);
  }

  async stopAll(): Promise<void> {
    // Clients first (supervisors, gateways, workers), servers last.
    const servers = [...this.#live].filter((p) => p.name === "nats-server" || p.name === "redis-server" || p.name.startsWith("nats-cluster"));
    await Promise.all([...this.#live].filter((p) => !servers.includes(p)).map((p) => this.stop(p, 5000)));
    await Promise.all(servers.map((p) => this.stop(p, 5000)));
  }

  /** Process groups this harness started that still have a live member (should be none after stopAll). */
  leftovers(): number[] {
    return this.#groups.filter((pgid) => {
      try {
        process.kill(-pgid, 0);
        return true;
      } catch (err) {
        return (err as NodeJS.ErrnoException).code === "EPERM";
      }
    });
  }

  /** How a process ended and the last lines of its log, for error reports. */
  logTail(proc: Proc, lines = 20): string {
    let tail = "";
    try {
      tail = readFileSync(proc.logFile, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
    } catch {
      // no log
    }
    return `(pid ${proc.pid}, ${proc.howEnded()}; ${tail ? `last lines of its log:\n${tail}` : "its log is empty"})`;
  }

  removeTmp(): void {
    rmSync(this.tmp, { recursive: true, force: true });
  }

  async startNats(): Promise<{ url: string; proc: Proc }> {
    const binary = ensureDebianPackage("nats-server", "nats-server");
    const port = await freePort();
    const proc = this.spawn("nats-server", binary, ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", path.join(this.tmp, "jetstream"), "-n", "bosun-bench"]);
    const url = `nats://127.0.0.1:${port}`;
    await waitUntil("nats-server", async () => {
      const nc = await connect({ servers: url, timeout: 500, reconnect: false });
      await nc.close();
      return true;
    });
    return { url, proc };
  }

  async startRedis(): Promise<{ port: number; proc: Proc }> {
    const binary = ensureDebianPackage("redis-server", "redis-server");
    const port = await freePort();
    const args = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", this.tmp, "--daemonize", "no"];
    const proc = this.spawn("redis-server", binary, args);
    await waitUntil("redis-server", () => redisPing(port));
    return { port, proc };
  }

  /**
   * A JetStream cluster of `nodes` nats-servers on loopback (distinct ports),
   * each including the shipped nats-cluster/common.conf, as `bosun dev
   * --cluster 3` and the cluster tests run them. Resolves once every node
   * routes to the others and JetStream has a meta leader.
   */
  async startNatsCluster(nodes = 3): Promise<{ url: string; procs: Proc[] }> {
    const binary = ensureDebianPackage("nats-server", "nats-server");
    const common = path.join(this.root, "nats-cluster", "common.conf");
    const ports = await Promise.all(Array.from({ length: nodes }, async () => ({ client: await freePort(), route: await freePort() })));
    const routes = ports.map((p) => `nats://127.0.0.1:${p.route}`).join(", ");
    const procs = ports.map((p, i) => {
      const conf = path.join(this.tmp, `cluster-n${i + 1}.conf`);
      writeFileSync(
        conf,
        [
          `server_name: bench-n${i + 1}`,
          `listen: 127.0.0.1:${p.client}`,
          `jetstream { store_dir: "${path.join(this.tmp, `cluster-n${i + 1}`)}" }`,
          `cluster { name: bosun_bench, listen: 127.0.0.1:${p.route}, routes: [${routes}] }`,
          `include "${path.relative(this.tmp, common)}"`,
        ].join("\n"),
      );
      return this.spawn(`nats-cluster-n${i + 1}`, binary, ["-c", conf]);
    });
    const urls = ports.map((p) => `nats://127.0.0.1:${p.client}`);
    await waitUntil(
      "a 3-node JetStream cluster",
      async () => {
        for (const url of urls) {
          const nc = await connect({ servers: url, timeout: 500, reconnect: false });
          try {
            if ((nc.info?.connect_urls?.length ?? 0) < nodes) return false;
            const info = JSON.parse(new TextDecoder().decode((await nc.request("$JS.API.INFO", "", { timeout: 2000 })).data)) as { error?: unknown };
            if (info.error) return false;
          } finally {
            await nc.close();
          }
        }
        return true;
      },
      30_000,
    );
    return { url: urls.join(","), procs };
  }

  startSupervisor(natsUrl: string, opts: { workerId: string; queue: string; pool: number; isolation?: "process" | "thread" }): Proc {
    const args = ["supervisor", "--worker-id", opts.workerId, "--queues", opts.queue, "--min", String(opts.pool), "--max", String(opts.pool)];
    // The default said only when it is not, so an older build (BENCH_CLI) runs too.
    if (opts.isolation && opts.isolation !== "process") args.push("--isolation", opts.isolation);
    return this.spawn(`supervisor-${opts.workerId}`, process.execPath, [...profiling(), this.cli, ...args], { env: bosunEnv(natsUrl) });
  }

  async startGateway(natsUrl: string): Promise<{ port: number; proc: Proc }> {
    const port = await freePort();
    const proc = this.spawn("gateway", process.execPath, [...profiling(), this.cli, "gateway", "--host", "127.0.0.1", "--port", String(port)], { env: bosunEnv(natsUrl) });
    await waitUntil("the gateway's /healthz", () => httpOk(port, "/healthz"));
    return { port, proc };
  }

  /** `bosun compute-worker` with these flags: like the other Bosun processes, profiled and at their log level, but told nothing of NATS. */
  startComputeWorker(name: string, args: string[]): Proc {
    return this.spawn(name, process.execPath, [...profiling(), this.cli, "compute-worker", ...args], { env: { BOSUN_LOG_LEVEL: logLevel() } });
  }
}

/** With BENCH_CPU_PROF=dir, Bosun's processes write V8 CPU profiles there (execution processes and threads too). */
export function profiling(sub = ""): string[] {
  const dir = process.env.BENCH_CPU_PROF;
  return dir ? ["--cpu-prof", "--cpu-prof-dir", path.resolve(dir, sub)] : [];
}

function bosunEnv(natsUrl: string): NodeJS.ProcessEnv {
  return { NATS_URL: natsUrl, BOSUN_LOG_LEVEL: logLevel() };
}

function logLevel(): string {
  return process.env.BENCH_BOSUN_LOG_LEVEL ?? "warn";
}

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // no process left in the group
  }
}

function redisPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    socket.setTimeout(500, () => socket.destroy());
    socket.once("error", () => resolve(false));
    socket.once("close", () => resolve(false));
    socket.once("connect", () => socket.write("PING\r\n"));
    socket.once("data", (data) => {
      resolve(data.toString().startsWith("+PONG"));
      socket.end();
    });
  });
}

function httpOk(port: number, urlPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get({ host: "127.0.0.1", port, path: urlPath, timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.once("error", () => resolve(false));
    req.once("timeout", () => req.destroy());
  });
}
