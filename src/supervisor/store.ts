/**
 * Durable job state: records in the jobs KV bucket (status, owner, attempts)
 * and results in the results stream. Every write here is acknowledged by
 * JetStream before it resolves.
 */
import { headers as natsHeaders, type MsgHdrs, type NatsConnection } from "@nats-io/nats-core";
import { jetstream, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import {
  BosunError,
  JobResult,
  JobStatus,
  encodeJson,
  jobSubject,
  parseWith,
  resultSubject,
  streams,
  type JobEnvelope,
} from "../contract/index.js";

const decoder = new TextDecoder();

export class JobStore {
  readonly js: JetStreamClient;
  constructor(
    nc: NatsConnection,
    private readonly jsm: JetStreamManager,
    private readonly kv: KV,
  ) {
    this.js = jetstream(nc);
  }

  /** Creates the record; fails if the id exists (so a job is created once). */
  async create(record: JobStatus): Promise<void> {
    await this.kv.create(record.job_id, JSON.stringify(record));
  }

  put(record: JobStatus): Promise<number> {
    return this.kv.put(record.job_id, JSON.stringify(record));
  }

  async get(jobId: string): Promise<JobStatus | null> {
    const entry = await this.kv.get(jobId);
    if (!entry || entry.operation !== "PUT") return null;
    return parseWith(JobStatus, JSON.parse(entry.string()));
  }

  async require(jobId: string): Promise<JobStatus> {
    const record = await this.get(jobId);
    if (!record) throw new BosunError("not_found", `no job ${jobId}`);
    return record;
  }

  /**
   * Publishes one attempt of a job to its queue. The message id makes a
   * re-publish of the same attempt (a retried submit, a replayed retry) a no-op.
   */
  async enqueue(envelope: JobEnvelope, attemptOffset: number): Promise<void> {
    await this.js.publish(jobSubject(envelope.queue), encodeJson(envelope), {
      msgID: `${envelope.job_id}.${attemptOffset}`,
      headers: attemptHeaders(attemptOffset),
    });
  }

  async publishResult(result: JobResult): Promise<void> {
    await this.js.publish(resultSubject(result.job_id), encodeJson(result), { msgID: `${result.job_id}.${result.attempts}` });
  }

  async getResult(jobId: string): Promise<JobResult | null> {
    const msg = await this.jsm.direct.getMessage(streams.results, { last_by_subj: resultSubject(jobId) });
    return msg ? parseWith(JobResult, JSON.parse(decoder.decode(msg.data))) : null;
  }
}

/** Attempts already used before this message, carried in a header so the envelope stays immutable. */
export const ATTEMPT_OFFSET_HEADER = "Bosun-Attempt-Offset";

function attemptHeaders(offset: number): MsgHdrs {
  const h = natsHeaders();
  h.set(ATTEMPT_OFFSET_HEADER, String(offset));
  return h;
}
