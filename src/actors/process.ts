/**
 * Entry point of an execution process (`--isolation process`): a child OS
 * process that serves jobs over Node's IPC channel. A handler that crashes
 * the process is the supervisor's business, not this file's.
 */
import { createLogger } from "../platform/logger.js";
import type { ChildMessage, ParentCommand } from "./protocol.js";
import { serveJobs } from "./serve.js";

const log = createLogger("bosun.process");

/** The supervisor may be gone (it stopped while this process was loading): then there is no one to tell. */
function send(message: ChildMessage): void {
  if (process.connected) process.send?.(message, undefined, {}, () => undefined);
}

if (!process.send) {
  log.fatal("an execution process is started by a supervisor, never by hand");
  process.exit(70);
}
// The supervisor going away closes the channel: nothing is left to serve.
process.on("disconnect", () => process.exit(0));
serveJobs(
  {
    send,
    onCommand: (listener) => process.on("message", (cmd: ParentCommand) => listener(cmd)),
    memoryMb: () => Math.round(process.memoryUsage.rss() / 1048576),
  },
  log,
).catch((err: unknown) => {
  log.fatal({ err }, "execution process failed to start");
  process.exit(70);
});
