/**
 * Built-in maintenance tasks. They run in an execution process like any job
 * (so they get retries, timeouts and a record), and open their own NATS
 * connection on first use. Defaults come from the supervisor's config,
 * passed down in the environment.
 */
import { lstat, readdir, realpath, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { NatsConnection } from "@nats-io/nats-core";
import {
  buckets,
  CleanupRunsPayload,
  CleanupTempFilesPayload,
  deadSubject,
  FINAL_STATES,
  resultSubject,
  streams,
} from "../contract/index.js";
import type { HandlerDefinition } from "./handlers.js";

const HOUR_MS = 3_600_000;
const CLEANUP_CONCURRENCY = 16;
const defaultMaxAgeHours = () => Number(process.env.BOSUN_CLEANUP_MAX_AGE_HOURS) || 168;
/** The supervisor sets it for itself as for its execution processes (from --temp-dir). */
const defaultTempDir = () => process.env.BOSUN_TEMP_DIR || path.join(os.tmpdir(), "bosun");

let connection: Promise<NatsConnection> | undefined;
async function nats(): Promise<NatsConnection> {
  connection ??= import("@nats-io/transport-node").then(({ connect }) =>
    connect({ servers: process.env.NATS_URL ?? "nats://127.0.0.1:4222", noAsyncTraces: true, name: "bosun-maintenance" }),
  );
  return connection;
}

export const maintenanceHandlers: Record<string, HandlerDefinition<never, unknown>> = {
  "maintenance.cleanup_runs": {
    payload: CleanupRunsPayload,
    async run(payload: CleanupRunsPayload, ctx) {
      const started = performance.now();
      const maxAge = payload.max_age_hours ?? defaultMaxAgeHours();
      const cutoff = Date.now() - maxAge * HOUR_MS;
      const nc = await nats();
      const { Kvm } = await import("@nats-io/kv");
      const { jetstreamManager } = await import("@nats-io/jetstream");
      const { dropLastMessage } = await import("../platform/stream-reads.js");
      const kv = await new Kvm(nc).open(buckets.jobs);
      const jsm = await jetstreamManager(nc);
      const { currentRecords } = await import("../supervisor/records.js");
      const old = (await currentRecords(jsm, ctx.log))
        .filter((record) => FINAL_STATES.has(record.state) && Date.parse(record.finished_at ?? "") < cutoff)
        .map((record) => ({ jobId: record.job_id, queue: record.queue }));
      let results = 0;
      let deadLetters = 0;
      // Old jobs are independent: a few at a time rather than one round trip after another.
      const pending = old.values();
      await Promise.all(
        Array.from({ length: CLEANUP_CONCURRENCY }, async () => {
          for (const { jobId, queue } of pending) {
            await kv.purge(jobId);
            if (await dropLastMessage(jsm, streams.results, resultSubject(jobId))) results++;
            if (await dropLastMessage(jsm, streams.dead, deadSubject(queue, jobId))) deadLetters++;
          }
        }),
      );
      const report = {
        records_removed: old.length,
        results_removed: results,
        dead_letters_removed: deadLetters,
        max_age_hours: maxAge,
        duration_ms: Math.round(performance.now() - started),
      };
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
