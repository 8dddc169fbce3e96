/**
 * Entry point of an execution thread (`--isolation thread`): a worker
 * thread inside the supervisor's process that serves jobs over its message
 * port, with the same protocol as an execution process. It shares the
 * supervisor's memory space: for trusted handlers only.
 */
import { parentPort, threadId, workerData } from "node:worker_threads";
import { getHeapStatistics } from "node:v8";
import { createLogger } from "../platform/logger.js";
import { flushTraces } from "../platform/tracing.js";
import type { ParentWrite } from "./protocol.js";
import { serveJobs } from "./serve.js";

const log = createLogger("bosun.thread").child({ thread_id: threadId });
const port = parentPort;
/** The start ledger, shared with the supervisor (see protocol.ts). */
const ledger = (workerData as { ledger?: SharedArrayBuffer } | null)?.ledger;

if (!port || !ledger) {
  log.fatal("an execution thread is started by a supervisor, never by hand");
  process.exit(70);
} else {
  const started = new Int32Array(ledger);
  serveJobs(
    {
      write: (messages) => port.postMessage(messages),
      onWrite: (listener) =>
        port.on("message", (cmds: ParentWrite) => {
          // Retired: the thread ends here, as a process does when its channel closes (spans an SDK still buffers go first).
          if (!Array.isArray(cmds)) void flushTraces().finally(() => process.exit(0));
          else listener(cmds);
        }),
      markStarted: (seq) => Atomics.store(started, 0, seq),
      // The thread's own heap (its isolate), which resourceLimits cap; RSS is the whole supervisor's.
      memoryMb: () => Math.round(getHeapStatistics().used_heap_size / 1048576),
    },
    log,
  ).catch((err: unknown) => {
    log.fatal({ err }, "execution thread failed to start");
    process.exit(70);
  });
}
