/**
 * ctx.files over NATS, for the actors of a supervisor (they have NATS_URL
 * and the supervisor's NATS user): straight into the files bucket over the
 * actor's own connection. A write is fenced twice: before its bytes are
 * stored (no newer run of the job, room for the name) and after (still no
 * newer run: then it is listed, else removed again), so a run that stalls
 * while a newer one starts leaves nothing behind once it is found out.
 */
import type { Logger } from "pino";
import { assertCurrentRun } from "../files/fence.js";
import { jobFileOf } from "../files/lists.js";
import { openFileStores, type FileStores } from "../files/stores.js";
import type { JobFilesTransport } from "./files.js";
import { actorConnection } from "./nats-connection.js";

let stores: Promise<FileStores> | undefined;

/** The file stores of this actor, over its one NATS connection; `log` gets what they drop as malformed. */
export function actorFileStores(log: Logger): Promise<FileStores> {
  stores ??= actorConnection().then((nc) => openFileStores(nc, log));
  stores.catch(() => (stores = undefined));
  return stores;
}

export const natsFilesTransport = (log: Logger): JobFilesTransport => ({
  async write(run, file, data) {
    const { jsm, objects, lists } = await actorFileStores(log);
    await Promise.all([assertCurrentRun(jsm, run, log), lists.assertRoom(run.job_id, file.name)]);
    const stored = await objects.put({ job_id: run.job_id, name: file.name, content_type: file.content_type, fencing_token: run.fencing_token }, data);
    try {
      await assertCurrentRun(jsm, run, log);
      await lists.add(stored);
    } catch (err) {
      await objects.removeIfCurrent(stored).catch((removeErr: unknown) => log.warn({ err: removeErr, job_id: run.job_id, name: file.name }, "could not remove a file a stale write stored"));
      throw err;
    }
    return jobFileOf(stored);
  },
  async read(run, name) {
    return (await actorFileStores(log)).objects.read(run.job_id, name);
  },
});
