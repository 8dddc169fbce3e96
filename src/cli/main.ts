#!/usr/bin/env node
/**
 * The `bosun` command: one entry, one file per command group. Every
 * command has a generated --help; every failure is one line on stderr and
 * an exit code from errors.ts.
 */
import { Command, CommanderError } from "commander";
import { ConfigError } from "../platform/config.js";
import { VERSION } from "../platform/version.js";
import { CommandError, ExitCode } from "./errors.js";
import { addJobCommands } from "./jobs.js";
import { addKeyCommands } from "./keys.js";
import { addScheduleCommands } from "./schedules.js";
import { addPlatformCommands } from "./platform.js";
import { addServerCommands } from "./servers.js";

const EPILOG = `
Exit codes: 0 ok, 1 failed (an error reply, a server that could not start), 2 bad arguments or config,
3 NATS unreachable or no supervisor answering (retry later). \`bosun COMMAND --help\` for each command.`;

const program = new Command("bosun")
  .description("an actor-model job runtime over NATS")
  .version(VERSION)
  // Errors are printed below as one line; help and version still go to stdout. Commander's help for a
  // line naming no command (`bosun --`, `bosun ops`) goes to writeErr: that is a usage error here too.
  .exitOverride()
  .configureOutput({ outputError: () => undefined, writeErr: () => undefined })
  .showSuggestionAfterError(true)
  .addHelpText("after", EPILOG);
addServerCommands(program);
addJobCommands(program);
addPlatformCommands(program);
addKeyCommands(program);
addScheduleCommands(program);

const oneLine = (text: string) => text.replace(/^error: /, "").replace(/\s*\n\s*/g, " ").trim();

/** The command named on the line, for the hint after a usage error. */
const commandOnLine = (): { path: string; command: Command } => {
  const names: string[] = [];
  let current: Command = program;
  for (const arg of process.argv.slice(2)) {
    const next = current.commands.find((c) => c.name() === arg);
    if (!next) break;
    names.push(arg);
    current = next;
  }
  return { path: ["bosun", ...names].join(" "), command: current };
};

function report(err: unknown): number {
  if (err instanceof CommanderError) {
    const { path, command } = commandOnLine();
    if (err.code === "commander.help" && err.exitCode !== 0) {
      const names = command.commands.map((c) => c.name()).filter((name) => name !== "help");
      const what = command === program ? "a command is needed" : `${path.slice("bosun ".length)} needs a command`;
      process.stderr.write(`bosun: ${what}: ${names.join(", ")} (see ${path} --help)\n`);
      return ExitCode.usage;
    }
    if (err.code === "commander.helpDisplayed" || err.code === "commander.version" || err.code === "commander.help") return err.exitCode;
    process.stderr.write(`bosun: ${oneLine(err.message)} (see ${path} --help)\n`);
    return ExitCode.usage;
  }
  if (err instanceof ConfigError) {
    process.stderr.write(`bosun: ${err.message}\n`);
    return ExitCode.usage;
  }
  if (err instanceof CommandError) {
    process.stderr.write(`bosun: ${oneLine(err.message)}\n`);
    return err.exitCode;
  }
  process.stderr.write(`bosun: ${oneLine(err instanceof Error ? err.message : String(err))}\n`);
  return ExitCode.failed;
}

// A reader that stopped reading (`bosun --help | head -1`, `bosun watch ID | head`) is not a failure:
// end as quietly as Unix tools killed by SIGPIPE do, which Node ignores in favour of this error.
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code !== "EPIPE") throw err;
  process.exit(process.exitCode ?? 0);
});

if (process.argv.length <= 2) {
  program.outputHelp();
} else {
  try {
    await program.parseAsync(process.argv);
  } catch (err) {
    process.exitCode = report(err);
  }
}
