/**
 * Job files against a real nats-server, supervisors (process and thread
 * isolation) and a gateway, with auth on: files a handler writes (a 1 KiB
 * string, 5 MiB of bytes, a stream) listed and downloaded byte-identical
 * with their content types; 404 for another tenant, an unknown job or file;
 * 400 for bad names; a stale run's write refused with nothing stored; a
 * compute server's upload, and a stale lease's refused; files removed by
 * cleanup_runs with their job (a running job's kept).
 */
import t, { type Test } from "tap";
import { createHash } from "node:crypto";
import { writeFileSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pino } from "pino";
import { Kvm } from "@nats-io/kv";
import { startGateway, startSupervisor } from "./helpers/bosun.js";
import { http, type JobResult } from "./helpers/http.js";
import { rawHttp } from "./helpers/raw-http.js";
import { connectClient } from "./helpers/nats-client.js";
import { NatsServer } from "./helpers/nats-server.js";
import { uniqueName, waitFor } from "./helpers/wait.js";
import { patternBytes } from "./fixtures/files-handlers.js";
import { buckets, objectBuckets } from "../src/contract/index.js";
import { openFileStores } from "../src/files/stores.js";
import { newestToken } from "../src/files/fence.js";

const HANDLERS = path.resolve(import.meta.dirname, "fixtures/files-handlers.js");
const ADMIN_KEY = "files-test-admin-key-0123456789";
const env = { BOSUN_ADMIN_KEY: ADMIN_KEY };
const admin = { authorization: `Bearer ${ADMIN_KEY}` };
const server = await NatsServer.start(t);
const nc = await connectClient(t, server.url);
const stores = await (async () => {
  await startSupervisor(t, server.url, { queues: ["default"], env, args: ["--handlers", HANDLERS, "--min", "2", "--max", "2"] });
  await startSupervisor(t, server.url, { queues: ["threads"], env, args: ["--handlers", HANDLERS, "--isolation", "thread", "--min", "1"] });
  return openFileStores(nc, pino({ level: "silent" }));
})();
const REQUEST_TIMEOUT_MS = 3000;
const gateway = await startGateway(t, server.url, { env, args: ["--request-timeout-ms", String(REQUEST_TIMEOUT_MS)] });
const gw = gateway.baseUrl;
const gwPort = gateway.port;
const dir = await mkdtemp(path.join(os.tmpdir(), "bosun-files-"));

interface Written {
  written: { name: string; size: number; content_type: string; created_at: string; ms?: number }[];
  refused: string | null;
  read: { size: number; text: string } | null;
}
type FileSpec = { name: string; text?: string; bytes?: number; stream?: number; chunk?: number; content_type?: string };

async function run(files: FileSpec[], extra: Record<string, unknown> = {}, headers: Record<string, string> = admin): Promise<{ jobId: string; result: Written }> {
  const res = await http<JobResult>(gw, "POST", "/api/jobs?wait_ms=60000", { body: { type: "files.write", payload: { files, ...extra }, ...(extra.queue ? { queue: extra.queue } : {}) }, headers, timeoutMs: 70_000 });
  if (res.status !== 200 || res.body.state !== "succeeded") throw new Error(`files.write: ${res.status} ${res.text.slice(0, 500)}`);
  return { jobId: res.body.job_id, result: res.body.result as Written };
}
const download = async (jobId: string, name: string, headers: Record<string, string> = admin) => {
  const started = performance.now();
  const res = await fetch(`${gw}/api/jobs/${jobId}/files/${name}`, { headers, signal: AbortSignal.timeout(30_000) });
  const bytes = Buffer.from(await res.arrayBuffer());
  return { res, bytes, ms: performance.now() - started };
};
const listed = (jobId: string, headers: Record<string, string> = admin) => http<{ files: Written["written"] }>(gw, "GET", `/api/jobs/${jobId}/files`, { headers });
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");
const MiB = 1024 * 1024;

t.test("a handler's files (a 1 KiB string, 5 MiB of bytes, a stream) are listed and downloaded byte-identical with their content types", async (t) => {
  const text = "bosun files ".repeat(86).slice(0, 1024);
  const { jobId, result } = await run(
    [
      { name: "small.txt", text },
      { name: "big.bin", bytes: 5 * MiB, content_type: "application/x-bosun-test" },
      { name: "streamed.csv", stream: 300_000, chunk: 65_536, content_type: "text/csv; charset=utf-8" },
    ],
    { read: "small.txt" },
  );
  t.equal(result.refused, null, "nothing refused");
  t.same(result.read, { size: 1024, text: text.slice(0, 64) }, "ctx.files.read gives the file back");
  const list = await listed(jobId);
  t.equal(list.status, 200);
  t.same(
    list.body.files.map((f) => [f.name, f.size, f.content_type]),
    [
      ["big.bin", 5 * MiB, "application/x-bosun-test"],
      ["small.txt", 1024, "text/plain; charset=utf-8"],
      ["streamed.csv", 300_000, "text/csv; charset=utf-8"],
    ],
    "listed by name, with sizes and content types",
  );
  t.ok(list.body.files.every((f) => Date.parse(f.created_at) > Date.now() - 120_000), "with their times");
  const small = await download(jobId, "small.txt");
  t.equal(small.res.status, 200);
  t.equal(small.bytes.toString("utf8"), text, "the string");
  t.equal(small.res.headers.get("content-type"), "text/plain; charset=utf-8");
  t.equal(small.res.headers.get("x-content-type-options"), "nosniff");
  t.equal(small.res.headers.get("content-security-policy"), "sandbox", "never run as a page of the gateway's origin");
  const big = await download(jobId, "big.bin");
  t.equal(big.res.headers.get("content-type"), "application/x-bosun-test");
  t.equal(big.res.headers.get("content-length"), String(5 * MiB));
  t.equal(sha(big.bytes), sha(patternBytes(5 * MiB)), "5 MiB byte-identical");
  const streamed = await download(jobId, "streamed.csv");
  t.equal(sha(streamed.bytes), sha(patternBytes(300_000)), "the stream byte-identical");
  const writeMs = result.written.find((f) => f.name === "big.bin")!.ms!;
  t.comment(`5 MiB: ctx.files.write ${Math.round(writeMs)} ms (${(5 / (writeMs / 1000)).toFixed(1)} MiB/s), download ${Math.round(big.ms)} ms (${(5 / (big.ms / 1000)).toFixed(1)} MiB/s)`);
});

t.test("a run under --isolation thread writes and reads files too", async (t) => {
  const { jobId, result } = await run([{ name: "thread.txt", text: "from a worker thread" }], { read: "thread.txt", queue: "threads" });
  t.equal(result.refused, null);
  t.equal(result.read?.text, "from a worker thread");
  t.equal((await download(jobId, "thread.txt")).bytes.toString(), "from a worker thread");
});

t.test("unknown job or file: 404; bad names: 400, in the handler and over HTTP", async (t) => {
  const { jobId, result } = await run([{ name: "ok.txt", text: "x" }, { name: "../etc", text: "x" }, { name: "empty.txt", text: "" }]);
  t.match(result.refused, /^validation_error: /, "ctx.files.write refuses a bad name");
  t.same((await listed(jobId)).body.files.map((f) => f.name), ["empty.txt", "ok.txt"], "and stores nothing for it");
  const empty = await download(jobId, "empty.txt");
  t.equal(empty.res.status, 200);
  t.equal(empty.bytes.length, 0, "an empty file downloads empty");
  const unknownJob = `${jobId.slice(0, 8)}${"Z".repeat(22)}`;
  t.equal((await listed(unknownJob)).status, 404, "an unknown job's list");
  t.equal((await download(unknownJob, "ok.txt")).res.status, 404, "an unknown job's file");
  const missing = await download(jobId, "missing.txt");
  t.equal(missing.res.status, 404, "an unknown file");
  t.match(JSON.parse(missing.bytes.toString()), { error: { code: "not_found" } }, "in the contract's shape");
  for (const bad of ["a%20b", "a%2Fb", "caf%C3%A9", "a%00"]) t.equal((await download(jobId, bad)).res.status, 400, `name ${bad}`);
  // fetch() resolves dot segments itself: ".." only arrives over a bare socket.
  const dots = await rawHttp(gwPort, `GET /api/jobs/${jobId}/files/.. HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${ADMIN_KEY}\r\nConnection: close\r\n\r\n`);
  t.equal(dots.status, 400, "name ..");
  t.equal((await download("not-a-job!", "ok.txt")).res.status, 400, "a bad job id");
});

t.test("a download whose chunks are gone under it ends with 503, never hangs", async (t) => {
  const { jobId } = await run([{ name: "ghost.bin", bytes: 1000 }]);
  const stored = (await stores.objects.stored(jobId, "ghost.bin"))!;
  await stores.jsm.streams.purge(`OBJ_${objectBuckets.files}`, { filter: `$O.${objectBuckets.files}.C.${stored.nuid}` });
  const started = Date.now();
  const res = await fetch(`${gw}/api/jobs/${jobId}/files/ghost.bin`, { headers: admin, signal: AbortSignal.timeout(20_000) });
  // Nothing was sent yet (no first chunk), so the answer is still an error reply.
  t.equal(res.status, 503, "503 unavailable");
  t.match(await res.json(), { error: { code: "unavailable" } });
  t.ok(Date.now() - started < REQUEST_TIMEOUT_MS + 2000, `after the gateway's request timeout (${Date.now() - started} ms)`);
});

t.test("tenant isolation: another tenant's job's files are 404, as if it did not exist", async (t) => {
  const key = async (tenant: string) => {
    const res = await http<{ key: string }>(gw, "POST", "/api/admin/keys", { body: { tenant }, headers: admin });
    return { authorization: `Bearer ${res.body.key}` };
  };
  const [a, b] = [await key("files-a"), await key("files-b")];
  const { jobId } = await run([{ name: "secret.txt", text: "tenant A's" }], {}, a);
  t.equal((await listed(jobId, a)).status, 200, "A lists its own");
  t.equal((await download(jobId, "secret.txt", a)).bytes.toString(), "tenant A's", "and downloads it");
  const theirs = await listed(jobId, b);
  t.equal(theirs.status, 404, "B's list of A's job");
  t.equal((await download(jobId, "secret.txt", b)).res.status, 404, "B's download");
  t.equal((await download(jobId, "secret.txt", {})).res.status, 401, "no key");
});

t.test("a stale run's write is refused and stores nothing", async (t) => {
  const go = path.join(dir, uniqueName("go"));
  const submitted = await http<{ job_id: string }>(gw, "POST", "/api/jobs", { body: { type: "files.write", payload: { files: [{ name: "late.txt", text: "stale" }], wait_for: go } }, headers: admin });
  const jobId = submitted.body.job_id;
  const interim = await new Kvm(nc).open(buckets.jobs);
  // The run shows as running (its interim record, with its token): a newer run takes over the record.
  const entry = await waitFor(async () => (await interim.get(jobId))?.json<{ fencing_token: number }>(), { what: "the run's interim record" });
  await interim.put(jobId, JSON.stringify({ ...entry, fencing_token: entry.fencing_token + 1 }));
  writeFileSync(go, "");
  const result = (await waitFor(async () => {
    const r = await http<JobResult>(gw, "GET", `/api/jobs/${jobId}/result`, { headers: admin });
    return r.status === 200 && r;
  }, { what: "the run's end", timeoutMs: 20_000 })).body.result as Written;
  t.match(result.refused, /^lease_stale: a newer run of job/, "the write threw in the handler");
  t.same((await listed(jobId)).body.files, [], "nothing listed");
  t.equal(await stores.objects.stored(jobId, "late.txt"), undefined, "nothing stored");
});

t.test("fencing: a file of the name written by a newer run is never replaced by an older one", async (t) => {
  const { jobId, result } = await run([{ name: "fenced.txt", text: "current" }]);
  t.equal(result.refused, null);
  const stored = (await stores.objects.stored(jobId, "fenced.txt"))!;
  const older = { job_id: jobId, name: "fenced.txt", content_type: "text/plain", fencing_token: stored.fencing_token - 1 };
  await t.rejects(stores.objects.put(older, (async function* () { yield Buffer.from("older"); })()), { code: "lease_stale" }, "an older run's write");
  t.equal((await stores.objects.read(jobId, "fenced.txt"))?.toString(), "current", "the newer run's bytes stay");
  t.equal(await newestToken(stores.jsm, jobId, pino({ level: "silent" })), stored.fencing_token, "the job's final record carries the writing run's token");
});

/** A compute server enrolled for its own queue (no supervisor serves it), holding one leased job. */
async function leasedJob(t: Test): Promise<{ jobId: string; leaseId: string; credential: string }> {
  const queue = uniqueName("remote");
  const token = await http<{ token: string }>(gw, "POST", "/api/compute/enroll-tokens", { body: { queues: [queue] }, headers: admin });
  const server = await http<{ credential: string }>(gw, "POST", "/api/compute/servers", { body: { enroll_token: token.body.token, name: uniqueName("srv") } });
  const credential = server.body.credential;
  const submitted = await http<{ job_id: string }>(gw, "POST", "/api/jobs", { body: { type: "remote.render", queue }, headers: admin });
  t.equal(submitted.status, 202, "a job for the compute server");
  const leased = await http<{ lease: { lease_id: string } }>(gw, "POST", "/api/compute/jobs/lease", { body: { wait_ms: 5000 }, headers: { authorization: `Bearer ${credential}` } });
  t.equal(leased.status, 200, "leased");
  return { jobId: submitted.body.job_id, leaseId: leased.body.lease.lease_id, credential };
}
const upload = async (jobId: string, name: string, body: Buffer, headers: Record<string, string>) => {
  const started = performance.now();
  const res = await fetch(`${gw}/api/compute/jobs/${jobId}/files/${name}`, { method: "PUT", body, headers, signal: AbortSignal.timeout(30_000) });
  return { status: res.status, body: (await res.json()) as { name?: string; size?: number; content_type?: string; error?: { code: string } }, ms: performance.now() - started };
};

/** A compute server's read under its lease (GET /api/compute/jobs/{id}/files/{name}). */
const leasedRead = async (jobId: string, name: string, headers: Record<string, string>) => {
  const res = await fetch(`${gw}/api/compute/jobs/${jobId}/files/${name}`, { headers, signal: AbortSignal.timeout(30_000) });
  const bytes = Buffer.from(await res.arrayBuffer());
  return { status: res.status, bytes, code: res.status === 200 ? undefined : (JSON.parse(bytes.toString("utf8")) as { error?: { code: string } }).error?.code, type: res.headers.get("content-type") };
};

t.test("a compute server uploads a file for its lease (PUT …/files/{name}) and reads it back (GET); a stale lease's upload or read is 409 and changes nothing", async (t) => {
  const { jobId, leaseId, credential } = await leasedJob(t);
  const as = { authorization: `Bearer ${credential}`, "bosun-lease-id": leaseId };
  const bytes = patternBytes(5 * MiB);
  const put = await upload(jobId, "frame.png", bytes, { ...as, "content-type": "image/png" });
  t.equal(put.status, 201, JSON.stringify(put.body));
  t.match(put.body, { name: "frame.png", size: 5 * MiB, content_type: "image/png" });
  const got = await download(jobId, "frame.png");
  t.equal(got.res.headers.get("content-type"), "image/png");
  t.equal(sha(got.bytes), sha(bytes), "downloaded byte-identical");
  t.comment(`5 MiB: upload ${Math.round(put.ms)} ms (${(5 / (put.ms / 1000)).toFixed(1)} MiB/s)`);
  t.equal((await upload(jobId, "no-type", Buffer.from("x"), as)).body.content_type, "application/octet-stream", "no content type: bytes");
  const readBack = await leasedRead(jobId, "frame.png", as);
  t.equal(readBack.status, 200, "read back under the lease");
  t.equal(readBack.type, "image/png", "with its content type");
  t.equal(sha(readBack.bytes), sha(bytes), "byte-identical");
  t.match(await leasedRead(jobId, "missing.bin", as), { status: 404, code: "not_found" }, "a file the job does not have: 404");
  t.equal((await leasedRead(jobId, "frame.png", { authorization: as.authorization })).status, 400, "a read with no lease id: 400");
  t.match(await leasedRead(jobId, "frame.png", { ...as, "bosun-lease-id": "NoSuchLease" }), { status: 409, code: "lease_stale" }, "a read under another lease id: 409");
  t.equal((await leasedRead(jobId, "frame.png", { "bosun-lease-id": leaseId })).status, 401, "a read with no credential: 401");

  t.equal((await upload(jobId, "x.txt", Buffer.from("x"), { "bosun-lease-id": leaseId })).status, 401, "no credential");
  t.equal((await upload(jobId, "x.txt", Buffer.from("x"), { ...as, authorization: `Bearer ${ADMIN_KEY}` })).status, 401, "an API key is no credential");
  t.equal((await upload(jobId, "a%20b", Buffer.from("x"), as)).status, 400, "a bad name");
  t.equal((await upload(jobId, "x.txt", Buffer.from("x"), { authorization: as.authorization })).status, 400, "no lease id");
  t.equal((await upload(jobId, "x.txt", Buffer.from("x"), { ...as, "content-type": "not a type" })).status, 400, "a bad content type");
  const other = await upload(jobId, "x.txt", Buffer.from("x"), { ...as, "bosun-lease-id": "NoSuchLease" });
  t.equal(other.status, 409, "another lease id");
  t.equal(other.body.error?.code, "lease_stale");
  const huge = await rawHttp(gwPort, `PUT /api/compute/jobs/${jobId}/files/huge.bin HTTP/1.1\r\nHost: x\r\nAuthorization: ${as.authorization}\r\nBosun-Lease-Id: ${leaseId}\r\nContent-Length: ${70 * MiB}\r\n\r\n`);
  t.equal(huge.status, 413, "over the size limit: refused before the body");

  const ended = await http(gw, "POST", `/api/compute/jobs/${jobId}/result`, { body: { lease_id: leaseId, result: { ok: true } }, headers: { authorization: as.authorization } });
  t.equal(ended.status, 200, "the lease ends with its result");
  const stale = await upload(jobId, "late.bin", patternBytes(1000), as);
  t.equal(stale.status, 409, "an upload under the ended lease");
  t.equal(stale.body.error?.code, "lease_stale");
  t.match(await leasedRead(jobId, "frame.png", as), { status: 409, code: "lease_stale" }, "a read under the ended lease");
  t.same((await listed(jobId)).body.files.map((f) => f.name).sort(), ["frame.png", "no-type"], "nothing stored for it");
  t.equal(await stores.objects.stored(jobId, "late.bin"), undefined);
});

t.test("with compute_endpoints_enabled false the upload and read routes are 404", async (t) => {
  const { jobId, leaseId, credential } = await leasedJob(t);
  const off = await http(gw, "PATCH", "/api/admin/ops", { body: { compute_endpoints_enabled: false }, headers: admin });
  t.equal(off.status, 200);
  t.teardown(() => http(gw, "PATCH", "/api/admin/ops", { body: { compute_endpoints_enabled: true }, headers: admin }));
  const as = { authorization: `Bearer ${credential}`, "bosun-lease-id": leaseId };
  await waitFor(async () => (await upload(jobId, "off.txt", Buffer.from("x"), as)).status === 404, { what: "the flag applied" });
  t.pass("404 while turned off");
  t.equal(await stores.objects.stored(jobId, "off.txt"), undefined, "nothing stored");
  t.equal((await leasedRead(jobId, "off.txt", as)).status, 404, "the read route too");
});

t.test("files are removed by cleanup_runs with their job; a running job's stay", async (t) => {
  const hold = path.join(dir, uniqueName("hold"));
  const { jobId } = await run([{ name: "old.txt", text: "to be removed" }, { name: "old.bin", bytes: 300_000 }]);
  const running = await http<{ job_id: string }>(gw, "POST", "/api/jobs", { body: { type: "files.write", payload: { files: [{ name: "kept.txt", text: "still running" }], hold } }, headers: admin });
  await waitFor(async () => (await listed(running.body.job_id)).body.files?.length === 1, { what: "the running job's file" });
  const task = await http<{ task_id: string }>(gw, "POST", "/api/system/maintenance/cleanup-runs", { body: { max_age_hours: 0 }, headers: admin });
  const report = await waitFor(async () => {
    const r = await http<JobResult>(gw, "GET", `/api/jobs/${task.body.task_id}/result`, { headers: admin });
    if (r.status !== 200 || r.body.state !== "succeeded") throw new Error(`cleanup_runs: ${r.text.slice(0, 300)} ${(await http(gw, "GET", `/api/jobs/${task.body.task_id}`, { headers: admin })).text.slice(0, 400)}`);
    return r.status === 200 && (r.body.result as { files_removed: number });
  }, { what: "cleanup_runs", timeoutMs: 20_000 });
  t.ok(report.files_removed >= 2, `it reports the files it removed (${report.files_removed})`);
  t.equal((await listed(jobId)).status, 404, "the job is gone, its files with it");
  t.equal(await stores.objects.stored(jobId, "old.bin"), undefined, "its objects are removed");
  t.equal(await stores.lists.read(jobId), undefined, "and its list");
  t.same((await listed(running.body.job_id)).body.files.map((f) => f.name), ["kept.txt"], "a running job keeps its files");
  writeFileSync(hold, "");
});
