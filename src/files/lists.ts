/**
 * Each job's list of files: one value in KV bosun_file_lists, keyed by job
 * id. Listing a job's files is one read by a literal subject, whatever the
 * number of files stored in all (the object store's own listing reads
 * every object's metadata). A file is listed once its object is stored;
 * the list is changed by compare-and-set, so concurrent writes of one job
 * never lose each other's entries.
 */
import type { JetStreamManager } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import type { Logger } from "pino";
import { z } from "zod";
import { BosunError, buckets, FencingToken, FileContentType, isoTime, JobFileName, kvKeySubject, MAX_FILE_BYTES, MAX_FILES_PER_JOB, type JobFile } from "../contract/index.js";
import { readInbound } from "../platform/guard.js";
import { lostRace } from "../platform/nats-errors.js";
import { readKvValue } from "../platform/stream-reads.js";
import { kvStream } from "../platform/topology.js";
import type { StoredFile } from "./objects.js";

export const FILE_LISTS_STREAM = kvStream(buckets.fileLists);

const ListedFile = z.object({
  name: JobFileName,
  size: z.number().int().nonnegative().max(MAX_FILE_BYTES),
  content_type: FileContentType,
  created_at: isoTime,
  fencing_token: FencingToken,
});
type ListedFile = z.infer<typeof ListedFile>;
export const FileList = z.object({ job_id: z.string(), files: z.array(ListedFile).max(MAX_FILES_PER_JOB) });
export type FileList = z.infer<typeof FileList>;

/** A file as the API shows it. */
export const jobFileOf = (f: ListedFile): JobFile => ({ name: f.name, size: f.size, content_type: f.content_type, created_at: f.created_at });

const CAS_TRIES = 10;

export class FileLists {
  constructor(
    private readonly kv: KV,
    private readonly jsm: JetStreamManager,
    private readonly log: Logger,
  ) {}

  /** The job's list and its revision, or undefined when it has none (or an unreadable one: logged). */
  async read(jobId: string): Promise<{ list: FileList; revision: number } | undefined> {
    const msg = await readKvValue(this.jsm, buckets.fileLists, jobId);
    if (!msg) return undefined;
    const list = readInbound(FileList, msg.data, { log: this.log, source: "job file list", subject: msg.subject, seq: msg.seq });
    return list?.job_id === jobId ? { list, revision: msg.seq } : undefined;
  }

  /** Refuses a new name once the job keeps MAX_FILES_PER_JOB files (before any byte is stored). */
  async assertRoom(jobId: string, name: string): Promise<void> {
    assertRoomIn((await this.read(jobId))?.list, jobId, name);
  }

  /** Lists a stored file (replacing its entry of the same name, unless that is a newer run's). */
  async add(file: StoredFile): Promise<void> {
    const entry: ListedFile = { name: file.name, size: file.size, content_type: file.content_type, created_at: file.created_at, fencing_token: file.fencing_token };
    for (let tries = 0; tries < CAS_TRIES; tries++) {
      const held = await this.read(file.job_id);
      const files = held?.list.files ?? [];
      const same = files.find((f) => f.name === file.name);
      if (same && same.fencing_token > file.fencing_token) return;
      assertRoomIn(held?.list, file.job_id, file.name);
      const list: FileList = { job_id: file.job_id, files: [...files.filter((f) => f.name !== file.name), entry] };
      try {
        if (held) await this.kv.update(file.job_id, JSON.stringify(list), held.revision);
        else await this.kv.create(file.job_id, JSON.stringify(list));
        return;
      } catch (err) {
        if (!lostRace(err) && !/key exists/i.test(String((err as Error).message))) throw err;
      }
    }
    throw new BosunError("conflict", `the file list of job ${file.job_id} kept changing: file ${file.name} is not listed; write it again`);
  }

  /** Removes the job's list, marker and all. */
  async remove(jobId: string): Promise<void> {
    await this.jsm.streams.purge(FILE_LISTS_STREAM, { filter: kvKeySubject(buckets.fileLists, jobId) });
  }
}

function assertRoomIn(list: FileList | undefined, jobId: string, name: string): void {
  const files = list?.files ?? [];
  if (files.length >= MAX_FILES_PER_JOB && !files.some((f) => f.name === name)) {
    throw new BosunError("payload_too_large", `job ${jobId} has ${MAX_FILES_PER_JOB} files, the most a job keeps: ${name} was not stored`);
  }
}
