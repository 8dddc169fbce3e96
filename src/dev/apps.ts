/**
 * The supervisor and the gateway of `bosun dev`, as `bosun` child
 * processes: started, ready when their own log says so (never sooner),
 * stopped, restarted by --watch. An exit nobody asked for is reported.
 */
import { fileURLToPath } from "node:url";
import type { Logger } from "pino";
import { DevChild, type ExitInfo } from "./processes.js";
import { DevOutput, parseLogLine } from "./output.js";
import { DevError } from "./util.js";

const CLI = fileURLToPath(new URL("../cli/main.js", import.meta.url));
const READY_TIMEOUT_MS = 60_000;
/** Past its own drain, how long a process may take to exit before its group is killed. */
const EXIT_SLACK_MS = 5000;

export interface AppSpec {
  name: "supervisor" | "gateway";
  args: string[];
  /** The log line that says it serves. */
  isReady(line: Record<string, unknown>): boolean;
  /** Facts for dev's "up" line, picked from the log (a URL, a port). */
  pick?(line: Record<string, unknown>): Record<string, unknown> | undefined;
  /** How long its own drain may take. */
  graceMs: number;
}

export class App {
  #child: DevChild | undefined;
  #expectedExit = false;
  #served = false;
  #stopping: Promise<ExitInfo> | undefined;
  readonly facts: Record<string, unknown> = {};
  /** Called when the process exits without dev asking it to. */
  onUnexpectedExit: (info: ExitInfo) => void = () => undefined;

  constructor(
    readonly spec: AppSpec,
    private readonly env: NodeJS.ProcessEnv,
    private readonly out: DevOutput,
    private readonly log: Logger,
  ) {}

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** Starts it and resolves once it serves; a DevError if it exits or hangs first. */
  async start(): Promise<void> {
    const { spec } = this;
    this.#expectedExit = false;
    this.#served = false;
    this.#stopping = undefined;
    let ready: () => void = () => undefined;
    const isReady = new Promise<void>((resolve) => (ready = resolve));
    let lastError = "";
    const child = (this.#child = new DevChild(spec.name, process.execPath, [CLI, spec.name, ...spec.args], {
      env: this.env,
      deathSignal: "SIGTERM",
      onStdout: (line) => {
        this.out.stdout(line);
        const json = parseLogLine(line);
        if (!json) return;
        Object.assign(this.facts, spec.pick?.(json));
        if (spec.isReady(json)) ready();
      },
      onStderr: (line) => {
        lastError = line;
        this.out.stderr(line);
      },
    }));
    void child.exited.then((info) => {
      // Before it served, a failure is start()'s to report.
      if (this.#served && !this.#expectedExit && this.#child === child) this.onUnexpectedExit(info);
    });
    let timer: NodeJS.Timeout | undefined;
    const failed = Promise.race([
      child.exited.then((info) => `exited (${describeExit(info)})`),
      new Promise<string>((resolve) => (timer = setTimeout(() => resolve(`was not ready within ${READY_TIMEOUT_MS / 1000} s`), READY_TIMEOUT_MS))),
    ]);
    const outcome = await Promise.race([isReady.then(() => undefined), failed]);
    clearTimeout(timer);
    if (outcome !== undefined) {
      this.#expectedExit = true;
      child.killGroup();
      throw new DevError(`the ${spec.name} did not start: it ${outcome}${lastError ? `: ${lastError.replace(/^bosun: /, "")}` : ""}`);
    }
    this.#served = true;
  }

  /**
   * SIGTERM (its own graceful drain), SIGKILL to its group past the drain.
   * Once per process: a second SIGTERM would make it skip its drain.
   */
  stop(): Promise<ExitInfo | undefined> {
    const child = this.#child;
    if (!child) return Promise.resolve(undefined);
    this.#expectedExit = true;
    return (this.#stopping ??= child.stop("SIGTERM", this.spec.graceMs + EXIT_SLACK_MS).then((info) => {
      this.log.info({ child: this.spec.name, child_pid: child.pid, ...(info.code !== 0 && { exit: describeExit(info) }) }, `${this.spec.name} stopped`);
      return info;
    }));
  }

  /** At once: the process and its execution processes (their jobs run again, as after any crash). */
  kill(): void {
    this.#expectedExit = true;
    this.#child?.killGroup();
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }
}

export const describeExit = (info: ExitInfo): string => (info.signal ? `signal ${info.signal}` : `code ${info.code}`);
