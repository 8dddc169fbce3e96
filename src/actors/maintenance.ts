/**
 * Built-in maintenance tasks. They run in an execution process like any job
 * (so they get retries, timeouts and a record), over the actor's own NATS
 * connection (opened on first use). Defaults come from the supervisor's config,
 * passed down in the environment.
 */
import { lstat, readdir, realpath, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { CleanupRunsPayload, CleanupTempFilesPayload } from "../contract/index.js";
import type { HandlerDefinition } from "./handlers.js";

const HOUR_MS = 3_600_000;
const defaultMaxAgeHours = () => {
  const hours = Number(process.env.BOSUN_CLEANUP_MAX_AGE_HOURS);
  return Number.isFinite(hours) && hours >= 0 && process.env.BOSUN_CLEANUP_MAX_AGE_HOURS !== "" ? hours : 168;
};
/** The supervisor sets it for itself as for its execution processes (from --temp-dir). */
const defaultTempDir = () => process.env.BOSUN_TEMP_DIR || path.join(os.tmpdir(), "bosun");

export const maintenanceHandlers: Record<string, HandlerDefinition<never, unknown>> = {
  "maintenance.cleanup_runs": {
    payload: CleanupRunsPayload,
    async run(payload: CleanupRunsPayload, ctx) {
      const started = performance.now();
      const maxAge = payload.max_age_hours ?? defaultMaxAgeHours();
      const cutoff = Date.now() - maxAge * HOUR_MS;
      const [{ actorFileStores }, { removeFilesOfJobsEndedBefore }, { removeFinishedBefore }] = await Promise.all([
        import("./files-nats.js"),
        import("../files/retention.js"),
        import("../records/index.js"),
      ]);
      const { jsm, objects, lists } = await actorFileStores(ctx.log);
      // Files first: which jobs the cleanup removes is read from their final records.
      const files = await removeFilesOfJobsEndedBefore(jsm, objects, lists, cutoff, ctx.log);
      const removed = await removeFinishedBefore(jsm, cutoff);
      const report = { ...removed, ...files, max_age_hours: maxAge, duration_ms: Math.round(performance.now() - started) };
      ctx.log.info(report, "cleanup_runs done");
      return report;
    },
  },
  "maintenance.cleanup_temp_files": {
    // Checked at submit against this supervisor's --temp-dir, so a dir outside it is a 400 there.
    payload: CleanupTempFilesPayload.refine((p) => p.dir === undefined || isInside(path.resolve(defaultTempDir()), path.resolve(defaultTempDir(), p.dir)), {
      message: "dir must be inside the temp dir (--temp-dir)",
      path: ["dir"],
    }),
    async run(payload: CleanupTempFilesPayload, ctx) {
      const started = performance.now();
      const maxAge = payload.max_age_hours ?? defaultMaxAgeHours();
      const cutoff = Date.now() - maxAge * HOUR_MS;
      let files = 0;
      let bytes = 0;
      // Only below the configured temp dir, by real paths: the route is reachable over HTTP,
      // and a symlink inside the temp dir may point anywhere.
      const root = await realpathOrNull(defaultTempDir());
      const dir = root && (await realpathOrNull(path.resolve(root, payload.dir ?? ".")));
      if (root && dir && !isInside(root, dir)) throw new Error(`dir resolves outside the temp dir ${root} (--temp-dir)`);
      // Recursive readdir does not descend into symlinked directories; symlinked files are not files here.
      const entries = dir ? await readdir(dir, { recursive: true, withFileTypes: true }) : [];
      for (const entry of entries) {
        if (!entry.isFile()) continue;
        const file = path.join(entry.parentPath, entry.name);
        // A directory on the way swapped for a symlink since the listing would lead elsewhere.
        if (!isInside(root!, await realpath(entry.parentPath))) continue;
        const info = await lstat(file);
        if (!info.isFile() || info.mtimeMs >= cutoff) continue;
        await rm(file);
        files++;
        bytes += info.size;
      }
      const report = { dir, files_removed: files, bytes_freed: bytes, max_age_hours: maxAge, duration_ms: Math.round(performance.now() - started) };
      ctx.log.info(report, "cleanup_temp_files done");
      return report;
    },
  },
};

/** The real path (symlinks resolved), or null when nothing is there. */
async function realpathOrNull(p: string): Promise<string | null> {
  try {
    return await realpath(p);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw err;
  }
}

const isInside = (root: string, p: string): boolean => p === root || p.startsWith(root.endsWith(path.sep) ? root : root + path.sep);
