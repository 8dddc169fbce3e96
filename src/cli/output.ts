/** How the client commands print: a table or lines for people, JSON with --json for scripts. */
import { Option, type Command } from "commander";

export function table(rows: Record<string, unknown>[]): string {
  if (rows.length === 0) return "(none)";
  const columns = Object.keys(rows[0]!);
  const cells = rows.map((r) => columns.map((c) => String(r[c] ?? "")));
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((row) => row[i]!.length)));
  const line = (values: string[]) => values.map((v, i) => v.padEnd(widths[i]!)).join("  ").trimEnd();
  return [line(columns.map((c) => c.toUpperCase())), ...cells.map(line)].join("\n");
}

export const print = (json: boolean | undefined, value: unknown, text: () => string): void => {
  process.stdout.write(`${json ? JSON.stringify(value, null, 2) : text()}\n`);
};

export interface ClientOptions {
  json?: boolean;
  nats?: string;
}

/** --json and --nats, on every client command. */
export function clientOptions(command: Command): Command {
  return command
    .addOption(new Option("--json", "print JSON (for scripts)"))
    .addOption(new Option("--nats <url>", "the NATS server (default: $NATS_URL, else nats://127.0.0.1:4222)"));
}
