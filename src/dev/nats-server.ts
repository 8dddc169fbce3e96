/**
 * The nats-server of `bosun dev`: started only when nothing answers at the
 * URL, configured from the shipped nats.conf with the URL's host and port
 * and dev's data dir, its banner kept in a log file (warnings and errors
 * still reach the dev pane), and remembered in a pid file so that one left
 * running by a dev that was killed is stopped, never silently reused.
 */
import { spawnSync } from "node:child_process";
import { createWriteStream, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { connect } from "@nats-io/transport-node";
import type { Logger } from "pino";
import { natsOptions } from "../platform/nats-options.js";
import type { DevRoles } from "../platform/nats-roles.js";
import { DevChild } from "./processes.js";
import { DevError, isAlive, commandLineOf } from "./util.js";

const SHIPPED_CONF = fileURLToPath(new URL("../../nats.conf", import.meta.url));
const START_TIMEOUT_MS = 15_000;
/** How long a failed nats-server's last output lines are waited for. */
const OUTPUT_WAIT_MS = 1000;
const LAST_LINES_KEPT = 5;
const STOP_GRACE_MS = 10_000;

/** $NATS_SERVER, else on PATH, else where Debian's package puts it (/usr/sbin is not on every PATH). */
export function findNatsServer(): string | undefined {
  const candidates = [process.env.NATS_SERVER, "nats-server", "/usr/sbin/nats-server"].filter((c): c is string => !!c);
  return candidates.find((c) => !spawnSync(c, ["--version"]).error);
}

export async function natsAnswers(url: string): Promise<boolean> {
  try {
    const nc = await connect({ ...natsOptions(url, "bosun-dev-probe"), timeout: 1000, reconnect: false });
    await nc.close();
    return true;
  } catch {
    return false;
  }
}

export function hostPort(url: string): { host: string; port: number } {
  const parsed = new URL(url.split(",")[0]!.trim());
  return { host: parsed.hostname || "127.0.0.1", port: parsed.port ? Number(parsed.port) : 4222 };
}

/**
 * nats.conf with `listen` set to host:port, JetStream's `store_dir` in the
 * data dir, and no monitoring port (a fixed one would clash between two
 * devs). Any other setting of nats.conf is kept as it is.
 */
export function devNatsConfig(base: string, opts: { host: string; port: number; storeDir: string; serverName: string }): string {
  const lines = base
    .split("\n")
    .filter((line) => !/^\s*(#|(listen|http|http_port|server_name)\s*[:=])/.test(line))
    .map((line) => (/^\s*store_dir\s*[:=]/.test(line) ? `  store_dir: ${JSON.stringify(opts.storeDir)}` : line));
  return [`# Written by bosun dev from ${SHIPPED_CONF}; rewritten at every start.`, `listen: ${opts.host}:${opts.port}`, `server_name: ${opts.serverName}`, ...lines].join("\n");
}

interface PidFile {
  pid: number;
  dev_pid: number;
  url: string;
}

export interface DevNats {
  url: string;
  /** The process when dev started it; undefined when another server answered already. */
  child: DevChild | undefined;
  stop(): Promise<void>;
}

export interface NatsStartOptions {
  url: string;
  dataDir: string;
  log: Logger;
  /** Name in nats-server's config and the file names (the cluster mode starts several). */
  name?: string;
  /** A config written already (a cluster node's); else dev writes one from nats.conf. */
  configFile?: string;
  /** The role passwords nats.conf reads from the environment, and dev's no_auth_user line. */
  roles: DevRoles;
}

/** Stops a nats-server an earlier dev started and left behind, unless that dev still runs. */
async function stopLeftover(pidPath: string, log: Logger): Promise<void> {
  if (!existsSync(pidPath)) return;
  let left: PidFile;
  try {
    left = JSON.parse(readFileSync(pidPath, "utf8")) as PidFile;
  } catch {
    rmSync(pidPath, { force: true });
    return;
  }
  if (left.dev_pid !== process.pid && isAlive(left.dev_pid) && /\bdev\b/.test(commandLineOf(left.dev_pid))) {
    throw new DevError(`another bosun dev (pid ${left.dev_pid}) is using ${path.dirname(pidPath)}; stop it, or give this one another --data-dir`);
  }
  if (isAlive(left.pid) && /nats-server/.test(commandLineOf(left.pid))) {
    log.warn({ nats_pid: left.pid, url: left.url }, "stopping the nats-server an earlier bosun dev left running");
    process.kill(left.pid, "SIGINT");
    const deadline = Date.now() + STOP_GRACE_MS;
    while (isAlive(left.pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    if (isAlive(left.pid)) process.kill(left.pid, "SIGKILL");
  }
  rmSync(pidPath, { force: true });
}

export async function startNatsServer({ url, dataDir, log, name = "nats-server", configFile, roles }: NatsStartOptions): Promise<DevNats> {
  mkdirSync(dataDir, { recursive: true });
  const pidPath = path.join(dataDir, `${name}.pid`);
  await stopLeftover(pidPath, log);
  if (await natsAnswers(url)) {
    log.info({ url }, "using the nats-server already answering there (bosun dev did not start it and leaves it running)");
    return { url, child: undefined, stop: async () => undefined };
  }
  const binary = findNatsServer();
  if (!binary) throw new DevError(`nothing answers at ${url} and nats-server is not installed (apt-get install nats-server, or set NATS_SERVER)`);

  const { host, port } = hostPort(url);
  const confPath = configFile ?? path.join(dataDir, `${name}.conf`);
  const logPath = path.join(dataDir, `${name}.log`);
  if (!configFile) {
    const config = devNatsConfig(readFileSync(SHIPPED_CONF, "utf8"), { host, port, storeDir: path.resolve(dataDir, "nats"), serverName: `bosun-dev-${port}` });
    writeFileSync(confPath, `${config}\n${roles.configLine}\n`);
  }
  const logFile = createWriteStream(logPath, { flags: "w" });
  let version = "";
  let fatal = "";
  // Without a fatal line, the last lines say why (nats-server may die of a signal or an error without [FTL]).
  const lastLines: string[] = [];
  const child = new DevChild(name, binary, ["-c", confPath], {
    env: { ...process.env, ...roles.serverEnv },
    onStdout: (line) => logFile.write(`${line}\n`),
    onStderr: (line) => {
      logFile.write(`${line}\n`);
      lastLines.push(line);
      if (lastLines.length > LAST_LINES_KEPT) lastLines.shift();
      version ||= /\bVersion:\s+(\S+)/.exec(line)?.[1] ?? "";
      const level = /\[(WRN|ERR|FTL)\]\s+(.*)$/.exec(line);
      if (level?.[1] === "FTL") fatal = level[2]!;
      else if (level) log.warn({ nats_server: level[2] }, `nats-server ${level[1] === "ERR" ? "error" : "warning"}`);
    },
    // If dev dies (even by SIGKILL), nats-server stops cleanly instead of outliving it.
    deathSignal: "SIGINT",
  });
  if (child.pid !== undefined) writeFileSync(pidPath, JSON.stringify({ pid: child.pid, dev_pid: process.pid, url } satisfies PidFile));
  const forget = () => rmSync(pidPath, { force: true });

  const deadline = Date.now() + START_TIMEOUT_MS;
  while (!(await natsAnswers(url))) {
    if (!child.running || Date.now() > deadline) {
      const exitedOnItsOwn = !child.running;
      child.killGroup();
      await child.exited;
      // Its last lines (the fatal one) may still be on their way.
      await Promise.race([child.outputRead, new Promise((r) => setTimeout(r, OUTPUT_WAIT_MS))]);
      forget();
      if (/address already in use/.test(fatal)) throw new DevError(`port ${port} on ${host} is taken by something that is not a NATS server; set NATS_URL to another port`);
      const why = fatal || (exitedOnItsOwn ? `it exited (${JSON.stringify(child.exitInfo)})` : `no answer within ${START_TIMEOUT_MS / 1000} s`);
      throw new DevError(`nats-server did not start: ${why}; see ${logPath}${fatal ? "" : `; its last lines: ${lastLines.join(" | ")}`}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  log.info({ url, version, nats_pid: child.pid, config: path.resolve(confPath), log_file: path.resolve(logPath) }, `nats-server ${version} is up`);
  let stopped: Promise<void> | undefined;
  const stop = async () => {
    // SIGINT is nats-server's clean exit with status 0 (SIGTERM exits 1).
    const info = await child.stop("SIGINT", STOP_GRACE_MS);
    logFile.end();
    forget();
    if (info.code === 0) log.info({ nats_pid: child.pid }, "nats-server stopped");
    else log.warn({ nats_pid: child.pid, code: info.code, signal: info.signal, log_file: path.resolve(logPath) }, "nats-server stopped uncleanly");
  };
  return { url, child, stop: () => (stopped ??= stop()) };
}
