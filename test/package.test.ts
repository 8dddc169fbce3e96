/**
 * Bosun as a user's project gets it: the package packed, installed from the
 * tarball with zod into an empty project, a handler module there importing
 * `bosun` and `zod`, `npx bosun dev --handlers ./h.js`, one job.
 */
import { spawn } from "node:child_process";
import { mkdir, mkdtemp, readdir, writeFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import t from "tap";
import { cleanEnv } from "./helpers/bosun.js";
import { DevRun } from "./helpers/dev.js";
import { http, type ErrorReply, type JobResult } from "./helpers/http.js";

const ROOT = fileURLToPath(new URL("../", import.meta.url));

/** npm as a user runs it: none of the npm_* variables of the `npm test` running us. */
function npm(args: string[], cwd: string): Promise<{ code: number | null; output: string }> {
  const env = cleanEnv();
  for (const key of Object.keys(env)) if (key.toLowerCase().startsWith("npm_")) delete env[key];
  return new Promise((resolve) => {
    const child = spawn("npm", args, { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (d: Buffer) => (output += d.toString()));
    child.stderr.on("data", (d: Buffer) => (output += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), 180_000);
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

t.test("npm pack, npm install ./bosun-*.tgz zod in an empty project, a handler module importing bosun, npx bosun dev, one job", async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), "bosun-test-package-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  // dist/ is built by `npm test` before tap runs; the pack takes it as it is.
  const pack = await npm(["pack", "--ignore-scripts", "--pack-destination", dir], ROOT);
  t.equal(pack.code, 0, "npm pack", { output: pack.output.slice(-2000) });
  const tarball = (await readdir(dir)).find((f) => /^bosun-.*\.tgz$/.test(f));
  t.ok(tarball, `a tarball (${tarball})`);

  const project = path.join(dir, "project");
  await mkdir(project);
  await writeFile(path.join(project, "package.json"), JSON.stringify({ name: "my-jobs", private: true, type: "module" }));
  const install = await npm(["install", "--no-audit", "--no-fund", "--prefer-offline", path.join(dir, tarball!), "zod"], project);
  t.equal(install.code, 0, "npm install ./bosun-*.tgz zod", { output: install.output.slice(-2000) });

  await writeFile(
    path.join(project, "h.js"),
    [
      'import { z } from "zod";',
      'import { defineHandlers } from "bosun";',
      "export default defineHandlers({",
      '  greet: { payload: z.object({ name: z.string() }), run: (p) => ({ hello: p.name }) },',
      "});",
      "",
    ].join("\n"),
  );
  const dev = await DevRun.start(t, { command: ["npx", ["--no-install", "bosun"]], cwd: project, dataDir: path.join(project, ".bosun"), args: ["--handlers", "./h.js"] });
  const up = await dev.up(60_000);
  const job = await http<JobResult>(up.gateway, "POST", "/api/jobs?wait_ms=10000", { body: { type: "greet", payload: { name: "package" } } });
  t.equal(job.status, 200, "the job ran", { body: job.text });
  t.same(job.body.result, { hello: "package" }, "through the handler module of the project");
  const refused = await http<ErrorReply>(up.gateway, "POST", "/api/jobs", { body: { type: "greet", payload: { name: 5 } } });
  t.equal(refused.status, 400, "the project's zod schema checks payloads at submit");
  t.equal(refused.body.error?.code, "validation_error");

  const pids = dev.pids();
  dev.signal("SIGINT");
  t.equal((await dev.exited(15_000)).code, 0, "Ctrl-C: exit 0");
  t.same(await dev.gone(pids, 15_000), [], "nothing left running");
});
