/**
 * Durable job state, written and read by job id. A job's state lives where
 * its messages are (see status.ts): a submit is one acknowledged write (the
 * job message), a job that ends is one more (its final record on the
 * results stream); running attempts have an unacknowledged interim record.
 * Writes go through one StreamWriter; reads through the platform's read
 * helpers, by literal subject.
 */
import type { JetStreamManager } from "@nats-io/jetstream";
import type { Logger } from "pino";
import { dropMessage, readLast } from "../platform/stream-reads.js";
import {
  BosunError,
  buckets,
  DeadLetter,
  deadSubject,
  encodeJson,
  FinalRecord,
  headerNames,
  InterimRecord,
  isJobId,
  type JobEnvelope,
  jobSubject,
  kvKeySubject,
  resultSubject,
  scheduledSubject,
  streams,
  type JobStatus,
} from "../contract/index.js";
import { StreamWriteError, type StreamWriter, type WriteOptions } from "../platform/stream-writer.js";
import type { JobMessage } from "../platform/puller.js";
import { readParked, readStored, type StoredLike } from "./decode.js";
import { cancelledError, recordOf, statusOf, type JobSources, type ParkedJob } from "./status.js";

const WRONG_LAST_SEQUENCE = 10071;
/** How long a hand-back keeps retrying a write the stream cannot take, as a submit does (SUBMIT_RETRY_MS). */
const HAND_BACK_RETRY_MS = 4000;
/** Ends the message id of a final record's write, naming the run (supervisor + receipt) that wrote it. */
const runWriteSuffix = (runId: string) => `.run.${runId}`;
/**
 * For writes with a message id: retry while the stream cannot take them (see
 * StreamWriter); `encoded`, the envelope's JSON when the caller has it already.
 */
type Retry = Pick<WriteOptions, "retryForMs"> & { encoded?: Uint8Array };
export const INTERIM_STREAM = `KV_${buckets.jobs}`;
/** Where a job's interim record is (its key in bosun_jobs). */
export const interimSubject = (jobId: string): string => kvKeySubject(buckets.jobs, jobId);

/**
 * How each kind of stored message is read back (see decode.ts): a bad one
 * reads as absent, so one junk message never makes a job, a listing or a
 * cleanup fail.
 */
export const readBack = {
  queued: (msg: StoredLike, log: Logger): ParkedJob | undefined => readParked(msg, { log, source: "job message" }, jobSubject),
  scheduled: (msg: StoredLike, log: Logger): ParkedJob | undefined => readParked(msg, { log, source: "scheduled message" }, scheduledSubject),
  final: (msg: StoredLike, log: Logger): FinalRecord | undefined => readStored(FinalRecord, msg, { log, source: "final record" }, resultSubject, (r) => r.job_id),
  dead: (msg: StoredLike, log: Logger): DeadLetter | undefined =>
    readStored(DeadLetter, msg, { log, source: "dead letter" }, deadSubject, (d) => (d.record.job_id === d.job.job_id ? d.job.job_id : "")),
  /** A purge or delete marker has no record in it. */
  interim: (msg: StoredLike, log: Logger): InterimRecord | undefined =>
    msg.data.length === 0 ? undefined : readStored(InterimRecord, msg, { log, source: "interim record" }, interimSubject, (r) => r.job_id),
};

/** Where each part of a job is stored, so a cancel or retry can remove exactly those messages. */
export interface LocatedSources extends JobSources {
  seqs: { final?: number; queued?: number; scheduled?: number };
}

export class JobStore {
  constructor(
    private readonly writer: StreamWriter,
    readonly jsm: JetStreamManager,
    /** Where stored messages that fail their schema are reported (they read as absent). */
    readonly log: Logger,
  ) {}

  /**
   * Publishes one attempt of a job to its queue. The message id makes a
   * re-publish of the same attempt (a retried submit, a replayed retry) a no-op;
   * `tag` sets apart a deliberate second message for the same attempt (a hand-back).
   */
  async enqueue(envelope: JobEnvelope, attemptOffset: number, tag = "", { encoded, retryForMs }: Retry = {}): Promise<void> {
    await this.writer.publish(jobSubject(envelope.job_id), encoded ?? encodeJson(envelope), {
      msgId: `${envelope.job_id}.${envelope.generation}.${attemptOffset}${tag && `.${tag}`}`,
      headers: { [headerNames.attemptOffset]: String(attemptOffset) },
      retryForMs,
    });
  }

  /**
   * Gives back a delivered job that never started, as a new message carrying
   * the same attempt number: JetStream would count a nak as a delivery, and
   * the job would lose an attempt it never used.
   */
  async handBack(msg: JobMessage, parked: ParkedJob, opts: { cancelled: boolean }): Promise<void> {
    // Cancelled while held: settled unrun, not sent round again (its cancel request may be gone by the time it came back).
    if (opts.cancelled) return this.dropCancelled(msg, parked.job, parked.offset + msg.deliveryCount - 1);
    // Retried through an election (the message id makes a copy that did land a no-op): a copy
    // written but unacknowledged would run beside the original, which is not acked without it.
    await this.enqueue(parked.job, parked.offset + msg.deliveryCount - 1, `handback-${msg.streamSeq}-${msg.deliveryCount}`, { retryForMs: HAND_BACK_RETRY_MS });
    msg.ack();
  }

  /**
   * A job found cancelled before this run of it started (parked, held
   * ahead, about to be handed back): its cancelled final record,
   * create-once, then its message acked. The cancel wrote the record itself
   * unless the job was running when it was asked to stop and its attempt
   * then ended another way; without this the job would be left with no
   * record at all.
   */
  async dropCancelled(msg: JobMessage, job: JobEnvelope, attempts: number): Promise<void> {
    const finished_at = new Date().toISOString();
    const record = recordOf(job, "cancelled", attempts, { error: cancelledError, finished_at });
    await this.claimResult({ ...record, state: "cancelled", result: null, duration_ms: null, generation: job.generation });
    msg.ack();
  }

  /** Parks an attempt of a job until `dueAt` (epoch ms); the scheduler enqueues it then. */
  async schedule(envelope: JobEnvelope, attemptOffset: number, dueAt: number, { encoded, retryForMs }: Retry = {}): Promise<void> {
    await this.writer.publish(scheduledSubject(envelope.job_id), encoded ?? encodeJson(envelope), {
      msgId: `${envelope.job_id}.${envelope.generation}.${attemptOffset}.scheduled`,
      headers: { [headerNames.attemptOffset]: String(attemptOffset), [headerNames.dueAt]: String(dueAt) },
      retryForMs,
    });
  }

  async bury(letter: DeadLetter): Promise<void> {
    await this.writer.publish(deadSubject(letter.job.job_id), encodeJson(letter), { msgId: `${letter.job.job_id}.${letter.job.generation}.dead` });
  }

  /** For a running attempt (owner, progress): nobody waits, the final record follows acknowledged. */
  putRunning(record: InterimRecord): void {
    this.writer.publishUnacked(interimSubject(record.job_id), encodeJson(record));
  }

  /** Removes a job's interim record, marker and all (a KV delete would leave a marker per job). */
  async dropInterim(jobId: string): Promise<void> {
    await this.jsm.streams.purge(INTERIM_STREAM, { filter: interimSubject(jobId) });
  }

  /**
   * Stores a final record only if the job has none yet; false if it has one.
   * A cancel and a finishing run race through this, so exactly one of them
   * decides how the job ended. With `writeId` (one per run), a retry of a
   * claim that landed unacknowledged is a no-op, not a lost race.
   */
  async claimResult(record: FinalRecord, opts: { writeId?: string } = {}): Promise<boolean> {
    try {
      await this.writer.publish(resultSubject(record.job_id), encodeJson(record), {
        expectLastSubjectSeq: 0,
        ...(opts.writeId && { msgId: opts.writeId }),
      });
      return true;
    } catch (err) {
      if (err instanceof StreamWriteError && err.errCode === WRONG_LAST_SEQUENCE) return false;
      throw err;
    }
  }

  /**
   * Stores a finished run's final record and returns the one that stands: a
   * cancel that got there first wins; another run's (its supervisor died
   * before acking, or JetStream lost a delivery count in a crash or a
   * partition) is replaced, and this run counts after it, so `attempts`
   * counts every run that finished even where the delivery count did not.
   * `runId` names the run (see runIdOf in supervisor/settle.ts).
   */
  async settleResult(record: FinalRecord, runId: string): Promise<FinalRecord> {
    if (await this.claimResult(record, { writeId: `${record.job_id}${runWriteSuffix(runId)}` })) return record;
    const existing = (await this.finalRecord(record.job_id))?.record;
    const same = existing?.generation === record.generation;
    if (existing?.state === "cancelled" && same) return existing;
    // Fenced: a newer run's record stands against a stalled older run that finished late.
    if (same && existing?.fencing_token !== undefined && record.fencing_token !== undefined && existing.fencing_token > record.fencing_token) return existing;
    const counted = existing && same && existing.attempts >= record.attempts ? { ...record, attempts: existing.attempts + 1 } : record;
    await this.writer.publish(resultSubject(record.job_id), encodeJson(counted), {
      msgId: `${record.job_id}.${record.generation}.${counted.attempts}${runWriteSuffix(runId)}`,
    });
    return counted;
  }

  /**
   * Counts a run of `attempt` that never reported (see UncountedRuns) into
   * the job's final record: raised to attempt + 1 unless it counts beyond it
   * already (a redelivery that knew of this run does). False while the job
   * has no final record yet. Compare-and-set on the record, so a run
   * finishing meanwhile is not overwritten.
   */
  async countUnreportedRun(jobId: string, generation: number, attempt: number, runId: string): Promise<boolean> {
    for (let tries = 0; tries < 5; tries++) {
      const stored = await this.finalRecord(jobId);
      if (!stored) return false;
      const { record, seq, writeId } = stored;
      // Its own write landed after all (only the ack was lost), the count is past it already, or the job was retried since.
      if (writeId?.endsWith(runWriteSuffix(runId)) || record.attempts > attempt || record.generation !== generation) return true;
      try {
        await this.writer.publish(resultSubject(jobId), encodeJson({ ...record, attempts: attempt + 1 }), { expectLastSubjectSeq: seq });
        return true;
      } catch (err) {
        if (!(err instanceof StreamWriteError && err.errCode === WRONG_LAST_SEQUENCE)) throw err;
      }
    }
    return false;
  }

  /** The job's final record if this run wrote it (a retried write whose first try landed unanswered asks). */
  async finalRecordOf(jobId: string, runId: string): Promise<FinalRecord | undefined> {
    const stored = await this.finalRecord(jobId);
    return stored?.writeId?.endsWith(runWriteSuffix(runId)) ? stored.record : undefined;
  }

  /** The job's final record, where and when it was stored, and the message id it was written with (names the run). */
  async finalRecord(jobId: string): Promise<{ record: FinalRecord; seq: number; time: Date; writeId?: string } | null> {
    if (!isJobId(jobId)) return null;
    const msg = await readLast(this.jsm, streams.results, resultSubject(jobId));
    const record = msg && readBack.final(msg, this.log);
    return record ? { record, seq: msg!.seq, time: msg!.time, writeId: msg!.headers.get("Nats-Msg-Id") || undefined } : null;
  }

  async deadLetter(jobId: string): Promise<{ letter: DeadLetter; seq: number } | null> {
    if (!isJobId(jobId)) return null;
    const msg = await readLast(this.jsm, streams.dead, deadSubject(jobId));
    const letter = msg && readBack.dead(msg, this.log);
    return letter ? { letter, seq: msg!.seq } : null;
  }

  /** Everything stored of a job, read at once. */
  sources(jobId: string): Promise<LocatedSources> {
    return readSources(this.jsm, jobId, this.log);
  }

  /** The job's status; `not_found` when nothing of it is stored (unknown, or past its retention). */
  async status(jobId: string): Promise<JobStatus> {
    return requireStatus(jobId, await this.sources(jobId));
  }

  /** Removes a stored message by sequence; one already gone is no error. */
  async drop(stream: string, seq: number): Promise<void> {
    await dropMessage(this.jsm, stream, seq);
  }
}

/** Everything stored of a job, read at once (four direct gets in one flush). */
export async function readSources(jsm: JetStreamManager, jobId: string, log: Logger): Promise<LocatedSources> {
  if (!isJobId(jobId)) return { seqs: {} };
  const [final, queued, scheduled, interim] = await Promise.all([
    readLast(jsm, streams.results, resultSubject(jobId)),
    readLast(jsm, streams.jobs, jobSubject(jobId)),
    readLast(jsm, streams.scheduled, scheduledSubject(jobId)),
    readLast(jsm, INTERIM_STREAM, interimSubject(jobId)),
  ]);
  const sources = {
    final: final && readBack.final(final, log),
    queued: queued && readBack.queued(queued, log),
    scheduled: scheduled && readBack.scheduled(scheduled, log),
    interim: interim && readBack.interim(interim, log),
  };
  // A message that did not decode is no source, and no message a cancel or retry may remove either.
  return {
    ...sources,
    seqs: { final: sources.final ? final?.seq : undefined, queued: sources.queued ? queued?.seq : undefined, scheduled: sources.scheduled ? scheduled?.seq : undefined },
  };
}

export function requireStatus(jobId: string, sources: JobSources): JobStatus {
  const status = statusOf(sources);
  if (!status) throw new BosunError("not_found", `no job ${jobId}`);
  return status;
}
