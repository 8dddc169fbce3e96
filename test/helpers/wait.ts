/** Polling with a deadline: the only way tests wait for something to happen. */
import { setTimeout as delay } from "node:timers/promises";

export interface WaitOptions {
  timeoutMs?: number;
  intervalMs?: number;
  /** Named in the error when the deadline passes. */
  what?: string;
  /** Checked before every probe: an error returned here ends the wait at once (e.g. the process died). */
  abortIf?: () => Error | undefined;
}

/**
 * Calls `probe` until it returns something other than undefined/false, or
 * throws once the deadline passes. Errors thrown by `probe` count as "not
 * yet" and the last one is reported on timeout.
 */
export async function waitFor<T>(probe: () => T | undefined | false | Promise<T | undefined | false>, opts: WaitOptions = {}): Promise<T> {
  const { timeoutMs = 10_000, intervalMs = 25, what = "condition", abortIf } = opts;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (true) {
    const abort = abortIf?.();
    if (abort) throw abort;
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) {
      const why = lastError instanceof Error ? `: last error: ${lastError.message}` : "";
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${why}`);
    }
    await delay(intervalMs);
  }
}

/** Rejects if `promise` has not settled within `ms`. */
export async function within<T>(promise: Promise<T>, ms: number, what = "operation"): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** True while a process with this pid exists (signal 0 only checks). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** A name no other test uses: queues, worker ids. */
export const uniqueName = (prefix = "t"): string => `${prefix}_${Math.random().toString(36).slice(2, 10)}`;
