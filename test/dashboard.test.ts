/**
 * The dashboard in Debian's chromium against real servers (a nats-server,
 * two supervisors, a gateway): the overview shows both supervisors, a job
 * shows its live progress and ends succeeded, a dead job retried from its
 * page runs again, pausing a queue from the queue page makes submits 503,
 * and with auth on a tenant key sees only its tenant's jobs and the pages its
 * key may open, and another tenant's job as not found. Every page is
 * screenshotted under test-output/ui/; the load time and bundle size go to
 * test-output/ui/measurements.json.
 */
import { readFile, writeFile, mkdir } from "node:fs/promises";
import { existsSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import t from "tap";
import type { Page } from "playwright-core";
import { connectHttp } from "../src/client/index.js";
import { httpRoutes } from "../src/contract/index.js";
import { startGateway, startSupervisor } from "./helpers/bosun.js";
import { CHROMIUM, openBrowser, screenshot, SCREENSHOTS } from "./helpers/browser.js";
import { http } from "./helpers/http.js";
import { NatsServer } from "./helpers/nats-server.js";
import { OPS_HANDLERS } from "./helpers/ops.js";
import { uniqueName, waitFor } from "./helpers/wait.js";

if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: run npm run setup (installs Debian's chromium package)`);

const server = await NatsServer.start(t);
const queue = uniqueName("ui");
const supervisorArgs = ["--handlers", OPS_HANDLERS, "--min", "1", "--max", "2", "--heartbeat-ms", "500"];
await Promise.all([
  startSupervisor(t, server.url, { queues: [queue], workerId: "sup-a", args: supervisorArgs }),
  startSupervisor(t, server.url, { queues: [queue], workerId: "sup-b", args: supervisorArgs }),
]);
const gateway = await startGateway(t, server.url);
const ui = `${gateway.baseUrl}/ui/`;
const client = connectHttp(gateway.baseUrl);
const gates = await mkdtempDir();
const browser = await openBrowser(t);
const measurements: Record<string, unknown> = {};

async function mkdtempDir(): Promise<string> {
  const { mkdtemp } = await import("node:fs/promises");
  return mkdtemp(path.join(os.tmpdir(), "bosun-ui-gates-"));
}

/** Milliseconds from navigation start: first contentful paint, DOM loaded, overview showing supervisors. */
const loadTiming = (page: Page) =>
  page.evaluate(`({
    first_contentful_paint_ms: performance.getEntriesByName("first-contentful-paint")[0]?.startTime ?? null,
    dom_content_loaded_ms: performance.getEntriesByType("navigation")[0]?.domContentLoadedEventEnd ?? null,
    overview_ready_ms: performance.getEntriesByName("bosun:overview-ready")[0]?.startTime ?? null,
  })`) as Promise<{ first_contentful_paint_ms: number | null; dom_content_loaded_ms: number | null; overview_ready_ms: number | null }>;

const open = async (hash: string): Promise<Page> => {
  const page = await browser.newPage();
  await page.goto(`${ui}${hash}`);
  return page;
};

t.teardown(async () => {
  await mkdir(SCREENSHOTS, { recursive: true });
  const bundle = JSON.parse(await readFile(new URL("../dist/ui/bundle-size.json", import.meta.url), "utf8")) as { gzip_bytes: number };
  await writeFile(path.join(SCREENSHOTS, "measurements.json"), `${JSON.stringify({ ...measurements, bundle_gzip_bytes: bundle.gzip_bytes }, null, 2)}\n`);
});

t.test("GET /ui serves the built dashboard with cacheable assets", async (t) => {
  const redirect = await fetch(`${gateway.baseUrl}/ui`, { redirect: "manual" });
  t.equal(redirect.status, 302);
  const index = await http(gateway.baseUrl, "GET", "/ui/");
  t.equal(index.status, 200);
  t.match(index.headers.get("cache-control"), /no-cache/);
  const script = /src="\.\/(main-[^"]+\.js)"/.exec(index.text)?.[1];
  t.ok(script, "index.html loads the hashed bundle");
  const asset = await fetch(`${ui}${script}`);
  t.equal(asset.status, 200);
  t.match(asset.headers.get("cache-control"), /immutable/);
  const bundle = JSON.parse(await readFile(new URL("../dist/ui/bundle-size.json", import.meta.url), "utf8")) as { gzip_bytes: number };
  t.ok(bundle.gzip_bytes < 200 * 1024, `bundle ${bundle.gzip_bytes} bytes gzipped, under 200 KiB`);
});

t.test("the overview shows both live supervisors", async (t) => {
  const started = Date.now();
  const page = await open("");
  await page.locator('li[data-worker="sup-a"]').waitFor();
  await page.locator('li[data-worker="sup-b"]').waitFor();
  const timing = await loadTiming(page);
  measurements.first_load = { ...timing, wall_ms_until_both_supervisors: Date.now() - started };
  t.ok(timing.overview_ready_ms !== null, "the overview marked when it first showed supervisors");
  // Again in a new tab, nothing cached (routing every request turns the cache off): the cold start of
  // chromium's first renderer is not the page's own cost.
  const again = await browser.newPage();
  await again.route("**/*", (route) => route.continue());
  await again.goto(ui);
  await again.locator('li[data-worker="sup-b"]').waitFor();
  measurements.second_load_no_cache = await loadTiming(again);
  await again.close();
  t.comment(`load: ${JSON.stringify(measurements)}`);
  t.equal(await page.getByTestId("supervisor-count").textContent(), "2");
  t.equal(await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Overview" }).getAttribute("aria-current"), "page");
  await page.locator(".chart canvas").waitFor();
  await screenshot(page, "overview");

  await page.getByRole("link", { name: "Workers" }).click();
  await page.getByRole("heading", { name: "sup-a" }).waitFor();
  await page.getByRole("heading", { name: "sup-b" }).waitFor();
  const recycle = page.getByRole("button", { name: /^Recycle \d+$/ }).first();
  await recycle.click();
  await page.locator("#status", { hasText: /will be recycled/ }).waitFor();
  await screenshot(page, "workers");
  await page.close();
});

t.test("a job submitted through the API shows its live progress and ends succeeded", async (t) => {
  const gate = path.join(gates, uniqueName("gate"));
  const { job_id } = await client.submit({ type: "test.progress", queue, payload: { before_ms: 300, progress: 0.5, gate_after: gate } });
  const page = await open(`#/jobs?queue=${queue}`);
  const row = page.locator(`tr[data-job="${job_id}"]`);
  await row.waitFor();
  await screenshot(page, "jobs");
  await row.getByRole("link").click();
  await page.getByTestId("job-progress").filter({ hasText: "50 %" }).waitFor({ timeout: 15_000 });
  t.match(await page.getByTestId("job-state").textContent(), "running");
  await screenshot(page, "job-running");
  await writeFile(gate, "");
  await page.getByTestId("job-state").filter({ hasText: "succeeded" }).waitFor({ timeout: 15_000 });
  await page.getByRole("heading", { name: "Result" }).waitFor();
  t.match(await page.locator("pre.json").first().textContent(), /"done": true/);
  await screenshot(page, "job-succeeded");
  await page.close();
});

t.test("a dead job retried from its page runs again", async (t) => {
  // The first run waits for a gate that is not there and is killed at its timeout: dead.
  const gate = path.join(gates, uniqueName("retry"));
  // (Its timeout leaves the second run room on a busy machine.)
  const { job_id } = await client.submit({ type: "test.progress", queue, max_attempts: 1, timeout_ms: 3000, payload: { gate_before: gate, after_ms: 0 } });
  t.equal((await client.wait(job_id, { timeoutMs: 15_000 })).state, "dead");
  const list = await open(`#/dead?queue=${queue}`);
  await list.locator(`tr[data-job="${job_id}"]`).waitFor();
  await screenshot(list, "dead");
  await list.close();

  await writeFile(gate, "");
  const page = await open(`#/jobs/${job_id}`);
  await page.getByTestId("job-state").filter({ hasText: "dead" }).waitFor();
  await page.getByRole("button", { name: "Retry job" }).click();
  await page.getByTestId("job-state").filter({ hasText: "succeeded" }).waitFor({ timeout: 15_000 });
  t.match(await client.result(job_id), { state: "succeeded", result: { done: true } }, "the second run succeeded");
  await page.close();
});

t.test("pausing a queue from the queue page makes a submit 503", async (t) => {
  const page = await open("#/queues");
  await page.getByRole("button", { name: `Pause ${queue}` }).click();
  await page.getByRole("button", { name: `Resume ${queue}` }).waitFor();
  const submit = () => http(gateway.baseUrl, "POST", "/api/jobs", { body: { type: "echo", queue } });
  const refused = await waitFor(async () => {
    const res = await submit();
    return res.status === 503 && res;
  }, { timeoutMs: 5000, what: "a 503 for the paused queue" });
  t.match(refused.body, { error: { code: "unavailable" } });
  t.ok(refused.headers.get("retry-after"), "with Retry-After");
  await screenshot(page, "queues-paused");
  await page.getByRole("button", { name: `Resume ${queue}` }).click();
  await page.getByRole("button", { name: `Pause ${queue}` }).waitFor();
  await waitFor(async () => (await submit()).status === 202, { timeoutMs: 5000, what: "submits accepted again" });
  await page.close();
});

t.test("schedules and ops pages: present, or not available on this server", async (t) => {
  const schedules = await open("#/schedules");
  await schedules.getByRole("heading", { name: "Schedules" }).waitFor();
  const hasSchedules = httpRoutes.some((r) => r.url === "/api/schedules");
  if (hasSchedules) await schedules.locator("table, p:text('No schedules.')").first().waitFor();
  else await schedules.locator("[data-unavailable]").waitFor();
  t.pass(hasSchedules ? "schedules listed" : "schedules: not available on this server");
  await screenshot(schedules, "schedules");
  await schedules.close();

  const ops = await open("#/ops");
  await ops.getByTestId("global-paused").filter({ hasText: "open" }).waitFor();
  await ops.getByRole("heading", { name: "Targets" }).waitFor();
  await screenshot(ops, "ops");
  await ops.close();
});

t.test("with auth on, a tenant key sees only its tenant's jobs", async (t) => {
  // A server of its own: the bosun service is one queue group per NATS server, so the auth-off
  // supervisors above would answer this gateway's requests too, as open to every key.
  const secureServer = await NatsServer.start(t);
  const admin = "admin-key-for-the-ui-test";
  const authEnv = { env: { BOSUN_AUTH: "on", BOSUN_ADMIN_KEY: admin } };
  const authQueue = uniqueName("auth");
  await startSupervisor(t, secureServer.url, { queues: [authQueue], args: supervisorArgs, ...authEnv });
  const secured = await startGateway(t, secureServer.url, authEnv);
  const asAdmin = connectHttp({ url: secured.baseUrl, key: admin });
  const keyFor = async (tenant: string) =>
    (await http<{ key: string }>(secured.baseUrl, "POST", "/api/admin/keys", { body: { tenant }, headers: { authorization: `Bearer ${admin}` } })).body.key;
  const acmeKey = await keyFor("acme");
  const acme = connectHttp({ url: secured.baseUrl, key: acmeKey });
  const globex = connectHttp({ url: secured.baseUrl, key: await keyFor("globex") });
  const mine = await acme.submit({ type: "echo", queue: authQueue, tenant: "acme" });
  const theirs = await globex.submit({ type: "echo", queue: authQueue, tenant: "globex" });
  await asAdmin.wait(theirs.job_id, { timeoutMs: 15_000 });
  const asAcme = await http(secured.baseUrl, "GET", `/api/jobs/${theirs.job_id}`, { headers: { authorization: `Bearer ${acmeKey}` } });
  t.match(asAcme, { status: 404, body: { error: { code: "not_found" } } }, "the API answers another tenant's job 404 not_found");

  const page = await browser.newPage();
  await page.goto(`${secured.baseUrl}/ui/#/jobs`);
  await page.getByLabel("API key").fill(acmeKey);
  await page.getByRole("button", { name: "Use key" }).click();
  await page.locator(`tr[data-job="${mine.job_id}"]`).waitFor();
  t.equal(await page.locator(`tr[data-job="${theirs.job_id}"]`).count(), 0, "another tenant's job is not listed");
  const nav = page.getByRole("navigation", { name: "Main" }).getByRole("link");
  t.same(await nav.allTextContents(), ["Jobs", "Dead jobs"], "the nav offers a tenant key only the pages its key may open");
  await screenshot(page, "tenant-jobs");

  await page.goto(`${secured.baseUrl}/ui/#/ops`);
  await page.locator(".notice", { hasText: "needs an admin key" }).waitFor();
  t.equal(await page.getByTestId("global-paused").count(), 0, "an admin page opened by its address shows nothing of it");

  await page.goto(`${secured.baseUrl}/ui/#/jobs/${mine.job_id}`);
  await page.getByTestId("job-state").filter({ hasText: "succeeded" }).waitFor({ timeout: 15_000 });
  await page.goto(`${secured.baseUrl}/ui/#/jobs/${theirs.job_id}`);
  await page.getByTestId("job-not-found").filter({ hasText: "not_found" }).waitFor();
  t.equal(await page.getByTestId("job-state").count(), 0, "nothing of another tenant's job is shown");
  await screenshot(page, "tenant-not-found");
  await page.close();
});
