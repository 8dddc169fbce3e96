/**
 * Whether a run may still write its job's files: no newer run of the job
 * is known. Read cheaply, by literal subjects in one flush: the job's
 * interim record (a supervisor's run, or a remote lease, shows it running
 * with its token), its remote lease and its final record; each carries the
 * fencing token of the run it is about. A run whose token is lower than one
 * of them is stale, and its write is refused.
 */
import type { JetStreamManager } from "@nats-io/jetstream";
import type { Logger } from "pino";
import { BosunError, buckets, resultSubject, streams } from "../contract/index.js";
import { readInbound } from "../platform/guard.js";
import { readKvValue, readLast } from "../platform/stream-reads.js";
import { readBack } from "../records/index.js";
import { StoredLease } from "../compute/leases.js";

/** The highest fencing token stored for the job (0 when nothing carries one). */
export async function newestToken(jsm: JetStreamManager, jobId: string, log: Logger): Promise<number> {
  const [interim, lease, final] = await Promise.all([
    readKvValue(jsm, buckets.jobs, jobId),
    readKvValue(jsm, buckets.leases, jobId),
    readLast(jsm, streams.results, resultSubject(jobId)),
  ]);
  const leased = lease && readInbound(StoredLease, lease.data, { log, source: "compute lease", subject: lease.subject, seq: lease.seq });
  const tokens = [
    interim && readBack.interim(interim, log)?.fencing_token,
    leased?.job_id === jobId ? leased.fencing_token : undefined,
    final && readBack.final(final, log)?.fencing_token,
  ];
  return Math.max(0, ...tokens.filter((t): t is number => t !== undefined && t !== null));
}

/** `lease_stale` when a newer run of the job than this one is known. */
export async function assertCurrentRun(jsm: JetStreamManager, run: { job_id: string; fencing_token: number }, log: Logger): Promise<void> {
  const newest = await newestToken(jsm, run.job_id, log);
  if (newest > run.fencing_token) {
    throw new BosunError("lease_stale", `a newer run of job ${run.job_id} exists (fencing token ${newest} > ${run.fencing_token}): its files are that run's, nothing was stored`);
  }
}
