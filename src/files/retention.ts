/**
 * Removing the files of the jobs cleanup_runs removes (records/retention.ts),
 * run just before it. A job's file list is written while the job runs, so
 * the lists of jobs that ended before the cutoff are among the lists last
 * written before it: a prefix of the lists' stream, found by halving. Each
 * list there whose job's final record was stored before the cutoff (the
 * jobs the cleanup then removes) has its files and itself removed; the
 * others (jobs still running, or ended since) stay. The time is per job and
 * per file, never per file stored in all.
 */
import type { JetStreamManager } from "@nats-io/jetstream";
import type { Logger } from "pino";
import { buckets, isJobId, resultSubject, streams } from "../contract/index.js";
import { readInbound } from "../platform/guard.js";
import { readFirstFrom, readLast } from "../platform/stream-reads.js";
import { boundary } from "../records/retention.js";
import { FILE_LISTS_STREAM, FileList, type FileLists } from "./lists.js";
import type { FileObjects } from "./objects.js";

const LIST_KEY_PREFIX = `$KV.${buckets.fileLists}.`;

export async function removeFilesOfJobsEndedBefore(jsm: JetStreamManager, objects: FileObjects, lists: FileLists, cutoff: number, log: Logger): Promise<{ files_removed: number }> {
  let removed = 0;
  const end = await boundary(jsm, FILE_LISTS_STREAM, cutoff);
  if (!end) return { files_removed: 0 };
  for (let seq = end.first; seq < end.seq; ) {
    const msg = await readFirstFrom(jsm, FILE_LISTS_STREAM, seq);
    if (!msg || msg.seq >= end.seq) break;
    seq = msg.seq + 1;
    const jobId = msg.subject.slice(LIST_KEY_PREFIX.length);
    // A delete or purge marker lists nothing.
    if (msg.headers.get("KV-Operation") || !isJobId(jobId)) continue;
    const list = readInbound(FileList, msg.data, { log, source: "job file list", subject: msg.subject, seq: msg.seq });
    if (!list) continue;
    const final = await readLast(jsm, streams.results, resultSubject(jobId));
    if (!final || final.time.getTime() >= cutoff) continue;
    for (const file of list.files) await objects.remove(jobId, file.name);
    await lists.remove(jobId);
    removed += list.files.length;
  }
  return { files_removed: removed };
}
