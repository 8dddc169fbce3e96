import { pino, type Logger } from "pino";

type Destination = ReturnType<typeof pino.destination>;
const destinations = new Set<Destination>();

/**
 * pino JSON to stdout, one line per event. `bosun dev` on a terminal pipes
 * the lines through pino-pretty instead (see dev/output.ts), so processes
 * never format logs themselves.
 */
export function createLogger(name: string, level = process.env.BOSUN_LOG_LEVEL ?? "info"): Logger {
  // Asynchronous writes: lines logged in one event-loop turn leave in one write (pino flushes at exit).
  const destination = pino.destination({ dest: 1, sync: false });
  destinations.add(destination);
  destination.on("error", (err: NodeJS.ErrnoException) => {
    if (err.code !== "EPIPE") throw err;
    dropLogOutput();
  });
  return pino({ name, level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }, destination);
}

/**
 * Drops every log line from now on, for a process whose stdout reader is
 * gone (`bosun dev` killed): sonic-boom's exit flush retries a write that
 * fails with EPIPE for ever, so the process would never exit.
 */
export function dropLogOutput(): void {
  for (const d of destinations) {
    d.write = () => true;
    d.flushSync = () => undefined;
    d.flush = (cb?: (err?: Error) => void) => cb?.();
  }
}

export type { Logger };
