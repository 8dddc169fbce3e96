/**
 * A running job's interim record (owner, progress): written only once the
 * job has run a while, so a fast job costs its message and its final
 * record, nothing else.
 */
import type { Logger } from "pino";
import type { InterimRecord } from "../contract/index.js";
import { guard } from "../platform/guard.js";
import type { JobStore } from "../records/index.js";

/** Progress reports are written to the job record at most this often. */
const PROGRESS_WRITE_GAP_MS = 250;
/**
 * A job shows as running (its interim record) once it has run this long.
 * Most jobs finish sooner, and for them the final record alone is written:
 * a fast job costs its message and its final record, nothing else.
 */
const RUNNING_RECORD_DELAY_MS = 20;

export interface RunningVisibility {
  started(): void;
  progress(fraction: number): void;
  stop(): void;
  readonly written: boolean;
}

/**
 * When the job's interim record says "running": RUNNING_RECORD_DELAY_MS
 * after it started, or at its first progress report. Progress goes to the
 * record at most every PROGRESS_WRITE_GAP_MS; a report inside the gap is
 * written when it closes, so the last one shows.
 */
export function runningVisibility(record: InterimRecord, store: JobStore, log: Logger): RunningVisibility {
  let lastWrite = 0;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const write = () => {
    timer = undefined;
    if (stopped) return;
    lastWrite = Date.now();
    store.putRunning(record);
  };
  const writeLater = guard(log, "running record write", write);
  return {
    started: () => {
      if (lastWrite === 0) timer ??= setTimeout(writeLater, RUNNING_RECORD_DELAY_MS);
    },
    progress: (fraction) => {
      record.progress = fraction;
      const wait = lastWrite + PROGRESS_WRITE_GAP_MS - Date.now();
      if (wait <= 0) {
        clearTimeout(timer);
        write();
      } else timer ??= setTimeout(writeLater, wait);
    },
    stop: () => {
      stopped = true;
      clearTimeout(timer);
    },
    get written() {
      return lastWrite > 0;
    },
  };
}
