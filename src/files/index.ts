/**
 * Job files (CONTRACT.md "Handlers", the files routes), the supervisors'
 * side: listing a job's files, locating one for the gateway's download
 * (which streams it from the object store itself: a file may be larger than
 * a NATS message), for a user or for a compute server under its lease, and
 * checking a compute server's upload before and after the gateway stores
 * its bytes. Each answers 404 for a job whose record is
 * gone (unknown, or past its retention), as every read of a job does.
 * Writes of a run are the actors' (actors/files.ts).
 */
import type { MsgHdrs } from "@nats-io/nats-core";
import type { z } from "zod";
import { BosunError, jobFileObject, type JobStatus, type operations } from "../contract/index.js";
import { jobFileOf, type FileList } from "./lists.js";
import type { FileStores } from "./stores.js";

type Io<N extends keyof typeof operations> = [z.output<(typeof operations)[N]["request"]>, z.output<(typeof operations)[N]["response"]>];

export interface FilesDeps {
  stores: FileStores;
  /** The job's status; `not_found` when it has none. */
  status(jobId: string): Promise<JobStatus>;
  /** The compute server's lease of the job, if it is current (Compute.checkLease): `lease_stale` else. */
  checkLease(jobId: string, leaseId: string, headers: MsgHdrs | undefined): Promise<{ fencing_token: number }>;
}

const noFile = (jobId: string, name: string) => new BosunError("not_found", `job ${jobId} has no file ${name}`);

export class Files {
  constructor(private readonly deps: FilesDeps) {}

  readonly api = {
    list: async (req: Io<"jobs_files_list">[0]): Promise<Io<"jobs_files_list">[1]> => {
      const [, held] = await Promise.all([this.deps.status(req.job_id), this.deps.stores.lists.read(req.job_id)]);
      const files = [...(held?.list.files ?? [])].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      return { files: files.map(jobFileOf) };
    },
    locate: async (req: Io<"jobs_files_get">[0]): Promise<Io<"jobs_files_get">[1]> => {
      // The list read cannot fail for a missing job: an unknown or another tenant's job reads as "no job" only.
      const [, held] = await Promise.all([this.deps.status(req.job_id), this.deps.stores.lists.read(req.job_id)]);
      return located(req.job_id, req.name, held?.list.files);
    },
    /** ctx.files.read on a compute server: a file of the job whose lease it holds (a stale lease reads nothing). */
    leasedFile: async (req: Io<"compute_file_get">[0], headers: MsgHdrs | undefined): Promise<Io<"compute_file_get">[1]> => {
      const [, held] = await Promise.all([this.deps.checkLease(req.job_id, req.lease_id, headers), this.deps.stores.lists.read(req.job_id)]);
      return located(req.job_id, req.name, held?.list.files);
    },
    /**
     * Before the upload: the lease is current and the job has room for the
     * name. After it (`stored`): the lease is still current, and the file
     * stored is this lease's; then it is listed.
     */
    fileCheck: async (req: Io<"compute_file_check">[0], headers: MsgHdrs | undefined): Promise<Io<"compute_file_check">[1]> => {
      const { lists, objects } = this.deps.stores;
      const { fencing_token } = await this.deps.checkLease(req.job_id, req.lease_id, headers);
      const object = jobFileObject(req.job_id, req.name);
      if (!req.stored) {
        await lists.assertRoom(req.job_id, req.name);
        return { fencing_token, object };
      }
      const stored = await objects.stored(req.job_id, req.name);
      if (!stored) throw noFile(req.job_id, req.name);
      if (stored.fencing_token !== fencing_token) throw new BosunError("conflict", `file ${req.name} of job ${req.job_id} is another run's (fencing token ${stored.fencing_token}), not this lease's`);
      await lists.add(stored);
      return { fencing_token, object };
    },
  };
}

/** The file of the name in a job's list, and where its object is. */
function located(jobId: string, name: string, files: FileList["files"] | undefined): Io<"jobs_files_get">[1] {
  const file = files?.find((f) => f.name === name);
  if (!file) throw noFile(jobId, name);
  return { ...jobFileOf(file), object: jobFileObject(jobId, name) };
}
