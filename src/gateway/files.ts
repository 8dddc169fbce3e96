/**
 * The routes that carry a job file's bytes, which can be larger than a
 * NATS message: the gateway streams them between HTTP and the object store
 * itself, and asks the supervisors (one NATS request each) whether and
 * where. A download: `jobs_files_get` (auth, tenant, the job's record), or
 * for a compute server's ctx.files.read `compute_file_get` (credential,
 * lease), says where, then the object streams out. A compute server's upload:
 * `compute_file_check` before the body is read (credential, lease, room),
 * the body streams into the object store, then `compute_file_check` again
 * (stored: true): a lease lost meanwhile gets 409 and the object is removed.
 */
import { Readable } from "node:stream";
import type { ReadableStream as NodeReadableStream } from "node:stream/web";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { Logger } from "pino";
import {
  api,
  BosunError,
  DEFAULT_FILE_CONTENT_TYPE,
  FileCheckReply,
  FileContentType,
  FileParams,
  jobFileObject,
  LEASE_ID_HEADER,
  LeaseId,
  LocatedFile,
  MAX_FILE_BYTES,
  parseWith,
} from "../contract/index.js";
import { jobFileOf } from "../files/lists.js";
import { FileObjects } from "../files/objects.js";
import { unavailableOf } from "../platform/nats-errors.js";
import type { Call } from "./app.js";
import { send } from "./http-errors.js";
import type { NatsLink } from "./nats-link.js";

export async function registerFileRoutes(app: FastifyInstance, call: Call, nats: NatsLink, requestTimeoutMs: number, log: Logger): Promise<void> {
  // One FileObjects per connection (NatsLink keeps one across reconnects).
  let opened: { nc: NatsConnection; objects: Promise<FileObjects> } | undefined;
  const objectsOf = (): Promise<FileObjects> => {
    const nc = nats.get();
    if (opened?.nc !== nc) {
      const objects = jetstreamManager(nc).then((jsm) => FileObjects.open(nc, jsm, log));
      // A failed open (NATS away) is tried again by the next request.
      objects.catch(() => opened?.objects === objects && (opened = undefined));
      opened = { nc, objects };
    }
    return opened.objects;
  };
  /** Object store failures read like any NATS failure: 503 while NATS or a stream leader is away. */
  const objects = async <T>(work: (o: FileObjects) => Promise<T>): Promise<T> => {
    try {
      return await work(await objectsOf());
    } catch (err) {
      throw unavailableOf(err) ?? err;
    }
  };

  app.get("/api/jobs/:job_id/files/:name", async (req, reply) => {
    const { job_id, name } = parseWith(FileParams, req.params);
    return download(req, reply, job_id, name, await call(api.jobsFilesGet, { job_id, name }, req));
  });

  // ctx.files.read of a compute worker: a file of the job it holds the lease of.
  app.get("/api/compute/jobs/:job_id/files/:name", async (req, reply) => {
    const { job_id, name } = parseWith(FileParams, req.params);
    const lease_id = parseWith(LeaseId, req.headers[LEASE_ID_HEADER]);
    return download(req, reply, job_id, name, await call(api.computeFileGet, { job_id, lease_id, name }, req));
  });

  /** Streams the file the supervisors located (or sends their refusal). */
  async function download(req: FastifyRequest, reply: FastifyReply, job_id: string, name: string, located: { status: number; body: unknown }): Promise<FastifyReply> {
    if (located.status !== 200) return send(reply, located.status, located.body);
    const where = LocatedFile.safeParse(located.body);
    if (!where.success || where.data.object !== jobFileObject(job_id, name)) throw new BosunError("internal_error", "the supervisors' answer does not say where the file is");
    // A read that stalls (its chunks removed under it) fails after the time a NATS request may take.
    const file = await objects((o) => o.open(job_id, name, requestTimeoutMs));
    if (!file) throw new BosunError("not_found", `job ${job_id} has no file ${name}`);
    // A digest that does not match ends the stream early: the client sees a short body, never wrong bytes as whole.
    void file.done.then((err) => err && req.log.warn({ err, job_id, name }, "a job file's download failed midway"));
    return reply
      .code(200)
      .header("content-type", file.file.content_type)
      .header("content-length", String(file.file.size))
      .header("content-disposition", `inline; filename="${name}"`)
      // A job's file is the job's content, not the gateway's: never run as a page of its origin (the dashboard's).
      .header("content-security-policy", "sandbox")
      .header("x-content-type-options", "nosniff")
      .send(Readable.fromWeb(file.data as NodeReadableStream<Uint8Array>));
  }

  await app.register(async (scope) => {
    // The body is the file: streamed into the object store as it arrives, never parsed or buffered here.
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser("*", (_req, _payload, done) => done(null, undefined));
    scope.put("/api/compute/jobs/:job_id/files/:name", async (req, reply) => {
      try {
        return await upload(req, reply);
      } catch (err) {
        // The body may be unread: the connection is not reused for another request.
        reply.header("connection", "close");
        throw err;
      }
    });
  });

  async function upload(req: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
    const { job_id, name } = parseWith(FileParams, req.params);
    const lease_id = parseWith(LeaseId, req.headers[LEASE_ID_HEADER]);
    const contentType = req.headers["content-type"] === undefined ? DEFAULT_FILE_CONTENT_TYPE : parseWith(FileContentType, req.headers["content-type"]);
    if (Number(req.headers["content-length"]) > MAX_FILE_BYTES) throw new BosunError("payload_too_large", `a job file is at most ${MAX_FILE_BYTES} bytes: nothing was stored`);
    const before = await call(api.computeFileCheck, { job_id, lease_id, name }, req);
    if (before.status !== 200) return refuse(reply, before);
    const check = FileCheckReply.safeParse(before.body);
    if (!check.success || check.data.object !== jobFileObject(job_id, name)) throw new BosunError("internal_error", "the supervisors' answer does not say where the file goes");
    const stored = await objects((o) => o.put({ job_id, name, content_type: contentType, fencing_token: check.data.fencing_token }, req.raw));
    const after = await call(api.computeFileCheck, { job_id, lease_id, name, stored: true }, req);
    if (after.status !== 200) {
      await objects((o) => o.removeIfCurrent(stored)).catch((err: unknown) => req.log.warn({ err, job_id, name }, "could not remove a file whose lease went stale"));
      return refuse(reply, after);
    }
    return send(reply, 201, jobFileOf(stored));
  }
}

function refuse(reply: FastifyReply, res: { status: number; body: unknown }): FastifyReply {
  reply.header("connection", "close");
  return send(reply, res.status, res.body);
}
