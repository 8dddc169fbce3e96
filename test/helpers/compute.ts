/** Remote compute server calls over HTTP, as a test drives them (test/compute*.test.ts). */
import path from "node:path";
import { cleanEnv, CLI, type BosunGateway } from "./bosun.js";
import { http, type ErrorReply } from "./http.js";
import { ManagedProcess, withoutNodeOptions } from "./processes.js";
import { reportOnFailure, type TeardownHost } from "./teardown.js";
import { uniqueName } from "./wait.js";

export interface Leased {
  job: { job_id: string; type: string; payload: unknown; attempt: number; timeout_ms: number; correlation_id: string };
  lease: { lease_id: string; fencing_token: number; expires_at: string };
}

/** A remote compute server as the tests drive it: plain HTTP calls. */
export class RemoteServer {
  constructor(
    readonly serverId: string,
    readonly credential: string,
  ) {}

  static async enroll(gw: BosunGateway, queues: string[], name = uniqueName("srv")): Promise<RemoteServer> {
    const token = await http<{ token: string }>(gw.baseUrl, "POST", "/api/compute/enroll-tokens", { body: { queues, ttl_ms: 60_000 } });
    if (token.status !== 201) throw new Error(`enroll token: ${token.status} ${token.text}`);
    const enrolled = await http<{ server_id: string; credential: string }>(gw.baseUrl, "POST", "/api/compute/servers", { body: { enroll_token: token.body.token, name } });
    if (enrolled.status !== 201) throw new Error(`enroll: ${enrolled.status} ${enrolled.text}`);
    return new RemoteServer(enrolled.body.server_id, enrolled.body.credential);
  }

  call<T>(gw: BosunGateway, method: string, path: string, body?: unknown) {
    return http<T>(gw.baseUrl, method, path, { body, headers: { authorization: `Bearer ${this.credential}` }, timeoutMs: 30_000 });
  }

  async lease(gw: BosunGateway, waitMs = 5000): Promise<Leased | undefined> {
    const res = await this.call<Leased>(gw, "POST", "/api/compute/jobs/lease", { wait_ms: waitMs });
    if (res.status === 204) return undefined;
    if (res.status !== 200) throw new Error(`lease: ${res.status} ${res.text}`);
    return res.body;
  }

  heartbeat(gw: BosunGateway, l: Leased, progress?: number) {
    return this.call<ErrorReply & { expires_at: string }>(gw, "POST", `/api/compute/jobs/${l.job.job_id}/heartbeat`, { lease_id: l.lease.lease_id, ...(progress !== undefined && { progress }) });
  }

  result(gw: BosunGateway, l: Leased, result: unknown) {
    return this.call<ErrorReply & { state: string }>(gw, "POST", `/api/compute/jobs/${l.job.job_id}/result`, { lease_id: l.lease.lease_id, result });
  }

  failed(gw: BosunGateway, l: Leased, error: { code: string; message: string }, retryable = true) {
    return this.call<ErrorReply & { state: string }>(gw, "POST", `/api/compute/jobs/${l.job.job_id}/failed`, { lease_id: l.lease.lease_id, error, retryable });
  }
}


/** Starts `bosun compute-worker` in its own process group and waits until it runs. */
export async function startComputeWorker(t: TeardownHost, gw: BosunGateway, opts: { enrollToken: string; name: string; dir: string; args?: string[] }): Promise<ManagedProcess> {
  const args = ["compute-worker", "--gateway", gw.baseUrl, "--enroll-token", opts.enrollToken, "--name", opts.name, "--credential-file", path.join(opts.dir, `${opts.name}.json`), "--grace-ms", "2000", ...(opts.args ?? [])];
  const proc = new ManagedProcess(...withoutNodeOptions(process.execPath, [CLI, ...args]), { name: `compute-worker[${opts.name}]`, env: cleanEnv(), group: true });
  t.teardown(async () => {
    await proc.stop(5000).catch(() => undefined);
  });
  reportOnFailure(t, () => proc.tail(30));
  await proc.waitForLog((l) => l.json?.msg === "compute worker running", 15_000, "compute worker running");
  return proc;
}

/** A fresh enroll token for these queues. */
export async function enrollToken(gw: BosunGateway, queues: string[]): Promise<string> {
  const res = await http<{ token: string }>(gw.baseUrl, "POST", "/api/compute/enroll-tokens", { body: { queues } });
  if (res.status !== 201) throw new Error(`enroll token: ${res.status} ${res.text}`);
  return res.body.token;
}
