/**
 * Durable job state: records in the jobs KV bucket (status, owner, attempts)
 * and results in the results stream. Writes go through one StreamWriter;
 * each acked write resolves only once JetStream has stored it.
 */
import type { JetStreamManager } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import { dropMessage, scanLastPerSubject, type StreamReader } from "../platform/stream-reads.js";
import { kvStream } from "../platform/topology.js";
import { currentRecords, withResult, type StoredResult } from "./records.js";
import {
  BosunError,
  buckets,
  DEAD_WILDCARD,
  DeadLetter,
  deadSubject,
  FINAL_STATES,
  headerNames,
  JobResult,
  JobStatus,
  encodeJson,
  jobSubject,
  kvKeySubject,
  parseWith,
  resultSubject,
  scheduledSubject,
  streams,
  type JobEnvelope,
  type ListJobsRequest,
} from "../contract/index.js";
import { StreamWriteError, type StreamWriter, type WriteOptions } from "../platform/stream-writer.js";

const decoder = new TextDecoder();
const WRONG_LAST_SEQUENCE = 10071;
const KV_OPERATION_HEADER = "KV-Operation";

/** Ends the message id of a result write, naming the run (supervisor + receipt) that wrote it. */
const runWriteSuffix = (runId: string) => `.run.${runId}`;

/** For writes with a message id: retry while the stream cannot take them (see StreamWriter). */
type Retry = Pick<WriteOptions, "retryForMs">;


export class JobStore {
  private readonly jsm: JetStreamManager;

  constructor(
    private readonly writer: StreamWriter,
    private readonly reader: StreamReader,
    private readonly kv: KV,
  ) {
    this.jsm = reader.jsm;
  }

  /**
   * Creates the record; fails with `conflict` if the id exists, so a job is
   * created once. The message id makes a retry of a create that did land a
   * no-op (JetStream checks it before the expected sequence).
   */
  async create(record: JobStatus, retry: Retry = {}): Promise<void> {
    try {
      await this.writer.publish(kvKeySubject(buckets.jobs, record.job_id), encodeJson(record), { expectLastSubjectSeq: 0, msgId: `${record.job_id}.created`, ...retry });
    } catch (err) {
      if (err instanceof StreamWriteError && err.errCode === WRONG_LAST_SEQUENCE) {
        throw new BosunError("conflict", `job ${record.job_id} exists already`);
      }
      throw err;
    }
  }

  async put(record: JobStatus): Promise<void> {
    await this.writer.publish(kvKeySubject(buckets.jobs, record.job_id), encodeJson(record));
  }

  /** Compare-and-set: fails with `conflict` if the record changed since `revision`. */
  async update(record: JobStatus, revision: number): Promise<void> {
    try {
      await this.writer.publish(kvKeySubject(buckets.jobs, record.job_id), encodeJson(record), { expectLastSubjectSeq: revision });
    } catch (err) {
      if (err instanceof StreamWriteError && err.errCode === WRONG_LAST_SEQUENCE) {
        throw new BosunError("conflict", `job ${record.job_id} changed meanwhile; try again`);
      }
      throw err;
    }
  }

  /** For interim states (running, progress): a later acked write always follows. */
  putInterim(record: JobStatus): void {
    this.writer.publishUnacked(kvKeySubject(buckets.jobs, record.job_id), encodeJson(record));
  }

  /** Through the stream reader, not kv.get: a lagging replica must not make an accepted job unknown. */
  async get(jobId: string): Promise<{ record: JobStatus; revision: number } | null> {
    const msg = await this.reader.last(kvStream(buckets.jobs), kvKeySubject(buckets.jobs, jobId));
    // A KV delete or purge is a message with a KV-Operation header and no value.
    if (!msg || msg.header.get(KV_OPERATION_HEADER)) return null;
    return { record: parseWith(JobStatus, msg.json()), revision: msg.seq };
  }

  async require(jobId: string): Promise<{ record: JobStatus; revision: number }> {
    const found = await this.get(jobId);
    if (!found) throw new BosunError("not_found", `no job ${jobId}`);
    return found;
  }

  /** The job's status: its record, brought up to date by its result (see withResult). */
  async status(jobId: string): Promise<JobStatus> {
    return (await this.current(jobId)).record;
  }

  /** The up-to-date record, with the revision a compare-and-set update needs. */
  async current(jobId: string): Promise<{ record: JobStatus; revision: number }> {
    const { record, revision } = await this.require(jobId);
    if (FINAL_STATES.has(record.state)) return { record, revision };
    return { record: withResult(record, (await this.storedResult(jobId)) ?? undefined), revision };
  }

  /**
   * Publishes one attempt of a job to its queue. The message id makes a
   * re-publish of the same attempt (a retried submit, a replayed retry) a no-op;
   * `tag` sets apart a deliberate second message for the same attempt (a hand-back).
   */
  async enqueue(envelope: JobEnvelope, attemptOffset: number, tag = "", retry: Retry = {}): Promise<void> {
    await this.writer.publish(jobSubject(envelope.queue), encodeJson(envelope), {
      msgId: `${envelope.job_id}.${envelope.generation}.${attemptOffset}${tag && `.${tag}`}`,
      headers: { [headerNames.attemptOffset]: String(attemptOffset) },
      ...retry,
    });
  }

  /** Parks an attempt of a job until `dueAt` (epoch ms); the scheduler enqueues it then. */
  async schedule(envelope: JobEnvelope, attemptOffset: number, dueAt: number, retry: Retry = {}): Promise<void> {
    await this.writer.publish(scheduledSubject(envelope.queue), encodeJson(envelope), {
      msgId: `${envelope.job_id}.${envelope.generation}.${attemptOffset}.scheduled`,
      headers: { [headerNames.attemptOffset]: String(attemptOffset), [headerNames.dueAt]: String(dueAt) },
      ...retry,
    });
  }

  async bury(letter: DeadLetter): Promise<void> {
    await this.writer.publish(deadSubject(letter.job.queue, letter.job.job_id), encodeJson(letter), {
      msgId: `${letter.job.job_id}.${letter.job.generation}.dead`,
    });
  }

  /** The job's dead letter and where it is stored (to drop exactly that one later). */
  async deadLetter(queue: string, jobId: string): Promise<{ letter: DeadLetter; seq: number } | null> {
    const msg = await this.reader.last(streams.dead, deadSubject(queue, jobId));
    return msg ? { letter: parseWith(DeadLetter, JSON.parse(decoder.decode(msg.data))), seq: msg.seq } : null;
  }

  /** A retried dead job must not answer with its old result; a newer one has replaced it already if gone. */
  async dropResult(seq: number): Promise<void> {
    await dropMessage(this.jsm, streams.results, seq);
  }

  /** A retried dead job is not dead any more; if it died again meanwhile, its new dead letter stays. */
  async dropDeadLetter(seq: number): Promise<void> {
    await dropMessage(this.jsm, streams.dead, seq);
  }

  /**
   * Job records matching a filter, newest first. Dead jobs come from the
   * dead-letter stream; any other state reads every record's latest value
   * once (an operator's query, linear in the records kept; cleanup bounds it).
   */
  async list(filter: ListJobsRequest): Promise<JobStatus[]> {
    const matches: JobStatus[] = filter.state === "dead" ? await this.#deadRecords(filter) : await this.#scanRecords(filter);
    matches.sort((a, b) => (a.created_at < b.created_at ? 1 : a.created_at > b.created_at ? -1 : 0));
    return matches.slice(0, filter.limit);
  }

  async #deadRecords(filter: ListJobsRequest): Promise<JobStatus[]> {
    const subject = filter.queue ? deadSubject(filter.queue, "*") : DEAD_WILDCARD;
    const info = await this.jsm.streams.info(streams.dead, { subjects_filter: subject });
    const records: JobStatus[] = [];
    await scanLastPerSubject(this.jsm, streams.dead, subject, Object.keys(info.state.subjects ?? {}).length, (msg) => {
      const { record } = parseWith(DeadLetter, msg.json());
      if (!filter.tenant || record.tenant === filter.tenant) records.push(record);
    });
    return records;
  }

  async #scanRecords(filter: ListJobsRequest): Promise<JobStatus[]> {
    return (await currentRecords(this.kv, this.jsm)).filter(
      (record) =>
        (!filter.state || record.state === filter.state) &&
        (!filter.queue || record.queue === filter.queue) &&
        (!filter.tenant || record.tenant === filter.tenant),
    );
  }

  /**
   * Stores a result only if the job has none yet; false if it has one. A
   * cancel and a finishing run race through this, so exactly one of them
   * decides how the job ended. With `writeId` (one per run), a retry of a
   * claim that landed unacknowledged is a no-op, not a lost race.
   */
  async claimResult(result: JobResult, writeId?: string): Promise<boolean> {
    try {
      await this.writer.publish(resultSubject(result.job_id), encodeJson(result), { expectLastSubjectSeq: 0, ...(writeId && { msgId: writeId }) });
      return true;
    } catch (err) {
      if (err instanceof StreamWriteError && err.errCode === WRONG_LAST_SEQUENCE) return false;
      throw err;
    }
  }

  /**
   * Stores a finished run's result and returns the one that stands: a cancel
   * that got there first wins; another run's result (its supervisor died
   * before acking, or JetStream lost a delivery count in a crash) is
   * replaced, and this run counts after it, so `attempts` counts every run
   * that finished even where the delivery count did not.
   */
  async settleResult(result: JobResult, runId: string): Promise<JobResult> {
    if (await this.claimResult(result, `${result.job_id}${runWriteSuffix(runId)}`)) return result;
    const existing = await this.getResult(result.job_id);
    if (existing?.state === "cancelled") return existing;
    const counted = existing && existing.attempts >= result.attempts ? { ...result, attempts: existing.attempts + 1 } : result;
    await this.writer.publish(resultSubject(result.job_id), encodeJson(counted), { msgId: `${result.job_id}.${counted.attempts}${runWriteSuffix(runId)}` });
    return counted;
  }

  /**
   * Counts a run of `attempt` that never reported (see UncountedRuns) into
   * the job's result: raised to attempt + 1 unless it counts beyond it
   * already (a redelivery that knew of this run does). False while the job
   * has no result yet. Compare-and-set on the result, so a run finishing
   * meanwhile is not overwritten.
   */
  async countUnreportedRun(jobId: string, attempt: number, runId: string): Promise<boolean> {
    for (let tries = 0; tries < 5; tries++) {
      const stored = await this.storedResult(jobId);
      if (!stored) return false;
      // Its own write landed after all (only the ack was lost), or the count is past it already.
      if (stored.writeId?.endsWith(runWriteSuffix(runId)) || stored.result.attempts > attempt) return true;
      try {
        await this.writer.publish(resultSubject(jobId), encodeJson({ ...stored.result, attempts: attempt + 1 }), { expectLastSubjectSeq: stored.seq });
        return true;
      } catch (err) {
        if (!(err instanceof StreamWriteError && err.errCode === WRONG_LAST_SEQUENCE)) throw err;
      }
    }
    return false;
  }

  async getResult(jobId: string): Promise<JobResult | null> {
    return (await this.storedResult(jobId))?.result ?? null;
  }

  /** The job's result with where and when it was stored. */
  async storedResult(jobId: string): Promise<StoredResult | null> {
    const msg = await this.reader.last(streams.results, resultSubject(jobId));
    return msg ? { result: parseWith(JobResult, JSON.parse(decoder.decode(msg.data))), time: msg.time, seq: msg.seq, writeId: msg.header?.get("Nats-Msg-Id") || undefined } : null;
  }
}
