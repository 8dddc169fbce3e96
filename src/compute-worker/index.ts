/**
 * `bosun compute-worker`: the reference remote compute server. HTTP only,
 * no NATS: it enrolls once (or reuses its saved credential), then leases
 * jobs through a gateway and runs them in the same execution pool a
 * supervisor uses (worker.ts). A heartbeat's 409 (`cancelled`, or
 * `lease_stale`: expired, past its timeout, revoked) kills that run; a 401
 * stops the worker with exit 1. docs/compute.md, "The reference compute
 * worker".
 */
import { randomUUID } from "node:crypto";
import { chmod, mkdir, readFile, rename, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "pino";
import { z } from "zod";
import { EnrolledServer, MAX_LEASE_TYPES } from "../contract/index.js";
import { loadHandlers } from "../actors/handlers.js";
import { ComputeClient } from "../client/compute.js";
import { InternalError, UnavailableError } from "../client/errors.js";
import type { ComputeWorkerConfig } from "../platform/config.js";
import { failStartup, onShutdownSignals, StartupError } from "../platform/lifecycle.js";
import { createLogger } from "../platform/logger.js";
import { logUnhandledRejections } from "../platform/guard.js";
import { backoffDelay } from "../supervisor/backoff.js";
import { ComputeWorker } from "./worker.js";

const SavedCredential = EnrolledServer.extend({ gateway: z.string() });
type SavedCredential = z.infer<typeof SavedCredential>;
const ENROLL_RETRY = { type: "exponential", delay_ms: 500, max_delay_ms: 10_000 } as const;

export async function runComputeWorker(config: ComputeWorkerConfig): Promise<void> {
  const log = createLogger("bosun.compute-worker");
  logUnhandledRejections(log);
  let worker: ComputeWorker;
  let file: string;
  try {
    const types = await leaseTypes(config, log);
    file = config.credential_file ?? path.join(os.homedir(), ".bosun", `compute-${config.name}.json`);
    const saved = await credentialFor(config, file, log);
    worker = new ComputeWorker(config, new ComputeClient(config.gateway, saved.credential), saved.credential, types, log.child({ server_id: saved.server_id }));
  } catch (err) {
    failStartup(err, log);
  }
  onShutdownSignals(() => worker.stop(), log);
  // A stop ends in the signal handler's exit; a revoke ends here.
  if ((await worker.run()) === "revoked") {
    log.error({ credential_file: file }, `this compute server's credential was refused (revoked?): stopping; to serve again, delete ${file} and enroll with a new --enroll-token`);
    process.exit(1);
  }
}

/**
 * The types to lease: those given (each must be served by the handlers),
 * else every type the handlers serve but the maintenance tasks, which need
 * NATS. A job of a type this worker cannot run is never leased to it.
 */
async function leaseTypes(config: ComputeWorkerConfig, log: Logger): Promise<string[] | undefined> {
  const served = [...(await loadHandlers(config.handlers, config.builtins)).keys()];
  if (config.types) {
    const missing = config.types.filter((type) => !served.includes(type));
    if (missing.length > 0) throw new StartupError(`--types names ${missing.join(", ")}, which ${config.handlers ?? "the built-in handlers"} do not serve`);
    return config.types;
  }
  const types = served.filter((type) => !type.startsWith("maintenance."));
  if (types.length === 0) throw new StartupError("no job types to serve: give --handlers, or leave the built-ins on");
  if (types.length <= MAX_LEASE_TYPES) return types;
  log.warn({ types: types.length, max: MAX_LEASE_TYPES }, "more job types than one lease request may name: leasing any type of the server's queues (--types narrows it)");
  return undefined;
}

/**
 * The saved credential (any gateway of the deployment takes it), else a
 * new one from the enroll token, saved before it is used: it is shown once.
 */
async function credentialFor(config: ComputeWorkerConfig, file: string, log: Logger): Promise<SavedCredential> {
  const saved = await readSaved(file);
  if (saved.ok) {
    log.info({ server_id: saved.value.server_id, credential_file: file, ...(saved.value.gateway !== config.gateway && { enrolled_at_gateway: saved.value.gateway }) }, "using the saved compute credential");
    return saved.value;
  }
  if (!config.enroll_token) throw new StartupError(`${saved.why} and no --enroll-token (or BOSUN_ENROLL_TOKEN) was given`);
  if (saved.why !== "no saved credential") log.warn({ credential_file: file, why: saved.why }, "enrolling again");
  const enrolled = await enroll(new ComputeClient(config.gateway), { enroll_token: config.enroll_token, name: config.name, ...(config.target && { target: config.target }) }, log);
  const credential = { ...enrolled, gateway: config.gateway };
  try {
    await save(file, credential);
  } catch (err) {
    throw new StartupError(`enrolled as ${enrolled.server_id}, but the credential could not be saved to ${file} (${(err as Error).message}): revoke ${enrolled.server_id} and enroll again`);
  }
  log.info({ server_id: enrolled.server_id, queues: enrolled.queues, target: enrolled.target, credential_file: file }, "enrolled as a compute server; credential saved");
  return credential;
}

async function readSaved(file: string): Promise<{ ok: true; value: SavedCredential } | { ok: false; why: string }> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return { ok: false, why: "no saved credential" };
    return { ok: false, why: `the credential file ${file} cannot be read (${(err as Error).message})` };
  }
  try {
    const parsed = SavedCredential.safeParse(JSON.parse(text));
    if (parsed.success) return { ok: true, value: parsed.data };
  } catch {
    // Not JSON: said below like any other malformed file.
  }
  return { ok: false, why: `${file} is not a saved compute credential` };
}

/** Written whole or not at all (a temp file renamed over it), readable by its owner only. */
async function save(file: string, credential: SavedCredential): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const temp = `${file}.${randomUUID()}.tmp`;
  await writeFile(temp, JSON.stringify(credential), { mode: 0o600 });
  // The mode is set again: writeFile's applies only when it creates the file, and the umask may narrow it.
  await chmod(temp, 0o600);
  await rename(temp, file);
}

/** The enroll call, retried while the gateway is unreachable or answers 5xx; a refusal (401, 400) is final. */
async function enroll(client: ComputeClient, req: Parameters<ComputeClient["enroll"]>[0], log: Logger): Promise<z.infer<typeof EnrolledServer>> {
  for (let failures = 1; ; failures++) {
    try {
      return await client.enroll(req);
    } catch (err) {
      if (!(err instanceof UnavailableError || err instanceof InternalError)) {
        // An earlier try may have gone through with its answer lost: the token is used then.
        const earlier = failures > 1 ? "; if an earlier try went through, revoke that server in GET /api/compute/servers and use a new token" : "";
        throw new StartupError(`enrolling failed: ${(err as Error).message}${earlier}`);
      }
      const retryInMs = backoffDelay(ENROLL_RETRY, failures);
      log.warn({ err: err.message, retry_in_ms: retryInMs }, "enrolling failed; trying again");
      await sleep(retryInMs);
    }
  }
}
