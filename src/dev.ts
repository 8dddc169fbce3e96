/**
 * `bosun dev`: nats-server (unless one answers at NATS_URL already), one
 * supervisor and one gateway, as child processes of this one. Ctrl-C stops
 * the gateway and supervisor first, then nats-server, leaving no orphans.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { connect } from "@nats-io/transport-node";
import { pino } from "pino";
import { createLogger } from "./platform/logger.js";
import { devRoles, type Role } from "./platform/nats-roles.js";
import { DEFAULT_NATS_URL, natsOptions } from "./platform/nats-options.js";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const CLI = fileURLToPath(new URL("./cli.js", import.meta.url));

/** $NATS_SERVER, else on PATH, else where Debian's package puts it (/usr/sbin is not on every PATH). */
function findNatsServer(): string | undefined {
  const candidates = [process.env.NATS_SERVER, "nats-server", "/usr/sbin/nats-server"].filter((c): c is string => !!c);
  return candidates.find((c) => !spawnSync(c, ["--version"]).error);
}

async function natsAnswers(url: string): Promise<boolean> {
  try {
    const nc = await connect({ ...natsOptions(url, "bosun-dev-probe"), timeout: 1000, reconnect: false });
    await nc.close();
    return true;
  } catch {
    return false;
  }
}

async function waitFor(check: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

const exited = (child: ChildProcess) =>
  child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise<void>((r) => child.once("exit", () => r()));

export async function runDev(argv: string[]): Promise<number> {
  const natsUrl = process.env.NATS_URL ?? DEFAULT_NATS_URL;
  // On a terminal every process's JSON lines go through one pino-pretty; piped, they stay JSON.
  const pretty = process.stdout.isTTY;
  const stdio = pretty ? (["ignore", "pipe", "inherit"] as const) : (["ignore", "inherit", "inherit"] as const);
  let prettyStream: NodeJS.WritableStream | undefined;
  if (pretty) {
    const { default: pinoPretty } = await import("pino-pretty");
    prettyStream = pinoPretty({ colorize: true, translateTime: "SYS:HH:MM:ss.l" });
  }
  const log = prettyStream ? pino({ name: "bosun.dev" }, prettyStream) : createLogger("bosun.dev");
  // Each child gets its own process group, so a terminal's Ctrl-C reaches them once, through
  // this process, in order: gateway and supervisor drain first, nats-server stops last.
  const start = (name: string, command: string, args: string[], cwd?: string, env: Record<string, string> = {}) => {
    const child = spawn(command, args, {
      stdio: [...stdio],
      cwd,
      detached: true,
      env: { ...process.env, NATS_URL: natsUrl, BOSUN_DEV_PARENT_PID: String(process.pid), ...env },
    });
    if (prettyStream && child.stdout) child.stdout.pipe(prettyStream, { end: false });
    child.once("exit", (code, signal) => log.info({ child: name, code, signal }, "process exited"));
    return child;
  };

  let nats: ChildProcess | undefined;
  const roleSecrets = devRoles();
  if (!(await natsAnswers(natsUrl))) {
    const natsServer = findNatsServer();
    if (!natsServer) {
      process.stderr.write("bosun dev: nothing answers at " + natsUrl + " and nats-server is not installed (apt-get install nats-server)\n");
      return 1;
    }
    mkdirSync(path.join(ROOT, ".bosun"), { recursive: true });
    log.info({ url: natsUrl }, "starting nats-server with nats.conf (each process as its NATS role)");
    // nats.conf plus dev's no_auth_user line, from the repository root (its relative store_dir).
    const conf = path.join(ROOT, ".bosun", "nats-dev.conf");
    writeFileSync(conf, `${readFileSync(path.join(ROOT, "nats.conf"), "utf8")}\n${roleSecrets.configLine}\n`);
    nats = start("nats-server", natsServer, ["-c", conf], ROOT, roleSecrets.serverEnv);
    const natsChild = nats;
    process.once("exit", () => natsChild.kill("SIGTERM"));
    if (!(await waitFor(() => natsAnswers(natsUrl), 10_000))) {
      nats.kill("SIGKILL");
      process.stderr.write("bosun dev: nats-server did not come up; is port 4222 taken?\n");
      return 1;
    }
  }
  // A server dev did not start has its own users: then every process is whoever the shell says (NATS_USER).
  const as = (role: Role) => (nats ? roleSecrets.envOf(role) : {});
  const supervisor = start("supervisor", process.execPath, [CLI, "supervisor", ...argv], undefined, as("supervisor"));
  const gateway = start("gateway", process.execPath, [CLI, "gateway"], undefined, as("gateway"));
  log.info({ gateway: "http://127.0.0.1:8080", nats: natsUrl }, "bosun dev is up; Ctrl-C to stop");

  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    for (const child of [gateway, supervisor]) child.kill("SIGTERM");
    await Promise.all([exited(gateway), exited(supervisor)]);
    nats?.kill("SIGTERM");
    if (nats) await exited(nats);
  };
  process.on("SIGINT", () => void stop());
  process.on("SIGTERM", () => void stop());
  // Either app process dying ends the session: a half-up dev stack only confuses.
  await Promise.race([exited(supervisor), exited(gateway)]);
  await stop();
  return 0;
}
