/**
 * Durable job state: records in the jobs KV bucket (status, owner, attempts)
 * and results in the results stream. Writes go through one StreamWriter;
 * each acked write resolves only once JetStream has stored it.
 */
import type { JetStreamManager } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import {
  BosunError,
  buckets,
  FINAL_STATES,
  JobResult,
  JobStatus,
  encodeJson,
  jobSubject,
  kvKeySubject,
  parseWith,
  resultSubject,
  streams,
  type JobEnvelope,
} from "../contract/index.js";
import { StreamWriteError, type StreamWriter } from "../platform/stream-writer.js";

const decoder = new TextDecoder();
const WRONG_LAST_SEQUENCE = 10071;

/** Attempts already used before this message, carried in a header so the envelope stays immutable. */
export const ATTEMPT_OFFSET_HEADER = "Bosun-Attempt-Offset";

export class JobStore {
  constructor(
    private readonly writer: StreamWriter,
    private readonly jsm: JetStreamManager,
    private readonly kv: KV,
  ) {}

  /** Creates the record; fails with `conflict` if the id exists, so a job is created once. */
  async create(record: JobStatus): Promise<void> {
    try {
      await this.writer.publish(kvKeySubject(buckets.jobs, record.job_id), encodeJson(record), { expectLastSubjectSeq: 0 });
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

  /** For interim states (running, progress): a later acked write always follows. */
  putInterim(record: JobStatus): void {
    this.writer.publishUnacked(kvKeySubject(buckets.jobs, record.job_id), encodeJson(record));
  }

  async get(jobId: string): Promise<JobStatus | null> {
    const entry = await this.kv.get(jobId);
    if (!entry || entry.operation !== "PUT") return null;
    return parseWith(JobStatus, entry.json());
  }

  async require(jobId: string): Promise<JobStatus> {
    const record = await this.get(jobId);
    if (!record) throw new BosunError("not_found", `no job ${jobId}`);
    return record;
  }

  /**
   * The job's status. The final record write is not acked (the result is the
   * durable outcome), so a record still showing a live state defers to a result.
   */
  async status(jobId: string): Promise<JobStatus> {
    const record = await this.require(jobId);
    if (FINAL_STATES.has(record.state)) return record;
    const stored = await this.#resultMessage(jobId);
    if (!stored) return record;
    const { result, time } = stored;
    return { ...record, state: result.state, attempts: result.attempts, error: result.error, owner: null, finished_at: time.toISOString() };
  }

  /**
   * Publishes one attempt of a job to its queue. The message id makes a
   * re-publish of the same attempt (a retried submit, a replayed retry) a no-op.
   */
  async enqueue(envelope: JobEnvelope, attemptOffset: number): Promise<void> {
    await this.writer.publish(jobSubject(envelope.queue), encodeJson(envelope), {
      msgId: `${envelope.job_id}.${attemptOffset}`,
      headers: { [ATTEMPT_OFFSET_HEADER]: String(attemptOffset) },
    });
  }

  async publishResult(result: JobResult): Promise<void> {
    await this.writer.publish(resultSubject(result.job_id), encodeJson(result), { msgId: `${result.job_id}.${result.attempts}` });
  }

  async getResult(jobId: string): Promise<JobResult | null> {
    return (await this.#resultMessage(jobId))?.result ?? null;
  }

  async #resultMessage(jobId: string): Promise<{ result: JobResult; time: Date } | null> {
    const msg = await this.jsm.direct.getMessage(streams.results, { last_by_subj: resultSubject(jobId) });
    return msg ? { result: parseWith(JobResult, JSON.parse(decoder.decode(msg.data))), time: msg.time } : null;
  }
}
