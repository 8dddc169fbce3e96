/**
 * The API's own documents: /openapi.json as a client generator and a
 * linter see it (operationIds, tags, servers, security, 4xx everywhere,
 * both answers of a submit, examples the API accepts), Redocly's linter
 * with its strict ruleset, and /docs showing Bosun rather than the UI
 * library's branding.
 */
import { spawnSync } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import t from "tap";
import { startGateway, startSupervisor } from "./helpers/bosun.js";
import { http } from "./helpers/http.js";
import { NatsServer } from "./helpers/nats-server.js";
import { waitFor } from "./helpers/wait.js";

const ROOT = fileURLToPath(new URL("../", import.meta.url));

interface Operation {
  operationId?: string;
  tags?: string[];
  summary?: string;
  requestBody?: { content: Record<string, { schema: unknown; example?: unknown }> };
  responses: Record<string, { content?: Record<string, { schema?: { properties?: Record<string, unknown> } }> }>;
}
interface Document {
  info: { title: string };
  servers?: { url: string }[];
  security?: Record<string, string[]>[];
  tags?: { name: string; description?: string }[];
  components: { securitySchemes?: Record<string, { type: string; scheme?: string }> };
  paths: Record<string, Record<string, Operation>>;
}

const server = await NatsServer.start(t);
const gateway = await startGateway(t, server.url);
const gw = gateway.baseUrl;
await startSupervisor(t, server.url, { queues: ["default"], args: ["--min", "1", "--max", "1", "--heartbeat-ms", "300"] });
const doc = (await http<Document>(gw, "GET", "/openapi.json")).body;
const operations = Object.entries(doc.paths).flatMap(([p, ops]) => Object.entries(ops).map(([method, op]) => ({ key: `${method.toUpperCase()} ${p}`, method, path: p, op })));

t.test("every operation: a unique operationId, a declared tag, a summary, a 4xx answer", async (t) => {
  t.ok(operations.length >= 19, `${operations.length} operations`);
  const ids = operations.map((o) => o.op.operationId);
  t.equal(new Set(ids).size, ids.length, "operationIds are unique");
  const declared = new Set((doc.tags ?? []).map((tag) => tag.name));
  t.ok(declared.size >= 3, `operations are grouped under several tags (${[...declared].join(", ")})`);
  for (const tag of doc.tags ?? []) t.ok(tag.description, `tag ${tag.name} is described`);
  for (const { key, op } of operations) {
    t.match(op.operationId, /^[a-z][A-Za-z]+$/, `${key}: operationId ${op.operationId}`);
    t.ok(op.tags?.length === 1 && declared.has(op.tags[0]!), `${key}: tag ${op.tags?.[0]} is declared`);
    t.ok(op.summary, `${key}: has a summary`);
    t.ok(Object.keys(op.responses).some((s) => /^4/.test(s)), `${key}: documents a 4xx answer`);
  }
  t.notOk(declared.has("default"), 'nothing falls under "default"');
});

t.test("servers, the bearer security scheme, the title", async (t) => {
  t.ok((doc.servers ?? []).length > 0, "servers are listed");
  t.match(doc.components.securitySchemes?.bearer, { type: "http", scheme: "bearer" }, "bearer auth is the scheme");
  t.same(doc.security, [{ bearer: [] }], "and applies by default");
  t.equal(doc.info.title, "Bosun API");
});

t.test("submit documents both answers: 202 accepted, 200 with the result when wait_ms saw it finish", async (t) => {
  const submit = doc.paths["/api/jobs"]!.post!;
  t.ok(submit.responses["202"]?.content?.["application/json"]?.schema?.properties?.job_id, "202 {job_id, state}");
  t.ok(submit.responses["200"]?.content?.["application/json"]?.schema?.properties?.result, "200 with the result");
});

t.test("every request body example is accepted by the API it documents", async (t) => {
  // A JSON body, that is: a file upload's body is the file's bytes.
  const withExamples = operations.filter((o) => o.op.requestBody?.content["application/json"]);
  t.ok(withExamples.length >= 3, "the routes with a body");
  for (const { key, method, path: p, op } of withExamples) {
    const example = op.requestBody!.content["application/json"]?.example;
    t.ok(example !== undefined, `${key}: has an example`);
    const res = await waitFor(
      async () => {
        const r = await http(gw, method.toUpperCase(), p.replace("{target_id}", "default").replace("{job_id}", "A".repeat(30)), { body: example });
        // Right after start-up the supervisor may not have heard its own heartbeat yet.
        return r.status === 422 ? undefined : r;
      },
      { timeoutMs: 10_000, what: `${key} accepting its example` },
    );
    // A compute server's calls need its credential and a lease: what the example can show is that it is valid.
    if (op.tags?.includes("compute") && res.status === 401) t.pass(`${key}: its example is valid (401 without a compute credential)`);
    else t.ok(res.status >= 200 && res.status < 300, `${key}: its example is accepted (${res.status})`, { body: res.text });
  }
});

t.test("Redocly's linter (recommended-strict) passes on the document", async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), "bosun-test-openapi-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, "openapi.json");
  await writeFile(file, JSON.stringify(doc));
  const lint = spawnSync(process.execPath, [path.join(ROOT, "node_modules", "@redocly", "cli", "bin", "cli.js"), "lint", file, "--config", path.join(ROOT, "redocly.yaml")], {
    encoding: "utf8",
    env: { ...process.env, REDOCLY_TELEMETRY: "off", REDOCLY_SUPPRESS_UPDATE_NOTICE: "true", NODE_OPTIONS: "" },
    timeout: 120_000,
  });
  t.equal(lint.status, 0, "redocly lint exits 0", { output: `${lint.stdout}\n${lint.stderr}`.slice(-3000) });
  t.match(lint.stdout + lint.stderr, /Your API description is valid/, "no error and no warning");
});

t.test("/docs is Bosun's: its title, its logo, its icon", async (t) => {
  const page = await fetch(`${gw}/docs`, { signal: AbortSignal.timeout(10_000) });
  const html = await page.text();
  t.equal(page.status, 200);
  t.match(html, /<title>Bosun API<\/title>/, "the page title");
  t.match(html, /theme\/bosun\.svg/, "Bosun's icon");
  t.notMatch(html, /favicon-32x32\.png/, "not the library's");
  const init = await fetch(`${gw}/docs/static/swagger-initializer.js`).then((r) => r.text());
  const logo = /data:image\/svg\+xml;base64,([A-Za-z0-9+/=]+)/.exec(init)?.[1];
  t.ok(logo, "a logo of its own replaces the default one");
  t.match(Buffer.from(logo ?? "", "base64").toString("utf8"), /Bosun API/, "saying Bosun API");
  const icon = await fetch(`${gw}/docs/static/theme/bosun.svg`);
  t.equal(icon.status, 200, "the icon is served");
});
