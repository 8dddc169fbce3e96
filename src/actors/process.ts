/**
 * Entry point of an execution process (`--isolation process`): a child OS
 * process that serves jobs over Node's IPC channel. A handler that crashes
 * the process is the supervisor's business, not this file's.
 */
import { writeSync } from "node:fs";
import { createLogger } from "../platform/logger.js";
import { flushTraces } from "../platform/tracing.js";
import type { ChildMessage, ParentWrite } from "./protocol.js";
import { serveJobs } from "./serve.js";

const log = createLogger("bosun.process");
/** The start ledger: a 4-byte file the supervisor opened for this process (see protocol.ts). */
const LEDGER_FD = Number(process.env.BOSUN_LEDGER_FD);
const ledger = Buffer.alloc(4);

/** The supervisor may be gone (it stopped while this process was loading): then there is no one to tell. */
function write(messages: ChildMessage[]): void {
  if (process.connected) process.send?.(messages, undefined, {}, () => undefined);
}

if (!process.send || !Number.isInteger(LEDGER_FD)) {
  log.fatal("an execution process is started by a supervisor, never by hand");
  process.exit(70);
}
// The supervisor going away, or retiring this process, closes the channel: nothing is left to serve
// (spans an SDK still buffers go first).
process.on("disconnect", () => void flushTraces().finally(() => process.exit(0)));
serveJobs(
  {
    write,
    onWrite: (listener) => process.on("message", (cmds: ParentWrite) => Array.isArray(cmds) && listener(cmds)),
    markStarted: (seq) => {
      ledger.writeInt32LE(seq);
      writeSync(LEDGER_FD, ledger, 0, 4, 0);
    },
    memoryMb: () => Math.round(process.memoryUsage.rss() / 1048576),
  },
  log,
).catch((err: unknown) => {
  log.fatal({ err }, "execution process failed to start");
  process.exit(70);
});
