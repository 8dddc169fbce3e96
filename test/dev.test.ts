/**
 * `bosun dev` as a newcomer meets it: on other ports than the defaults,
 * with its output (nothing "up" before it is, no nats-server banner, one
 * line per event), and every way it can end: Ctrl-C, SIGTERM, SIGHUP (a
 * closed terminal), SIGKILL of dev or of its parent, a second Ctrl-C during
 * a long job, a port already taken. Each time: the exit code, and no
 * process left behind.
 */
import { readFile, writeFile } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { mkdtemp, rm } from "node:fs/promises";
import t from "tap";
import { DevRun } from "./helpers/dev.js";
import { http, type JobResult, type JobStatus, type SubmitReply } from "./helpers/http.js";
import { NatsServer } from "./helpers/nats-server.js";
import { isAlive, waitFor } from "./helpers/wait.js";

/** Shutdown may take a while on a loaded 2-core machine; a hang takes far longer. */
const GONE_MS = 15_000;

t.test("dev on other ports: one job, the right URL, nothing up before it is, no banner, Ctrl-C exits 0 and leaves nothing", async (t) => {
  const dev = await DevRun.start(t);
  const up = await dev.up();
  t.equal(up.gateway, `http://127.0.0.1:${dev.port}`, "the up line names the gateway's real port");
  t.equal(up.nats, dev.natsUrl, "and the NATS URL it was given");
  t.match(up.supervisor_metrics, /^http:\/\/127\.0\.0\.1:\d+\/metrics$/, "and the supervisor's metrics URL");

  const lines = dev.proc.stdoutLines.map((l) => l.json?.msg);
  const upAt = lines.findIndex((m) => typeof m === "string" && m.startsWith("bosun dev is up"));
  const listeningAt = lines.findIndex((m) => typeof m === "string" && m.startsWith("Server listening at"));
  const runningAt = dev.proc.stdoutLines.findIndex((l) => l.json?.msg === "supervisor state" && l.json.to === "running");
  t.ok(listeningAt >= 0 && listeningAt < upAt, "up is said after the gateway listens");
  t.ok(runningAt >= 0 && runningAt < upAt, "and after the supervisor runs");

  const job = await http<JobResult>(up.gateway, "POST", "/api/jobs?wait_ms=10000", { body: { type: "echo", payload: { hi: 1 } } });
  t.equal(job.status, 200, "a job runs through the gateway", { body: job.text });
  t.same(job.body.result, { hi: 1 });
  const metrics = await fetch(up.supervisor_metrics).then((r) => r.text());
  t.match(metrics, /bosun_jobs_succeeded_total\{[^}]*\} 1/, "the supervisor's metrics count it");

  const conf = await readFile(path.join(dev.dataDir, "nats-server.conf"), "utf8");
  t.match(conf, new RegExp(`^listen: 127\\.0\\.0\\.1:${new URL(dev.natsUrl).port}$`, "m"), "nats-server's config listens where NATS_URL says");
  t.notMatch(conf, /4222/, "and nothing in it is hard-coded to 4222");
  const banner = await readFile(path.join(dev.dataDir, "nats-server.log"), "utf8");
  t.match(banner, /Starting nats-server/, "nats-server's banner went to its log file");
  const everything = [...dev.proc.stdoutLines.map((l) => l.raw), ...dev.proc.stderrLines].join("\n");
  t.notMatch(everything, /\[INF\]|Starting nats-server|Version:/, "and not to the dev pane");

  const pids = dev.pids();
  t.ok(pids.length >= 5, `dev, nats-server, supervisor, gateway and execution processes are known (${pids.join(" ")})`);
  dev.signal("SIGINT");
  t.same(await dev.exited(GONE_MS), { code: 0, signal: null }, "Ctrl-C: dev exits 0");
  t.same(await dev.gone(pids, GONE_MS), [], "no process is left behind");

  t.equal(dev.logsWith("nats-server stopped").length, 1, "nats-server's clean exit is logged as such");
  t.equal(dev.logsWith("nats-server stopped uncleanly").length, 0, "not as a failure");
  const retired = dev.logsWith("retiring execution process").map((l) => l.child_pid);
  t.equal(new Set(retired).size, retired.length, `"retiring execution process" once per pid (${retired.join(" ")})`);
  t.equal(dev.logs.filter((l) => l.msg === "incoming request" || l.msg === "request completed").length, 0, "no per-request lines at info");
  t.notOk(dev.logs.some((l) => l.level === 50 && /failed to start/.test(String(l.msg))), "no start-up failure logged while stopping");
});

t.test("BOSUN_PORT is the gateway's port too; with BOSUN_LOG_LEVEL=debug each request is one line; SIGHUP (closed terminal) exits 0", async (t) => {
  const dev = await DevRun.start(t, { portFromEnv: true, env: { BOSUN_LOG_LEVEL: "debug" } });
  const up = await dev.up();
  t.equal(up.gateway, `http://127.0.0.1:${dev.port}`, "the up line names BOSUN_PORT's port");
  for (const id of ["req-a", "req-b", "req-c"]) {
    const res = await http(up.gateway, "GET", "/healthz", { headers: { "x-correlation-id": id } });
    t.equal(res.status, 200);
  }
  await waitFor(() => dev.logs.filter((l) => l.msg === "request" && String(l.correlation_id).startsWith("req-")).length >= 3, { timeoutMs: 5000, what: "the request lines" });
  for (const id of ["req-a", "req-b", "req-c"]) {
    const mine = dev.logs.filter((l) => l.correlation_id === id);
    t.equal(mine.length, 1, `request ${id}: one line`);
    t.match(mine[0], { level: 20, method: "GET", url: "/healthz", status: 200 }, `at debug, with method, url and status`);
  }
  const pids = dev.pids();
  dev.signal("SIGHUP");
  t.same(await dev.exited(GONE_MS), { code: 0, signal: null }, "SIGHUP: dev exits 0");
  t.same(await dev.gone(pids, GONE_MS), [], "no process is left behind");
});

t.test("SIGKILL of dev leaves nothing behind; a nats-server an earlier dev left running is stopped, not reused; SIGTERM exits 0", async (t) => {
  const killed = await DevRun.start(t);
  await killed.up();
  const pids = killed.pids();
  await killed.proc.kill();
  t.same(await killed.gone(pids, GONE_MS), [], "dev SIGKILLed: nats-server, supervisor, gateway and execution processes stop too");

  // A nats-server an earlier dev started, still running after that dev died (as on a system without
  // a parent-death signal): dev's pid file names it.
  const dataDir = await mkdtemp(path.join(os.tmpdir(), "bosun-test-dev-"));
  t.teardown(() => rm(dataDir, { recursive: true, force: true }));
  const leftover = await NatsServer.start(t);
  const leftoverPid = leftover.process!.pid;
  await writeFile(path.join(dataDir, "nats-server.pid"), JSON.stringify({ pid: leftoverPid, dev_pid: pids[0], url: leftover.url }));
  // Same URL as the leftover's, which answers NATS: reusing it silently is what must not happen.
  const again = await DevRun.start(t, { dataDir, env: { NATS_URL: leftover.url } });
  const up = await again.up();
  t.ok(again.logsWith("stopping the nats-server an earlier bosun dev left running").length === 1, "dev says it stops the leftover nats-server");
  t.notOk(isAlive(leftoverPid), "the leftover is gone");
  t.ok(up.pids.nats_server && up.pids.nats_server !== leftoverPid, `dev runs its own nats-server (pid ${up.pids.nats_server})`);
  const again2 = again.pids();
  again.signal("SIGTERM");
  t.same(await again.exited(GONE_MS), { code: 0, signal: null }, "SIGTERM: dev exits 0");
  t.same(await again.gone(again2, GONE_MS), [], "no process is left behind");
});

t.test("dev --cluster 3: three nodes in one JetStream cluster, every stream R3, a job runs, Ctrl-C stops all three", async (t) => {
  const dev = await DevRun.start(t, { args: ["--cluster", "3"] });
  const up = await dev.up();
  const base = Number(new URL(dev.natsUrl).port);
  t.equal(up.nats, [0, 1, 2].map((i) => `nats://127.0.0.1:${base + i}`).join(","), "the up line names the three nodes, from NATS_URL's port on");
  t.equal(up.pids.nats_servers?.length, 3, "three nats-servers run");
  t.match(dev.logsWith("topology provisioned")[0], { replicas: 3, under_replicated: 0 }, "the supervisor gives every stream and bucket 3 replicas");
  const job = await http<JobResult>(up.gateway, "POST", "/api/jobs?wait_ms=10000", { body: { type: "echo", payload: { n: 3 } } });
  t.equal(job.status, 200, "a job runs through the cluster", { body: job.text });
  const pids = dev.pids();
  dev.signal("SIGINT");
  t.same(await dev.exited(GONE_MS), { code: 0, signal: null }, "Ctrl-C: dev exits 0");
  t.same(await dev.gone(pids, GONE_MS), [], "no node or process is left behind");
  t.equal(dev.logsWith("nats-server stopped").length, 3, "each node stopped cleanly");
});

t.test("SIGKILL of dev's parent: dev notices, stops everything, leaves nothing", async (t) => {
  const dev = await DevRun.start(t, { underShell: true });
  await dev.up();
  const pids = dev.pids();
  await dev.proc.kill();
  t.same(await dev.gone(pids, GONE_MS), [], "dev and everything it started are gone");
  t.ok(dev.logsWith(/^stopping: /).some((l) => l.signal === "parent exited"), "dev stopped because its parent went away");
});

t.test("a taken port: one clear line, exit 1, nothing said to be up, nothing left running", async (t) => {
  const blocker = net.createServer();
  await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve));
  t.teardown(() => new Promise<void>((resolve) => blocker.close(() => resolve())));
  const taken = (blocker.address() as net.AddressInfo).port;

  const gatewayPort = await DevRun.start(t, { args: ["--port", String(taken)] });
  t.same(await gatewayPort.exited(GONE_MS), { code: 1, signal: null }, "gateway port taken: exit 1");
  t.same(gatewayPort.proc.stderrLines, [`bosun dev: port ${taken} on 127.0.0.1 is taken; choose another with --port N (or BOSUN_PORT)`], "one line saying which port and what to do");
  t.equal(gatewayPort.logsWith(/is up/).length, 0, "nothing is said to be up");
  t.equal(gatewayPort.logsWith(/nats-server .* is up/).length, 0, "not even nats-server was started");

  const natsPort = await DevRun.start(t, { env: { NATS_URL: `nats://127.0.0.1:${taken}` } });
  t.same(await natsPort.exited(GONE_MS), { code: 1, signal: null }, "NATS port taken by something else: exit 1");
  t.match(natsPort.proc.stderrLines.join("\n"), new RegExp(`^bosun dev: port ${taken} on 127\\.0\\.0\\.1 is taken by something that is not a NATS server; set NATS_URL to another port$`), "one line saying so");
  t.equal(natsPort.proc.stderrLines.length, 1, "and only that line");
  t.notMatch(natsPort.proc.stdoutLines.map((l) => l.raw).join("\n"), /bosun dev is up|\n\s+at /, "no up line, no stack");
});

t.test("Ctrl-C during a long job drains with a countdown; a second Ctrl-C stops at once (exit 130), leaving nothing", async (t) => {
  const dev = await DevRun.start(t, { args: ["--grace-ms", "30000", "--min", "1", "--max", "1"] });
  const up = await dev.up();
  const submitted = await http<SubmitReply>(up.gateway, "POST", "/api/jobs", { body: { type: "sleep", payload: { ms: 60_000 } } });
  t.equal(submitted.status, 202, "a long job is accepted", { body: submitted.text });
  await waitFor(async () => (await http<JobStatus>(up.gateway, "GET", `/api/jobs/${submitted.body.job_id}`)).body.state === "running", {
    timeoutMs: 15_000,
    what: "the long job to run",
  });
  const pids = dev.pids();
  dev.signal("SIGINT");
  const countdown = await dev.proc.waitForLog((l) => typeof l.json?.msg === "string" && l.json.msg.startsWith("draining: 1 job(s) still running"), 10_000, "the drain countdown");
  t.ok(Number(countdown.json!.seconds_left) > 20, `the countdown says how long is left (${countdown.json!.seconds_left} s)`);
  t.ok(dev.proc.running, "the first Ctrl-C waits for the job");
  await new Promise((r) => setTimeout(r, 700));
  const forcedAt = Date.now();
  dev.signal("SIGINT");
  t.same(await dev.exited(GONE_MS), { code: 130, signal: null }, "the second Ctrl-C: exit 130");
  t.ok(Date.now() - forcedAt < 10_000, `at once (${Date.now() - forcedAt} ms), not after the 30 s grace`);
  t.same(await dev.gone(pids, GONE_MS), [], "the job's execution process and everything else are gone");
});

t.test("dev --watch restarts the supervisor when the handler module changes", async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), "bosun-test-watch-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const handlers = path.join(dir, "handlers.js");
  const version = (v: string) => `export default { greet: { run: () => ({ version: "${v}" }) } };\n`;
  await writeFile(handlers, version("one"));
  const dev = await DevRun.start(t, { args: ["--watch", "--handlers", handlers] });
  const up = await dev.up();
  const greet = async () => {
    const res = await http<JobResult>(up.gateway, "POST", "/api/jobs?wait_ms=10000", { body: { type: "greet" } });
    if (res.status !== 200) throw new Error(`greet: ${res.status} ${res.text}`);
    return res.body.result;
  };
  t.same(await greet(), { version: "one" }, "the first version runs");
  await writeFile(handlers, version("two"));
  await dev.proc.waitForLog((l) => l.json?.msg === "restarted the supervisor after a change", 30_000, "the supervisor restart");
  t.same(await waitFor(async () => ((await greet()) as { version?: string })?.version === "two" && (await greet()), { timeoutMs: 10_000, what: "the new version" }), { version: "two" }, "the changed handler runs");
  const pids = dev.pids();
  dev.signal("SIGINT");
  t.same(await dev.exited(GONE_MS), { code: 0, signal: null });
  t.same(await dev.gone(pids, GONE_MS), [], "no process is left behind, old supervisor's included");
});
