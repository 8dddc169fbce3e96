/**
 * The `bosun` command itself: a generated --help on every command, one
 * line and a documented exit code for every way a command can fail, and
 * NATS being down said with the URL and what to do.
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import t from "tap";
import { cleanEnv, CLI, runCli } from "./helpers/bosun.js";
import { freePort } from "./helpers/ports.js";

/** Runs `work` over `items`, three at a time (each is a node process on a 2-core machine). */
async function inBatches<T, R>(items: T[], work: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = [];
  for (let i = 0; i < items.length; i += 3) results.push(...(await Promise.all(items.slice(i, i + 3).map(work))));
  return results;
}

/** The command names listed under "Commands:" in a help text (the generated `help` command aside). */
function commandsIn(help: string): string[] {
  const section = help.split(/^Commands:$/m)[1] ?? "";
  return [...section.matchAll(/^ {2}([a-z][a-z-]*)\b/gm)].map((m) => m[1]!).filter((c) => c !== "help");
}

t.test("--help on every command and subcommand: exit 0, usage on stdout, nothing on stderr", async (t) => {
  const top = await runCli(["--help"]);
  t.equal(top.code, 0);
  const commands = commandsIn(top.stdout);
  for (const expected of ["supervisor", "gateway", "dev", "submit", "status", "watch", "workers", "queue", "ops"]) t.ok(commands.includes(expected), `bosun --help lists ${expected}`);
  const paths: string[][] = [];
  for (const command of commands) {
    paths.push([command]);
    const help = await runCli([command, "--help"]);
    for (const sub of commandsIn(help.stdout)) paths.push([command, sub]);
  }
  t.ok(paths.some((p) => p.join(" ") === "ops set"), "subcommands are found too (ops get, ops set)");
  const helps = await inBatches(paths, (p) => runCli([...p, "--help"]));
  paths.forEach((p, i) => {
    const r = helps[i]!;
    t.equal(r.code, 0, `bosun ${p.join(" ")} --help exits 0`);
    t.match(r.stdout, new RegExp(`^Usage: bosun ${p.join(" ")} `), `bosun ${p.join(" ")} --help prints its usage`);
    t.equal(r.stderr, "", "nothing on stderr");
  });
  const supervisor = helps[paths.findIndex((p) => p.join(" ") === "supervisor")]!.stdout.replace(/\s+/g, " ");
  t.match(supervisor, "--max-executions <value> recycle an execution actor after this many jobs (default 10000); env BOSUN_MAX_EXECUTIONS", "server flags come with their meaning, default and variable");
  const dev = helps[paths.findIndex((p) => p.join(" ") === "dev")]!.stdout;
  t.match(dev, /--port <value>/, "dev takes the gateway's --port");
  t.match(dev, /--watch/, "and --watch");
  t.match(dev, /--queues <value>/, "and the supervisor's flags");
});

t.test("usage errors: one line naming the problem and where help is, exit 2", async (t) => {
  const cases: [string[], RegExp][] = [
    [["frobnicate"], /^bosun: unknown command 'frobnicate' \(see bosun --help\)$/],
    [["submit"], /^bosun: missing required argument 'type' \(see bosun submit --help\)$/],
    [["submit", "echo", "{not json"], /^bosun: PAYLOAD is not valid JSON: \{not json$/],
    // The API's nesting limit, checked before anything is sent (JSON.stringify would overflow its stack).
    [["submit", "echo", `${"[".repeat(5000)}${"]".repeat(5000)}`], /^bosun: PAYLOAD is refused \(JSON is nested deeper than 64 levels\): \[{80}…$/],
    [["submit", "echo", "--wait-ms", "soon"], /^bosun: --wait-ms must be a whole number, not "soon"$/],
    [["status"], /^bosun: missing required argument 'job_id' \(see bosun status --help\)$/],
    [["workers", "--bogus"], /^bosun: unknown option '--bogus' \(see bosun workers --help\)$/],
    [["ops", "set", "paused=yes"], /^bosun: cannot read "paused=yes"/],
    [["dev", "--max", "none"], /^bosun: invalid config --max \/ BOSUN_MAX: /],
    // A line naming no command (commander would print the whole help on stderr, exit 1).
    [["--"], /^bosun: a command is needed: supervisor, compute-worker, .*, schedules \(see bosun --help\)$/],
    [["ops"], /^bosun: ops needs a command: get, set \(see bosun ops --help\)$/],
    [["keys", "--"], /^bosun: keys needs a command: create, list, revoke \(see bosun keys --help\)$/],
  ];
  const results = await inBatches(cases, ([args]) => runCli(args));
  cases.forEach(([args, line], i) => {
    const r = results[i]!;
    t.equal(r.code, 2, `bosun ${args.join(" ")}: exit 2`, { stderr: r.stderr });
    const lines = r.stderr.trimEnd().split("\n");
    t.equal(lines.length, 1, "one line on stderr");
    t.match(lines[0], line, "saying what is wrong");
    t.equal(r.stdout, "", "nothing on stdout");
  });
});

t.test("NATS down: every client command names the URL and says what to do, exit 3", async (t) => {
  const url = `nats://127.0.0.1:${await freePort()}`;
  // One of each group (they share one connection path): jobs, platform, ops.
  const commands = [["submit", "echo"], ["watch", "some_job"], ["queue"], ["ops", "set", "submissions_paused=false"]];
  const fromFlag = await inBatches(commands, (c) => runCli([...c, "--nats", url]));
  const fromEnv = await runCli(["workers"], { env: { NATS_URL: url } });
  for (const [i, r] of [...fromFlag, fromEnv].entries()) {
    const what = i < commands.length ? `bosun ${commands[i]!.join(" ")} --nats URL` : "bosun workers with NATS_URL";
    t.equal(r.code, 3, `${what}: exit 3`, { stderr: r.stderr });
    t.equal(r.stderr.trimEnd().split("\n").length, 1, "one line");
    t.match(r.stderr, `cannot reach NATS at ${url} (connection refused)`, "naming the URL and the reason");
    t.match(r.stderr, /bosun dev` starts one; --nats URL or NATS_URL names another/, "with a hint");
    t.notMatch(r.stderr, /\n\s+at /, "no stack");
  }
});

t.test("a reader that goes away (bosun --help | head -1): exit 0, no stack on stderr", async (t) => {
  const child = spawn(process.execPath, [CLI, "--help"], { env: cleanEnv(), stdio: ["ignore", "pipe", "pipe"] });
  // Closed before the CLI has loaded, so its first write meets a pipe with no reader (EPIPE).
  child.stdout.destroy();
  let stderr = "";
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  const [code] = (await once(child, "close")) as [number | null];
  t.equal(code, 0, "exit 0");
  t.equal(stderr, "", "nothing on stderr");
});
