import type { Logger } from "pino";
import { dropLogOutput } from "./logger.js";
import { flushTraces } from "./tracing.js";

/**
 * Runs `stop` once on the first SIGTERM or SIGINT, then exits 0 (1 if stop
 * failed). A second signal exits at once, for when a drain hangs.
 */
export function onShutdownSignals(stop: () => Promise<void>, log: Logger): void {
  let stopping = false;
  const handler = (signal: NodeJS.Signals) => {
    // Dev gone (SIGKILLed: its death signal brought us here): nobody reads our stdout any more.
    if (devParentGone()) dropLogOutput();
    if (stopping) {
      log.warn({ signal }, "second signal: exiting now");
      process.exit(1);
    }
    stopping = true;
    log.info({ signal }, "shutting down");
    // Spans an SDK still buffers are exported before the process goes.
    stop().then(
      () => flushTraces().finally(() => process.exit(0)),
      (err: unknown) => {
        log.error({ err }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", handler);
  process.on("SIGINT", handler);
  stopWithParent(() => handler("SIGTERM"));
}

/** A start-up failure with a known cause: said in one line, without a stack. */
export class StartupError extends Error {
  override readonly name = "StartupError";
}

/** Prints a start-up failure as one line on stderr (and logs it) and exits 1. */
export function failStartup(err: unknown, log?: Logger): never {
  const message = err instanceof Error ? err.message : String(err);
  if (log) log.fatal(err instanceof StartupError ? {} : { err }, message);
  process.stderr.write(`bosun: ${message}\n`);
  process.exit(1);
}

/**
 * For processes `bosun dev` starts in their own process group (so one Ctrl-C
 * reaches each once, through dev): stop gracefully if dev itself disappears.
 */
export function stopWithParent(stop: () => void): void {
  if (!process.env.BOSUN_DEV_PARENT_PID) return;
  setInterval(() => {
    if (devParentGone()) stop();
  }, 1000).unref();
}

const devParentGone = (): boolean => {
  const parent = Number(process.env.BOSUN_DEV_PARENT_PID);
  return parent > 0 && process.ppid !== parent;
};
