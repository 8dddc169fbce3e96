/**
 * The dev pane: every process's pino lines pass through here, pretty (one
 * line per event) on a terminal and untouched JSON otherwise, so a script
 * or a test reading dev's output sees every process's lines.
 */
import { pino, type Logger } from "pino";
import { createLogger } from "../platform/logger.js";

export class DevOutput {
  private constructor(
    readonly log: Logger,
    private readonly pretty: NodeJS.WritableStream | undefined,
  ) {}

  static async create(): Promise<DevOutput> {
    // A closed terminal must not crash dev halfway through stopping the others.
    process.stdout.on("error", () => undefined);
    process.stderr.on("error", () => undefined);
    if (!process.stdout.isTTY) return new DevOutput(createLogger("bosun.dev"), undefined);
    const { default: pinoPretty } = await import("pino-pretty");
    // Synchronous: dev ends with process.exit, which must not cut the last lines off.
    const pretty = pinoPretty({ colorize: true, translateTime: "SYS:HH:MM:ss.l", singleLine: true, ignore: "hostname", sync: true });
    return new DevOutput(pino({ name: "bosun.dev", base: { pid: process.pid } }, pretty), pretty);
  }

  /** A line a child wrote to stdout (pino JSON, or anything else from a handler). */
  stdout(line: string): void {
    if (this.pretty && line.startsWith("{")) this.pretty.write(`${line}\n`);
    else process.stdout.write(`${line}\n`);
  }

  stderr(line: string): void {
    process.stderr.write(`${line}\n`);
  }
}

/** A pino line as an object, or undefined. */
export function parseLogLine(line: string): Record<string, unknown> | undefined {
  if (!line.startsWith("{")) return undefined;
  try {
    const value: unknown = JSON.parse(line);
    return typeof value === "object" && value !== null ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
