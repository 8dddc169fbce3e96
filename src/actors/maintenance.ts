/**
 * Built-in maintenance tasks. They run in an execution process like any job
 * (so they get retries, timeouts and a record), and open their own NATS
 * connection on first use. Defaults come from the supervisor's config,
 * passed down in the environment.
 */
import { readdir, rm, stat } from "node:fs/promises";
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
import { DEFAULT_NATS_URL, natsOptions } from "../platform/nats-options.js";

const HOUR_MS = 3_600_000;
const CLEANUP_CONCURRENCY = 16;
const defaultMaxAgeHours = () => Number(process.env.BOSUN_CLEANUP_MAX_AGE_HOURS) || 168;
const defaultTempDir = () => process.env.BOSUN_TEMP_DIR || path.join(os.tmpdir(), "bosun");

let connection: Promise<NatsConnection> | undefined;
async function nats(): Promise<NatsConnection> {
  connection ??= import("@nats-io/transport-node").then(({ connect }) => connect(natsOptions(process.env.NATS_URL ?? DEFAULT_NATS_URL, "bosun-maintenance")));
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
      const { dropLastMessage, StreamReader } = await import("../platform/stream-reads.js");
      const kv = await new Kvm(nc).open(buckets.jobs);
      const jsm = await jetstreamManager(nc);
      // Not on a hot path: a miss is always confirmed at the leader, replicated or not.
      const reader = new StreamReader(jsm, { confirmMisses: true });
      const { currentRecords } = await import("../supervisor/records.js");
      const old = (await currentRecords(kv, jsm))
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
            if (await dropLastMessage(reader, streams.results, resultSubject(jobId))) results++;
            if (await dropLastMessage(reader, streams.dead, deadSubject(queue, jobId))) deadLetters++;
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
    payload: CleanupTempFilesPayload,
    async run(payload: CleanupTempFilesPayload, ctx) {
      const started = performance.now();
      // Only below the configured temp dir: the route is reachable over HTTP.
      const root = path.resolve(defaultTempDir());
      const dir = path.resolve(root, payload.dir ?? ".");
      if (dir !== root && !dir.startsWith(root + path.sep)) throw new Error(`dir must be inside the temp dir ${root} (--temp-dir)`);
      const maxAge = payload.max_age_hours ?? defaultMaxAgeHours();
      const cutoff = Date.now() - maxAge * HOUR_MS;
      let files = 0;
      let bytes = 0;
      const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch((err: NodeJS.ErrnoException) => {
        if (err.code === "ENOENT") return [];
        throw err;
      });
      for (const entry of entries) {
        if (!entry.isFile()) continue;
        const file = path.join(entry.parentPath, entry.name);
        const info = await stat(file);
        if (info.mtimeMs >= cutoff) continue;
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
