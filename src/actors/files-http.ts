/**
 * ctx.files for a compute worker's actors, which have no NATS: each write is
 * one `PUT /api/compute/jobs/{job_id}/files/{name}` to the worker's gateway
 * with the worker's credential and the run's lease (`Bosun-Lease-Id`), the
 * bytes streamed as the handler hands them over, and each read one `GET` of
 * the same path. The gateway fences both by the lease: a run whose lease is
 * no longer current gets `lease_stale` (LeaseStaleError in the handler) and
 * nothing is stored or read.
 */
import { Readable } from "node:stream";
import { JobFile, LEASE_ID_HEADER } from "../contract/index.js";
import { InternalError, NotFoundError } from "../client/errors.js";
import { HttpTransport, RawBody } from "../client/http.js";
import type { JobFilesTransport } from "./files.js";
import type { FilesTransportSpec } from "./protocol.js";

type HttpSpec = Extract<FilesTransportSpec, { transport: "http" }>;

const filePath = (jobId: string, name: string) => `/api/compute/jobs/${encodeURIComponent(jobId)}/files/${encodeURIComponent(name)}`;

export function httpFilesTransport(spec: HttpSpec): JobFilesTransport {
  // Only raw requests go through it: no operation of the route table is called.
  const http = new HttpTransport({}, { url: spec.gateway, key: spec.credential, headers: () => ({ [LEASE_ID_HEADER]: spec.lease_id }) });
  return {
    async write(run, file, data) {
      // Node's web stream and fetch's are the same class; only their type declarations differ.
      const body = new RawBody(Readable.toWeb(Readable.from(data)) as unknown as ReadableStream<Uint8Array>, file.content_type);
      const res = await http.request("PUT", filePath(run.job_id, file.name), body);
      const stored = JobFile.safeParse(await res.json().catch(() => undefined));
      if (!stored.success) throw new InternalError("internal_error", `the gateway's answer to a file upload is not one of Bosun's (file ${file.name} of job ${run.job_id})`);
      return stored.data;
    },
    async read(run, name) {
      try {
        const res = await http.request("GET", filePath(run.job_id, name), undefined, undefined, "*/*");
        return Buffer.from(await res.arrayBuffer());
      } catch (err) {
        if (err instanceof NotFoundError) return null;
        throw err;
      }
    },
  };
}
