/**
 * `bosun dev` runs for tests: on free ports (gateway and NATS) with a temp
 * data dir, its JSON output parsed, every pid it reports tracked, and
 * whatever is left of it killed (by pid) and removed at teardown.
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { CLI, cleanEnv } from "./bosun.js";
import { ManagedProcess, withoutNodeOptions, type ExitInfo } from "./processes.js";
import { freePort } from "./ports.js";
import { reportOnFailure, type TeardownHost } from "./teardown.js";
import { isAlive, waitFor } from "./wait.js";

export interface DevRunOptions {
  /** Extra arguments after `dev` (the port and data dir flags are added unless given here). */
  args?: string[];
  env?: Record<string, string>;
  /** Pass the gateway port as BOSUN_PORT instead of --port. */
  portFromEnv?: boolean;
  /** Run dev under `sh -c '... & wait'`, so the test can kill dev's parent. */
  underShell?: boolean;
  /** The data dir (default: a fresh temp dir). */
  dataDir?: string;
  cwd?: string;
  /** Command to run instead of `node dist/cli/main.js` (e.g. `npx bosun`), as [command, args before "dev"]. */
  command?: [string, string[]];
}

export interface UpLine {
  gateway: string;
  docs: string;
  metrics: string;
  supervisor_metrics: string;
  nats: string;
  pids: { nats_server?: number; nats_servers?: number[]; supervisor: number; gateway: number };
}

export class DevRun {
  private constructor(
    readonly proc: ManagedProcess,
    readonly port: number,
    readonly natsUrl: string,
    readonly dataDir: string,
  ) {}

  static async start(t: TeardownHost, opts: DevRunOptions = {}): Promise<DevRun> {
    const port = await freePort();
    const natsUrl = `nats://127.0.0.1:${await freePort()}`;
    const dataDir = opts.dataDir ?? (await mkdtemp(path.join(os.tmpdir(), "bosun-test-dev-")));
    const args = ["dev", "--data-dir", dataDir, ...(opts.portFromEnv ? [] : ["--port", String(port)]), ...(opts.args ?? [])];
    const env = cleanEnv({ NATS_URL: natsUrl, ...(opts.portFromEnv && { BOSUN_PORT: String(port) }), ...opts.env });
    const [command, argv] = opts.command ? [opts.command[0], [...opts.command[1], ...args]] : withoutNodeOptions(process.execPath, [CLI, ...args]);
    const quoted = [command, ...argv].map((a) => `'${a.replaceAll("'", "'\\''")}'`).join(" ");
    const proc = opts.underShell
      ? new ManagedProcess("/bin/sh", ["-c", `${quoted} & wait`], { name: "sh -c bosun dev", env, cwd: opts.cwd })
      : new ManagedProcess(command, argv, { name: "bosun dev", env, cwd: opts.cwd });
    const run = new DevRun(proc, port, natsUrl, dataDir);
    t.teardown(async () => {
      await proc.stop(45_000);
      for (const pid of run.pids()) if (isAlive(pid)) process.kill(pid, "SIGKILL");
      if (!opts.dataDir) await rm(dataDir, { recursive: true, force: true });
    });
    reportOnFailure(t, () => proc.tail(40));
    return run;
  }

  get logs(): Record<string, unknown>[] {
    return this.proc.logs;
  }

  logsWith(msg: string | RegExp): Record<string, unknown>[] {
    return this.logs.filter((l) => (typeof msg === "string" ? l.msg === msg : typeof l.msg === "string" && msg.test(l.msg)));
  }

  /** Waits for "bosun dev is up"; fails at once if dev exits first. */
  async up(timeoutMs = 45_000): Promise<UpLine> {
    const line = await this.proc.waitForLog((l) => typeof l.json?.msg === "string" && l.json.msg.startsWith("bosun dev is up"), timeoutMs, "bosun dev is up");
    return line.json as unknown as UpLine;
  }

  /** Dev's own pid (from its log lines: under a shell it is not our child). */
  devPid(): number | undefined {
    const own = this.logs.find((l) => l.name === "bosun.dev");
    return own ? Number(own.pid) : undefined;
  }

  /** Every process this dev reported: itself, nats-server, supervisor, gateway, execution processes. */
  pids(): number[] {
    const up = this.logs.find((l) => typeof l.msg === "string" && l.msg.startsWith("bosun dev is up")) as unknown as UpLine | undefined;
    const children = this.logs.filter((l) => l.msg === "execution process started").map((l) => Number(l.child_pid));
    const all = [this.devPid(), up?.pids.nats_server, ...(up?.pids.nats_servers ?? []), up?.pids.supervisor, up?.pids.gateway, ...children];
    return [...new Set(all.filter((p): p is number => typeof p === "number" && p > 0))];
  }

  signal(signal: NodeJS.Signals): void {
    process.kill(this.devPid() ?? this.proc.pid, signal);
  }

  /** Resolves with dev's exit (the shell's, under one). */
  exited(timeoutMs: number): Promise<ExitInfo> {
    return waitFor(() => this.proc.exitInfo, { timeoutMs, intervalMs: 50, what: "bosun dev to exit" });
  }

  /** Waits until none of `pids` is alive; returns those still alive at the deadline. */
  async gone(pids: number[], timeoutMs: number): Promise<number[]> {
    await waitFor(() => pids.every((p) => !isAlive(p)), { timeoutMs, intervalMs: 50, what: "every process of bosun dev to be gone" }).catch(() => undefined);
    return pids.filter(isAlive);
  }
}
