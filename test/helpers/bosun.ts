/**
 * Bosun processes from dist/cli/main.js: supervisors and gateways started against
 * a test's nats-server, ready once their log says so, stopped at teardown.
 */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { ManagedProcess, withoutNodeOptions, type LogLine } from "./processes.js";
import { freePort } from "./ports.js";
import { reportOnFailure, type TeardownHost } from "./teardown.js";

export const CLI = fileURLToPath(new URL("../../dist/cli/main.js", import.meta.url));
const READY_TIMEOUT_MS = 20_000;

/** Environment for a child: no BOSUN_* or NATS_URL leaking in from the shell running the tests. */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k.startsWith("BOSUN_") || k === "NATS_URL" || k.startsWith("TAP") || k === "NODE_OPTIONS") continue;
    env[k] = v;
  }
  return { ...env, ...extra };
}

export interface SupervisorOptions {
  queues: string[];
  /** Extra CLI flags, e.g. ["--min", "1", "--max", "1"]. */
  args?: string[];
  workerId?: string;
  env?: Record<string, string>;
  /** Node flags before the CLI (e.g. ["--import", setup]); execution processes inherit them. */
  nodeArgs?: string[];
  /** Where to run it: e.g. inside a cluster node's network namespace (see cluster.ts). */
  launch?: Launcher;
}

/** Turns a command line into the one that runs it somewhere else (a network namespace). */
export type Launcher = (command: string, args: readonly string[]) => [string, string[]];
const here: Launcher = (command, args) => [command, [...args]];

export class BosunSupervisor {
  constructor(
    readonly proc: ManagedProcess,
    readonly workerId: string | undefined,
  ) {}

  get pid(): number {
    return this.proc.pid;
  }

  /** Pids of the execution processes this supervisor has started, from its log. */
  childPids(): number[] {
    return this.proc.logs.filter((l) => l.msg === "execution process started").map((l) => Number(l.child_pid));
  }

  /** Log lines with this msg (or a msg matching it). */
  logsWith(msg: string | RegExp): Record<string, unknown>[] {
    return this.proc.logs.filter((l) => (typeof msg === "string" ? l.msg === msg : typeof l.msg === "string" && msg.test(l.msg)));
  }

  stop(): ReturnType<ManagedProcess["stop"]> {
    return this.proc.stop(5000);
  }

  kill(): ReturnType<ManagedProcess["kill"]> {
    return this.proc.kill();
  }
}

const isSupervisorRunning = (l: LogLine): boolean => l.json?.msg === "supervisor state" && l.json.to === "running";

/** Starts `bosun supervisor` in its own process group and waits for it to be running. */
export async function startSupervisor(t: TeardownHost, natsUrl: string, opts: SupervisorOptions): Promise<BosunSupervisor> {
  const args = ["supervisor", "--queues", opts.queues.join(","), "--grace-ms", "1000", ...(opts.args ?? [])];
  if (opts.workerId) args.push("--worker-id", opts.workerId);
  const proc = new ManagedProcess(...(opts.launch ?? here)(...withoutNodeOptions(process.execPath, [...(opts.nodeArgs ?? []), CLI, ...args])), {
    name: `supervisor[${opts.workerId ?? opts.queues.join(",")}]`,
    env: cleanEnv({ NATS_URL: natsUrl, ...opts.env }),
    group: true,
  });
  t.teardown(async () => {
    await proc.stop(5000).catch(() => undefined);
  });
  reportOnFailure(t, () => proc.tail(30));
  await proc.waitForLog(isSupervisorRunning, READY_TIMEOUT_MS, "supervisor state running");
  return new BosunSupervisor(proc, opts.workerId);
}

export interface GatewayOptions {
  args?: string[];
  env?: Record<string, string>;
  /** NATS is not up yet: ready once it listens (it answers 503 until NATS is reachable). */
  natsDown?: boolean;
  nodeArgs?: string[];
  /** Listen on this port (a gateway coming back where one was); else a free one. */
  port?: number;
}

export class BosunGateway {
  constructor(
    readonly proc: ManagedProcess,
    readonly port: number,
  ) {}

  get baseUrl(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  stop(): ReturnType<ManagedProcess["stop"]> {
    return this.proc.stop(5000);
  }
}

/** Starts `bosun gateway` on a free port and waits for fastify's listening line (and its NATS connection). */
export async function startGateway(t: TeardownHost, natsUrl: string, opts: GatewayOptions = {}): Promise<BosunGateway> {
  let lastError: unknown;
  for (let attempt = 0; attempt < (opts.port === undefined ? 3 : 1); attempt++) {
    const port = opts.port ?? (await freePort());
    const proc = new ManagedProcess(...withoutNodeOptions(process.execPath, [...(opts.nodeArgs ?? []), CLI, "gateway", "--port", String(port), "--grace-ms", "500", ...(opts.args ?? [])]), {
      name: `gateway:${port}`,
      env: cleanEnv({ NATS_URL: natsUrl, ...opts.env }),
      group: true,
    });
    t.teardown(async () => {
      await proc.stop(5000).catch(() => undefined);
    });
    reportOnFailure(t, () => proc.tail(30));
    try {
      await proc.waitForLog((l) => typeof l.json?.msg === "string" && l.json.msg.startsWith("Server listening at"), READY_TIMEOUT_MS, "Server listening");
      if (!opts.natsDown) await proc.waitForLog((l) => l.json?.msg === "NATS connected", READY_TIMEOUT_MS, "NATS connected");
      return new BosunGateway(proc, port);
    } catch (err) {
      // Most likely the port was taken between picking and binding: try another.
      lastError = err;
      await proc.stop(1000);
    }
  }
  throw lastError;
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs `node dist/cli/main.js ...args` to completion (killed after timeoutMs). */
export function runCli(args: string[], opts: { env?: Record<string, string>; timeoutMs?: number } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(...withoutNodeOptions(process.execPath, [CLI, ...args]), { env: cleanEnv(opts.env), stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 15_000);
    child.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}
