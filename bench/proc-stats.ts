/**
 * What the benchmark reads of its processes from /proc: memory peaks, CPU
 * time (their own and their reaped children's), and whether one is idle.
 */
import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { setTimeout as delay } from "node:timers/promises";

// ---- memory: /proc/<pid>/status ------------------------------------------------------------

export function statusKb(pid: number, field: "VmHWM" | "VmRSS"): number | undefined {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** Direct children of a process, from /proc/<pid>/task/<tid>/children. */
export function childrenOf(pid: number): number[] {
  const out: number[] = [];
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        const text = readFileSync(`/proc/${pid}/task/${tid}/children`, "utf8").trim();
        if (text) out.push(...text.split(/\s+/).map(Number));
      } catch {
        // thread ended meanwhile
      }
    }
  } catch {
    // process ended
  }
  return out;
}

/**
 * Waits until a process uses under `share` of one core over `windowMs` (a
 * nats-server still purging the last run's streams would slow the next);
 * false if it has not within `timeoutMs`.
 */
export async function waitIdle(pid: number, { share = 0.05, windowMs = 300, timeoutMs = 10_000 } = {}): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const before = cpuMs(pid);
    await delay(windowMs);
    const after = cpuMs(pid);
    if (before === undefined || after === undefined || after - before < share * windowMs) return true;
  }
  return false;
}

/** CPU time (user + system, ms) a process itself has used so far. */
function cpuMs(pid: number): number | undefined {
  const cpu = cpuOf(pid);
  return cpu && cpu.self * 1000;
}

/**
 * CPU used by some processes and their children over a span, sampled every
 * `intervalMs` so that a child replaced meanwhile (a recycled execution
 * process) still counts up to its last sample.
 */
export class CpuSampler {
  readonly #first = new Map<number, number>();
  readonly #last = new Map<number, number>();
  readonly #timer: NodeJS.Timeout;
  constructor(
    private readonly roots: () => number[],
    intervalMs = 200,
  ) {
    this.#sample();
    this.#timer = setInterval(() => this.#sample(), intervalMs);
  }

  #sample(): void {
    for (const pid of this.roots().flatMap((root) => [root, ...childrenOf(root)])) {
      const ms = cpuMs(pid);
      if (ms === undefined) continue;
      if (!this.#first.has(pid)) this.#first.set(pid, ms);
      this.#last.set(pid, ms);
    }
  }

  /** CPU ms used since the start, per root pid's tree summed. */
  stop(): number {
    this.#sample();
    clearInterval(this.#timer);
    let total = 0;
    for (const [pid, last] of this.#last) total += last - this.#first.get(pid)!;
    return total;
  }
}

/** Peak resident memory (VmHWM, MiB) of a process over its whole life, read now. */
export const peakRssMb = (pid: number): number | undefined => {
  const kb = statusKb(pid, "VmHWM");
  return kb === undefined ? undefined : kb / 1024;
};

export interface MemoryPeaks {
  /** Peak RSS of the root process, MiB. */
  root: number;
  /** Peak RSS of each child process seen, MiB. */
  children: number[];
}

/**
 * Samples the peak RSS (VmHWM) of a process and of its children every
 * `intervalMs`, so a child that is replaced mid-run is still counted.
 */
export class MemorySampler {
  readonly #peaks = new Map<number, number>();
  readonly #timer: NodeJS.Timeout;
  constructor(
    private readonly rootPid: number,
    intervalMs = 200,
  ) {
    this.#sample();
    this.#timer = setInterval(() => this.#sample(), intervalMs);
  }

  #sample(): void {
    for (const pid of [this.rootPid, ...childrenOf(this.rootPid)]) {
      const kb = statusKb(pid, "VmHWM");
      if (kb !== undefined) this.#peaks.set(pid, Math.max(kb, this.#peaks.get(pid) ?? 0));
    }
  }

  stop(): MemoryPeaks {
    this.#sample();
    clearInterval(this.#timer);
    const children = [...this.#peaks].filter(([pid]) => pid !== this.rootPid).map(([, kb]) => kb / 1024);
    return { root: (this.#peaks.get(this.rootPid) ?? 0) / 1024, children };
  }
}

// ---- CPU: /proc/<pid>/stat ----------------------------------------------------------------

const CLOCK_TICKS = Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout?.trim()) || 100;

/** CPU seconds (user + system) of a process itself (all its threads), and of its children it has reaped. */
function cpuOf(pid: number): { self: number; reaped: number } | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after "(comm)": state is field 3, so utime (14), stime (15), cutime (16), cstime (17) sit at 11-14.
    const f = text.slice(text.lastIndexOf(")") + 2).split(" ").map(Number);
    return { self: (f[11]! + f[12]!) / CLOCK_TICKS, reaped: (f[13]! + f[14]!) / CLOCK_TICKS };
  } catch {
    return undefined;
  }
}

/**
 * CPU used by named processes between construction and stop(), and by the
 * children of one of them (execution processes, sandboxes), including
 * children that start or exit in between: Σ children now + what the parent
 * reaped meanwhile − Σ children at the start. This process is "harness".
 */
export class CpuMeter {
  readonly #start = new Map<string, number>();
  readonly #childStart: number;
  readonly #reapedStart: number;
  readonly #harnessStart = process.cpuUsage();

  constructor(
    private readonly named: Record<string, number>,
    private readonly childrenOfPid?: number,
  ) {
    for (const [name, pid] of Object.entries(named)) this.#start.set(name, cpuOf(pid)?.self ?? 0);
    this.#childStart = this.#childSum();
    this.#reapedStart = childrenOfPid === undefined ? 0 : (cpuOf(childrenOfPid)?.reaped ?? 0);
  }

  #childSum(): number {
    if (this.childrenOfPid === undefined) return 0;
    return childrenOf(this.childrenOfPid).reduce((sum, pid) => sum + (cpuOf(pid)?.self ?? 0), 0);
  }

  /** CPU seconds per name, "children" (of childrenOfPid) and "harness". */
  stop(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [name, pid] of Object.entries(this.named)) out[name] = (cpuOf(pid)?.self ?? 0) - this.#start.get(name)!;
    if (this.childrenOfPid !== undefined) {
      const reaped = (cpuOf(this.childrenOfPid)?.reaped ?? 0) - this.#reapedStart;
      out.children = this.#childSum() + reaped - this.#childStart;
    }
    const harness = process.cpuUsage(this.#harnessStart);
    out.harness = (harness.user + harness.system) / 1e6;
    return out;
  }
}
