import { pino, type Logger } from "pino";

/**
 * pino JSON to stdout, one line per event. `bosun dev` on a terminal pipes
 * the lines through pino-pretty instead (see cli.ts), so processes never
 * format logs themselves.
 */
export function createLogger(name: string, level = process.env.BOSUN_LOG_LEVEL ?? "info"): Logger {
  // Asynchronous writes: lines logged in one event-loop turn leave in one write (pino flushes at exit).
  return pino(
    { name, level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime },
    pino.destination({ dest: 1, sync: false }),
  );
}

export type { Logger };
