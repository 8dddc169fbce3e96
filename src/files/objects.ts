/**
 * Job files as objects in the bucket bosun_files, one per file, named
 * `<job_id>/<name>`: the object store chunks them (128 KiB, never more than
 * max_payload) and checks their digest on the way out. Each object's
 * metadata holds its content type (header `Content-Type`) and the fencing
 * token of the run that wrote it (`metadata.fencing_token`).
 *
 * An object's metadata message is read here, by its literal subject, and
 * decoded like any stored message (anything with publish rights can write
 * there): what fails the schema, a link or another object's metadata reads
 * as no file. A write is a compare-and-set on that message, so a stalled
 * run can never replace a newer run's file of the same name.
 */
import { jetstream, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { headers as natsHeaders, type NatsConnection } from "@nats-io/nats-core";
import { Base64UrlPaddedCodec, Objm, type ObjectStore } from "@nats-io/obj";
import type { Logger } from "pino";
import { z } from "zod";
import { BosunError, FencingToken, FileContentType, jobFileObject, MAX_FILE_BYTES, objectBuckets } from "../contract/index.js";
import { readInbound } from "../platform/guard.js";
import { lostRace } from "../platform/nats-errors.js";
import { readLast } from "../platform/stream-reads.js";
import { objStream } from "../platform/topology.js";

const BUCKET = objectBuckets.files;
export const FILES_STREAM = objStream(BUCKET);
const metaSubject = (object: string): string => `$O.${BUCKET}.M.${Base64UrlPaddedCodec.encode(object)}`;
const chunkSubject = (nuid: string): string => `$O.${BUCKET}.C.${nuid}`;
const CONTENT_TYPE = "Content-Type";
/** A read that gets no chunk for this long fails (see open). */
const READ_IDLE_MS = 10_000;

/** An object's metadata message as the object store writes it (ADR-20); only what Bosun reads is checked. */
const ObjectMeta = z.object({
  name: z.string().max(512),
  nuid: z.string().regex(/^[A-Za-z0-9]{1,64}$/),
  size: z.number().int().nonnegative(),
  mtime: z.iso.datetime({ offset: true }),
  deleted: z.boolean().default(false),
  headers: z.record(z.string(), z.array(z.string())).optional(),
  metadata: z.record(z.string(), z.string()).optional(),
  options: z.object({ link: z.unknown().optional() }).optional(),
});
const TokenText = z.string().regex(/^\d{1,16}$/).transform(Number).pipe(FencingToken);

/** What a run asks to store. */
export interface NewFile {
  job_id: string;
  name: string;
  content_type: string;
  fencing_token: number;
}

/** A file as stored: its object, and the revision (sequence) of its metadata message. */
export interface StoredFile extends NewFile {
  object: string;
  nuid: string;
  revision: number;
  size: number;
  created_at: string;
}

/** What the metadata subject holds: its last sequence (for compare-and-set), and the file if it is a live one. */
interface MetaRead {
  revision: number;
  file: StoredFile | undefined;
}

export const newerFile = (file: NewFile, stored: number): BosunError =>
  new BosunError("lease_stale", `file ${file.name} of job ${file.job_id} was written by a newer run (fencing token ${stored} > ${file.fencing_token}): nothing was stored`);

export class FileObjects {
  private constructor(
    private readonly os: ObjectStore,
    private readonly js: JetStreamClient,
    readonly jsm: JetStreamManager,
    private readonly log: Logger,
  ) {}

  /** The bucket is provisioned by the supervisors (topology.ts): opened without a check here. */
  static async open(nc: NatsConnection, jsm: JetStreamManager, log: Logger): Promise<FileObjects> {
    return new FileObjects(await new Objm(nc).open(BUCKET, false), jetstream(nc), jsm, log);
  }

  /** The live file of this name, or undefined. */
  async stored(jobId: string, name: string): Promise<StoredFile | undefined> {
    return (await this.#meta(jobId, name))?.file;
  }

  /**
   * Stores a file, unless a newer run's file of the name is there
   * (`lease_stale`) or another write of it lands meanwhile (`conflict`):
   * then nothing is stored. More than MAX_FILE_BYTES: `payload_too_large`,
   * nothing stored.
   */
  async put(file: NewFile, data: AsyncIterable<Uint8Array>): Promise<StoredFile> {
    const object = jobFileObject(file.job_id, file.name);
    const before = await this.#meta(file.job_id, file.name);
    if (before?.file && before.file.fencing_token > file.fencing_token) throw newerFile(file, before.file.fencing_token);
    const headers = natsHeaders();
    headers.set(CONTENT_TYPE, file.content_type);
    try {
      const info = await this.os.put({ name: object, headers, metadata: { fencing_token: String(file.fencing_token) } }, webStream(limited(data, file)), {
        previousRevision: before?.revision ?? 0,
      });
      return { ...file, object, nuid: info.nuid, revision: info.revision, size: info.size, created_at: info.mtime };
    } catch (err) {
      if (!lostRace(err)) throw err;
      const now = (await this.#meta(file.job_id, file.name))?.file;
      if (now && now.fencing_token > file.fencing_token) throw newerFile(file, now.fencing_token);
      throw new BosunError("conflict", `file ${file.name} of job ${file.job_id} was written by another write meanwhile: nothing was stored; write it again`);
    }
  }

  /**
   * The file's bytes as a stream (its digest is checked at the end: `done`
   * says how it went), or null when there is none. A stream that gets no
   * chunk for `idleMs` fails (`unavailable`): chunks removed under a reader
   * (the file's retention ended meanwhile) would otherwise leave it waiting
   * for ever.
   */
  async open(jobId: string, name: string, idleMs = READ_IDLE_MS): Promise<{ file: StoredFile; data: ReadableStream<Uint8Array>; done: Promise<Error | null> } | null> {
    const file = await this.stored(jobId, name);
    if (!file) return null;
    const result = await this.os.get(file.object);
    if (!result) return null;
    if (result.info.nuid !== file.nuid) {
      await result.data.cancel();
      throw new BosunError("conflict", `file ${name} of job ${jobId} was replaced while it was opened; ask again`);
    }
    return { file, data: idleLimited(result.data, idleMs, `file ${name} of job ${jobId}`), done: result.error };
  }

  /** The whole file (at most MAX_FILE_BYTES), or null when there is none. */
  async read(jobId: string, name: string): Promise<Buffer | null> {
    const opened = await this.open(jobId, name);
    if (!opened) return null;
    const parts: Uint8Array[] = [];
    for await (const part of opened.data) parts.push(part);
    const failed = await opened.done;
    if (failed) throw failed;
    return Buffer.concat(parts);
  }

  /**
   * Removes a file this write stored, only if it is still that one (a
   * compare-and-set delete marker, then its chunks): a newer write of the
   * name since stays.
   */
  async removeIfCurrent(file: StoredFile): Promise<boolean> {
    const headers = natsHeaders();
    headers.set("Nats-Rollup", "sub");
    const marker = { name: file.object, bucket: BUCKET, nuid: file.nuid, size: 0, chunks: 0, digest: "", mtime: new Date().toISOString(), deleted: true };
    try {
      await this.js.publish(metaSubject(file.object), JSON.stringify(marker), { headers, expect: { lastSubjectSequence: file.revision } });
    } catch (err) {
      if (lostRace(err)) return false;
      throw err;
    }
    await this.jsm.streams.purge(FILES_STREAM, { filter: chunkSubject(file.nuid) });
    return true;
  }

  /**
   * Removes a file and every trace of it: its metadata first, so no reader
   * opens it any more, then its chunks (the bucket's TTL takes any a failure
   * in between leaves).
   */
  async remove(jobId: string, name: string): Promise<void> {
    const object = jobFileObject(jobId, name);
    const meta = await readLast(this.jsm, FILES_STREAM, metaSubject(object));
    const nuid = meta && readInbound(ObjectMeta, meta.data, { log: this.log, source: "job file metadata", subject: meta.subject, seq: meta.seq })?.nuid;
    await this.jsm.streams.purge(FILES_STREAM, { filter: metaSubject(object) });
    if (nuid) await this.jsm.streams.purge(FILES_STREAM, { filter: chunkSubject(nuid) });
  }

  async #meta(jobId: string, name: string): Promise<MetaRead | undefined> {
    const object = jobFileObject(jobId, name);
    const msg = await readLast(this.jsm, FILES_STREAM, metaSubject(object));
    if (!msg) return undefined;
    const where = { log: this.log, source: "job file metadata", subject: msg.subject, seq: msg.seq };
    const meta = readInbound(ObjectMeta, msg.data, where);
    if (!meta || meta.deleted || meta.name !== object || meta.options?.link !== undefined) return { revision: msg.seq, file: undefined };
    const contentType = FileContentType.safeParse(meta.headers?.[CONTENT_TYPE]?.[0]);
    const token = TokenText.safeParse(meta.metadata?.fencing_token);
    // Not written by Bosun (or tampered with): no file, but a write may replace it.
    if (!contentType.success || !token.success || meta.size > MAX_FILE_BYTES) return { revision: msg.seq, file: undefined };
    return {
      revision: msg.seq,
      file: { job_id: jobId, name, object, nuid: meta.nuid, revision: msg.seq, size: meta.size, created_at: meta.mtime, content_type: contentType.data, fencing_token: token.data },
    };
  }
}

/** The bytes as they come, refused past MAX_FILE_BYTES (the object store then removes the chunks it stored). */
async function* limited(data: AsyncIterable<Uint8Array>, file: NewFile): AsyncGenerator<Uint8Array> {
  let bytes = 0;
  for await (const part of data) {
    bytes += part.byteLength;
    if (bytes > MAX_FILE_BYTES) throw new BosunError("payload_too_large", `file ${file.name} is larger than ${MAX_FILE_BYTES} bytes: nothing was stored`);
    yield part;
  }
}

/** The stream, failed (and its source cancelled) once no chunk arrives for `ms`. */
function idleLimited(source: ReadableStream<Uint8Array>, ms: number, what: string): ReadableStream<Uint8Array> {
  const reader = source.getReader();
  return new ReadableStream({
    async pull(controller) {
      let timer: NodeJS.Timeout | undefined;
      const idle = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new BosunError("unavailable", `${what}: no data for ${ms} ms; nothing more is sent`)), ms);
      });
      try {
        const { done, value } = await Promise.race([reader.read(), idle]);
        if (done) controller.close();
        else controller.enqueue(value);
      } catch (err) {
        void reader.cancel(err).catch(() => undefined);
        controller.error(err);
      } finally {
        clearTimeout(timer);
      }
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
}

/** What the object store reads from (ReadableStream.from is Node 20.6+). */
function webStream(parts: AsyncIterator<Uint8Array>): ReadableStream<Uint8Array> {
  return new ReadableStream({
    async pull(controller) {
      const { done, value } = await parts.next();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    async cancel() {
      await parts.return?.(undefined);
    },
  });
}
