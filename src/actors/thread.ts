/**
 * Entry point of an execution thread (`--isolation thread`): a worker
 * thread inside the supervisor's process that serves jobs over its message
 * port, with the same protocol as an execution process. It shares the
 * supervisor's memory space: for trusted handlers only.
 */
import { parentPort, threadId } from "node:worker_threads";
import { getHeapStatistics } from "node:v8";
import { createLogger } from "../platform/logger.js";
import type { CloseCommand, ParentCommand } from "./protocol.js";
import { serveJobs } from "./serve.js";

const log = createLogger("bosun.thread").child({ thread_id: threadId });
const port = parentPort;

if (!port) {
  log.fatal("an execution thread is started by a supervisor, never by hand");
  process.exit(70);
} else {
  serveJobs(
    {
      send: (message) => port.postMessage(message),
      onCommand: (listener) =>
        port.on("message", (cmd: ParentCommand | CloseCommand) => {
          // Retired: the thread ends here, as a process does when its channel closes.
          if (cmd.t === "close") process.exit(0);
          else listener(cmd);
        }),
      // The thread's own heap (its isolate), which resourceLimits cap; RSS is the whole supervisor's.
      memoryMb: () => Math.round(getHeapStatistics().used_heap_size / 1048576),
    },
    log,
  ).catch((err: unknown) => {
    log.fatal({ err }, "execution thread failed to start");
    process.exit(70);
  });
}
