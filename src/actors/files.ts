/**
 * `ctx.files`: a run's files, stored with the job (CONTRACT.md "Handlers").
 * The handler-facing side checks names and content types and turns what a
 * handler hands over (a string, bytes, a readable stream) into bytes; a
 * transport stores them. A supervisor's actors store over NATS (they have
 * NATS_URL); a compute worker's have no NATS, and their run command
 * (`files`) names the HTTP transport to their gateway instead.
 */
import type { Readable } from "node:stream";
import type { Logger } from "pino";
import { DEFAULT_FILE_CONTENT_TYPE, FileContentType, JobFileName, parseWith, type JobFile } from "../contract/index.js";
import type { FilesTransportSpec, RunCommand } from "./protocol.js";

/** The run a transport stores for: its job, and its fencing token (a newer run's refuses its writes). */
export interface FileRun {
  job_id: string;
  fencing_token: number;
}

/** How a run's files reach storage. */
export interface JobFilesTransport {
  /**
   * Stores one file of the run's job and lists it. Refused (nothing stored)
   * when a newer run of the job exists or wrote this name (`lease_stale`),
   * past MAX_FILE_BYTES (`payload_too_large`) or MAX_FILES_PER_JOB.
   */
  write(run: FileRun, file: { name: string; content_type: string }, data: AsyncIterable<Uint8Array>): Promise<JobFile>;
  /** The job's file of this name (whichever run wrote it), or null when it has none. */
  read(run: FileRun, name: string): Promise<Buffer | null>;
}

export type FileData = string | Uint8Array | Readable | AsyncIterable<Uint8Array | string>;

/** What a handler sees as `ctx.files`. */
export interface JobFiles {
  /**
   * Stores `data` as the job's file `name` (1-255 of A-Z a-z 0-9 . _ -),
   * replacing an earlier one of the name; resolves once it is listed.
   * Content type: `opts.content_type`, else text/plain for a string and
   * application/octet-stream for bytes or a stream.
   */
  write(name: string, data: FileData, opts?: { content_type?: string }): Promise<JobFile>;
  /** The whole file as a Buffer (any run of the job may have written it), or null when there is none. */
  read(name: string): Promise<Buffer | null>;
}

const TEXT = "text/plain; charset=utf-8";

/** ctx.files of one run, over the transport its command names. */
export function jobFiles(cmd: Pick<RunCommand, "job_id" | "fencing_token" | "files">, log: Logger): JobFiles {
  const run: FileRun = { job_id: cmd.job_id, fencing_token: cmd.fencing_token };
  let transport: Promise<JobFilesTransport> | undefined;
  const transportOf = () => (transport ??= transportFor(cmd.files ?? { transport: "nats" }, log));
  return {
    async write(name, data, opts = {}) {
      const file = {
        name: parseWith(JobFileName, name),
        content_type: opts.content_type === undefined ? (typeof data === "string" ? TEXT : DEFAULT_FILE_CONTENT_TYPE) : parseWith(FileContentType, opts.content_type),
      };
      const bytes = bytesOf(data);
      return (await transportOf()).write(run, file, bytes);
    },
    async read(name) {
      return (await transportOf()).read(run, parseWith(JobFileName, name));
    },
  };
}

async function transportFor(spec: FilesTransportSpec, log: Logger): Promise<JobFilesTransport> {
  switch (spec.transport) {
    case "nats":
      // A supervisor gives its actors NATS_URL; an actor without one (a compute worker's) has no NATS to reach.
      if (!process.env.NATS_URL) throw new Error("ctx.files: this execution actor has no NATS_URL, and its run names no other way to store files");
      // Loaded on first use: most runs write no file, and an actor starts without the NATS client.
      return (await import("./files-nats.js")).natsFilesTransport(log);
    case "http":
      return (await import("./files-http.js")).httpFilesTransport(spec);
  }
}

/** A handler's data as bytes, whatever it handed over; anything else is a TypeError before a byte is stored. */
function bytesOf(data: FileData): AsyncIterable<Uint8Array> {
  if (typeof data === "string") return once(Buffer.from(data, "utf8"));
  if (data instanceof Uint8Array) return once(data);
  if (data === null || typeof data !== "object" || !(Symbol.asyncIterator in data)) {
    throw new TypeError("ctx.files.write takes a string, a Buffer or Uint8Array, or a readable stream");
  }
  return parts(data as AsyncIterable<unknown>);
}

async function* once(bytes: Uint8Array): AsyncGenerator<Uint8Array> {
  yield bytes;
}

async function* parts(stream: AsyncIterable<unknown>): AsyncGenerator<Uint8Array> {
  for await (const part of stream) {
    if (typeof part === "string") yield Buffer.from(part, "utf8");
    else if (part instanceof Uint8Array) yield part;
    else throw new TypeError("ctx.files.write: a stream must yield strings or bytes (not an object-mode stream)");
  }
}
