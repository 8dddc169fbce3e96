/**
 * `bosun dev --watch`: a change to the handler module (or a file next to
 * it) restarts the supervisor; run from a checkout of Bosun, a change under
 * src/ rebuilds with tsc and restarts the supervisor and the gateway.
 */
import { spawn } from "node:child_process";
import { existsSync, watch, type FSWatcher } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { Logger } from "pino";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const DEBOUNCE_MS = 300;
const WATCHED = /\.(m|c)?(j|t)s$|\.json$/;

export type Change = { kind: "handlers"; file: string } | { kind: "source"; file: string };

/** Whether this Bosun runs from a checkout that can rebuild itself (not from an installed package). */
const checkout = (): boolean => existsSync(path.join(ROOT, "src")) && existsSync(path.join(ROOT, "tsconfig.build.json")) && !ROOT.includes(`${path.sep}node_modules${path.sep}`);

/** Calls `onChange` once per burst of changes; returns the function that stops watching. */
export function watchForChanges(handlers: string | undefined, log: Logger, onChange: (change: Change) => void): () => void {
  const watchers: FSWatcher[] = [];
  let timer: NodeJS.Timeout | undefined;
  let pending: Change | undefined;
  const changed = (change: Change) => {
    // A source change (rebuild + restart of both) covers a handlers change in the same burst.
    if (!pending || change.kind === "source") pending = change;
    clearTimeout(timer);
    timer = setTimeout(() => {
      const c = pending!;
      pending = undefined;
      onChange(c);
    }, DEBOUNCE_MS);
  };
  const dirs: string[] = [];
  if (handlers) {
    const dir = path.dirname(path.resolve(handlers));
    watchers.push(watch(dir, (_event, name) => name && WATCHED.test(name) && changed({ kind: "handlers", file: path.join(dir, name) })));
    dirs.push(dir);
  }
  if (checkout()) {
    const src = path.join(ROOT, "src");
    watchers.push(watch(src, { recursive: true }, (_event, name) => name && WATCHED.test(name) && changed({ kind: "source", file: path.join(src, name) })));
    dirs.push(src);
  }
  log.info({ watching: dirs }, dirs.length > 0 ? "watching for changes" : "--watch: nothing to watch (no --handlers, not a checkout)");
  return () => {
    clearTimeout(timer);
    for (const w of watchers) w.close();
  };
}

/** `tsc -p tsconfig.build.json` in the checkout; resolves with its output when it fails. */
export function rebuild(): Promise<{ ok: true } | { ok: false; output: string }> {
  return new Promise((resolve) => {
    const tsc = spawn(process.execPath, [path.join(ROOT, "node_modules", "typescript", "bin", "tsc"), "-p", "tsconfig.build.json"], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    tsc.stdout.on("data", (d: Buffer) => (output += d.toString()));
    tsc.stderr.on("data", (d: Buffer) => (output += d.toString()));
    tsc.once("error", (err) => resolve({ ok: false, output: err.message }));
    tsc.once("exit", (code) => resolve(code === 0 ? { ok: true } : { ok: false, output }));
  });
}
