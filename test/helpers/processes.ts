/**
 * Child processes started by tests: output capture, waiting for a log line,
 * and a stop that always ends in the process (and its process group) being
 * gone. Every child is also tracked so that a test process that exits early
 * still kills what it started.
 */
import { spawn, type ChildProcess, type SpawnOptions } from "node:child_process";
import { waitFor } from "./wait.js";

const tracked = new Set<ManagedProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Last resort (a test file dying before its teardowns ran): kill synchronously.
  process.on("exit", () => {
    for (const p of tracked) p.killNow();
  });
}

export interface LogLine {
  raw: string;
  /** The line parsed as JSON, or undefined when it is not a JSON object. */
  json: Record<string, unknown> | undefined;
}

export interface StartOptions extends Pick<SpawnOptions, "env" | "cwd"> {
  /** Own process group, so stop() also reaches grandchildren (execution processes). */
  group?: boolean;
  /** Label for error messages. */
  name: string;
}

/**
 * tap's process tracking hooks every spawn and puts its loader into the
 * child's NODE_OPTIONS. Bosun processes must run as users run them (no test
 * loader, no extra signal handlers, no start-up cost), so node children are
 * started through `env -u NODE_OPTIONS`, which drops it before exec'ing node
 * (same pid, same process group).
 */
export function withoutNodeOptions(command: string, args: readonly string[]): [string, string[]] {
  const drop = ["NODE_OPTIONS", "_TAPJS_PROCESSINFO_CWD_", "_TAPJS_PROCESSINFO_EXCLUDE_", "_TAPJS_PROCESSINFO_EXTERNAL_ID_"];
  return ["/usr/bin/env", [...drop.flatMap((v) => ["-u", v]), command, ...args]];
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export class ManagedProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly name: string;
  readonly stdoutLines: LogLine[] = [];
  readonly stderrLines: string[] = [];
  readonly exited: Promise<ExitInfo>;
  /** Resolves once stdout and stderr have closed: the process and every child that shared them are gone. */
  readonly closed: Promise<void>;
  exitInfo: ExitInfo | undefined;
  /** Signals this helper sent, for telling our kills from someone else's in failure reports. */
  readonly signalsSent: string[] = [];
  readonly #group: boolean;

  constructor(command: string, args: readonly string[], opts: StartOptions) {
    installExitHook();
    this.name = opts.name;
    this.#group = opts.group ?? false;
    this.child = spawn(command, args, {
      env: opts.env,
      cwd: opts.cwd,
      detached: this.#group,
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.child.once("error", (err) => this.stderrLines.push(`spawn error: ${err.message}`));
    if (this.child.pid === undefined) throw new Error(`${opts.name}: could not spawn ${command}`);
    this.pid = this.child.pid;
    tracked.add(this);
    this.exited = new Promise((resolve) => {
      this.child.once("exit", (code, signal) => {
        this.exitInfo = { code, signal };
        resolve(this.exitInfo);
      });
    });
    this.closed = new Promise((resolve) => this.child.once("close", () => resolve()));
    this.#lines(this.child.stdout!, (line) => {
      let json: Record<string, unknown> | undefined;
      if (line.startsWith("{")) {
        try {
          const parsed: unknown = JSON.parse(line);
          if (typeof parsed === "object" && parsed !== null) json = parsed as Record<string, unknown>;
        } catch {
          json = undefined;
        }
      }
      this.stdoutLines.push({ raw: line, json });
    });
    this.#lines(this.child.stderr!, (line) => this.stderrLines.push(line));
  }

  get running(): boolean {
    return this.exitInfo === undefined;
  }

  /** JSON log lines (pino) seen so far. */
  get logs(): Record<string, unknown>[] {
    return this.stdoutLines.flatMap((l) => (l.json ? [l.json] : []));
  }

  /** Resolves with the first log line matching, failing early if the process exits first. */
  async waitForLog(match: (line: LogLine) => boolean, timeoutMs = 15_000, what = "log line"): Promise<LogLine> {
    // Lines already read count even if the process has exited since.
    const seen = this.stdoutLines.find(match);
    if (seen) return seen;
    return waitFor(() => this.stdoutLines.find(match), {
      timeoutMs,
      what: `${this.name}: ${what}`,
      intervalMs: 20,
      abortIf: () => (this.exitInfo && !this.stdoutLines.some(match) ? new ExitedError(this, what) : undefined),
    }).catch((err: unknown) => {
      if (err instanceof ExitedError) throw err;
      throw new Error(`${(err as Error).message}\n${this.tail()}`);
    });
  }

  /** Last lines of output, for failure messages. */
  tail(n = 15): string {
    const out = this.stdoutLines.slice(-n).map((l) => `  out| ${l.raw}`);
    const err = this.stderrLines.slice(-n).map((l) => `  err| ${l}`);
    const state = [
      this.exitInfo ? `exited ${JSON.stringify(this.exitInfo)}` : "running",
      `signals sent by the test: ${this.signalsSent.length > 0 ? this.signalsSent.join(",") : "none"}`,
    ].join("; ");
    return [`--- ${this.name} (pid ${this.pid}, ${state}) ---`, ...out, ...err].join("\n");
  }

  /**
   * SIGTERM (to the process only, so it can shut its children down itself),
   * then SIGKILL to the whole group if it has not exited within `graceMs`.
   * Never throws.
   */
  async stop(graceMs = 5000): Promise<ExitInfo> {
    if (this.running) {
      this.#signal("SIGTERM", false);
      const timer = setTimeout(() => this.#signal("SIGKILL", true), graceMs);
      try {
        await this.exited;
      } finally {
        clearTimeout(timer);
      }
    }
    this.#reapGroup();
    tracked.delete(this);
    return this.exitInfo!;
  }

  /** SIGKILL to the process (and its group), and wait for the exit. Never throws. */
  async kill(): Promise<ExitInfo> {
    this.#signal("SIGKILL", true);
    await this.exited;
    this.#reapGroup();
    tracked.delete(this);
    return this.exitInfo!;
  }

  /** Synchronous SIGKILL, for process exit hooks. */
  killNow(): void {
    this.#signal("SIGKILL", true);
    this.#reapGroup();
  }

  #signal(signal: NodeJS.Signals, wholeGroup: boolean): void {
    if (!this.running) return;
    this.signalsSent.push(`${signal}@${new Date().toISOString().slice(11, 23)}`);
    try {
      if (wholeGroup && this.#group) process.kill(-this.pid, signal);
      else this.child.kill(signal);
    } catch {
      // already gone
    }
  }

  /** Grandchildren left in the group after its leader exited. */
  #reapGroup(): void {
    if (!this.#group) return;
    try {
      process.kill(-this.pid, "SIGKILL");
    } catch {
      // no process left in the group
    }
  }

  #lines(stream: NodeJS.ReadableStream, onLine: (line: string) => void): void {
    let buffered = "";
    stream.setEncoding("utf8");
    stream.on("data", (chunk: string) => {
      buffered += chunk;
      let nl: number;
      while ((nl = buffered.indexOf("\n")) >= 0) {
        onLine(buffered.slice(0, nl));
        buffered = buffered.slice(nl + 1);
      }
    });
    stream.on("end", () => {
      if (buffered.length > 0) onLine(buffered);
      buffered = "";
    });
  }
}

export class ExitedError extends Error {
  constructor(p: ManagedProcess, what: string) {
    super(`${p.name} exited (${JSON.stringify(p.exitInfo)}) before ${what}\n${p.tail()}`);
  }
}
