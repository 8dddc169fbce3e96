/**
 * Child processes of `bosun dev`: each in its own process group (a
 * terminal's Ctrl-C reaches dev alone, which stops the others in order),
 * tied to dev's life where the platform allows (Linux's parent-death
 * signal through util-linux `setpriv`), read line by line.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import readline from "node:readline";

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

let setprivWorks: boolean | undefined;
/** `setpriv --pdeathsig` (util-linux 2.33+): the child gets `signal` when dev dies, even by SIGKILL. */
function withParentDeathSignal(command: string, args: string[], signal: NodeJS.Signals): [string, string[]] {
  setprivWorks ??= process.platform === "linux" && spawnSync("setpriv", ["--pdeathsig", "SIGTERM", "true"]).status === 0;
  return setprivWorks ? ["setpriv", ["--pdeathsig", signal, "--", command, ...args]] : [command, args];
}

export class DevChild {
  readonly child: ChildProcess;
  readonly exited: Promise<ExitInfo>;
  /** Both output streams read to their end ('exit' may come before the last lines are read). */
  readonly outputRead: Promise<void>;
  exitInfo: ExitInfo | undefined;

  constructor(
    readonly name: string,
    command: string,
    args: string[],
    opts: { env?: NodeJS.ProcessEnv; cwd?: string; onStdout(line: string): void; onStderr(line: string): void; deathSignal: NodeJS.Signals },
  ) {
    const [cmd, argv] = withParentDeathSignal(command, args, opts.deathSignal);
    this.child = spawn(cmd, argv, { cwd: opts.cwd, env: opts.env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
    this.exited = new Promise((resolve) => {
      this.child.once("exit", (code, signal) => {
        this.exitInfo = { code, signal };
        resolve(this.exitInfo);
      });
      this.child.once("error", () => {
        this.exitInfo ??= { code: 127, signal: null };
        resolve(this.exitInfo);
      });
    });
    const read = (input: NodeJS.ReadableStream, onLine: (line: string) => void) =>
      new Promise<void>((resolve) => readline.createInterface({ input }).on("line", onLine).once("close", resolve));
    this.outputRead = Promise.all([read(this.child.stdout!, opts.onStdout), read(this.child.stderr!, opts.onStderr)]).then(() => undefined);
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get running(): boolean {
    return this.exitInfo === undefined;
  }

  signal(signal: NodeJS.Signals): void {
    if (this.running) this.child.kill(signal);
  }

  /** SIGKILL to the whole process group: the process and whatever it started (execution processes). */
  killGroup(): void {
    if (!this.pid) return;
    try {
      process.kill(-this.pid, "SIGKILL");
    } catch {
      // Already gone.
    }
  }

  /** `signal`, then SIGKILL to the group if it has not exited within `graceMs`. */
  async stop(signal: NodeJS.Signals, graceMs: number): Promise<ExitInfo> {
    this.signal(signal);
    const timer = setTimeout(() => this.killGroup(), graceMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }
}
