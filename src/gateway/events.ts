/**
 * The two event streams the gateway serves as server-sent events (and the
 * CLI's `bosun watch`). Each is a core NATS subscription held for as long as
 * the client stays connected: no JetStream consumer is made per stream, so
 * none is left behind when it closes. Every message is read through the
 * decode boundary: junk published on these subjects is dropped, never
 * thrown into nats.js's reader loop.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import { pino, type Logger } from "pino";
import {
  api,
  buckets,
  FINAL_STATES,
  HEARTBEATS_WILDCARD,
  JobResult,
  JobStatus,
  kvKeySubject,
  resultSubject,
  type JobEvent,
  type WorkerInfo,
} from "../contract/index.js";
import { onMessage, readInbound } from "../platform/guard.js";
import { HeartbeatReader } from "../platform/heartbeat-reader.js";
import { readReply } from "../platform/nats.js";

/** For callers without a log (the CLI's watch prints events, not log lines). */
const silent: Logger = pino({ level: "silent" });
const RESULT_GRACE_MS = 500;
const STATUS_TIMEOUT_MS = 5000;

interface SseMessage {
  event?: string;
  data: unknown;
}

/** A small push-to-pull channel: NATS callbacks push, the SSE writer iterates. */
class Channel<T> {
  readonly #items: T[] = [];
  #wake: (() => void) | undefined;
  #closed = false;
  push(item: T): void {
    if (this.#closed) return;
    this.#items.push(item);
    this.#wake?.();
  }
  close(): void {
    this.#closed = true;
    this.#wake?.();
  }
  async *[Symbol.asyncIterator](): AsyncGenerator<T> {
    while (true) {
      while (this.#items.length > 0) yield this.#items.shift()!;
      if (this.#closed) return;
      await new Promise<void>((resolve) => (this.#wake = resolve));
      this.#wake = undefined;
    }
  }
}

/**
 * Every change of one job's record (state changes and progress reports, in
 * order) until it ends; first its status as it stands, so the stream of a
 * job that has finished already ends at once. The subscriptions open before
 * that status is read, so no change between the two is missed. The result
 * backs the record up: a fast job's record is never written past "queued",
 * and a final record write is not acknowledged.
 */
export async function* jobEvents(nc: NatsConnection, jobId: string, closed: AbortSignal, log: Logger = silent): AsyncGenerator<SseMessage> {
  const channel = new Channel<{ record?: JobStatus; result?: JobResult }>();
  let last: JobStatus | undefined;
  const recordSubject = kvKeySubject(buckets.jobs, jobId);
  const records = nc.subscribe(recordSubject, {
    callback: onMessage(log, "job events", (msg) => {
      // A delete or purge marker has no record in it.
      if (msg.data.length === 0) return;
      const record = readInbound(JobStatus, msg.data, { log, source: "job record", subject: msg.subject });
      if (record?.job_id === jobId) channel.push({ record });
    }),
  });
  // A job that showed as running gets a final record right after its result: give it a
  // moment to arrive. A fast job that succeeded gets none; its result is the last word.
  const results = nc.subscribe(resultSubject(jobId), {
    callback: onMessage(log, "job events", (msg) => {
      const result = readInbound(JobResult, msg.data, { log, source: "job result", subject: msg.subject });
      if (result?.job_id !== jobId) return;
      const finalRecordFollows = last?.state === "running" || result.state !== "succeeded";
      if (finalRecordFollows) setTimeout(() => channel.push({ result }), RESULT_GRACE_MS).unref();
      else channel.push({ result });
    }),
  });
  const stop = () => channel.close();
  closed.addEventListener("abort", stop);
  try {
    const current = await currentStatus(nc, jobId, log);
    if (current) {
      last = current;
      yield { event: "state", data: { type: "state", data: current } satisfies JobEvent };
      if (FINAL_STATES.has(current.state)) return;
    }
    for await (const { record, result } of channel) {
      const next = record ?? (last && result ? { ...last, state: result.state, error: result.error, attempts: result.attempts, owner: null } : undefined);
      // Nothing new (the status read above may already show the change a message brings).
      if (!next) continue;
      if (last && next.state === last.state && next.progress === last.progress && (next.attempts === last.attempts || FINAL_STATES.has(next.state))) continue;
      const event: JobEvent = { type: last && last.state === next.state ? "progress" : "state", data: next };
      yield { event: event.type, data: event };
      last = next;
      if (FINAL_STATES.has(next.state)) return;
    }
  } finally {
    closed.removeEventListener("abort", stop);
    records.unsubscribe();
    results.unsubscribe();
  }
}

/** The job's status through the API (record and result together); undefined if it cannot be read now. */
async function currentStatus(nc: NatsConnection, jobId: string, log: Logger): Promise<JobStatus | undefined> {
  try {
    const reply = await nc.request(api.jobsGet, JSON.stringify({ job_id: jobId }), { timeout: STATUS_TIMEOUT_MS });
    const status = JobStatus.safeParse(readReply(reply));
    return status.success ? status.data : undefined;
  } catch (err) {
    log.warn({ err, job_id: jobId }, "job events: could not read the job's status; following live changes only");
    return undefined;
  }
}

/** Heartbeats as they arrive: `{"type": "worker_heartbeat", "data": WorkerInfo}`. */
export async function* workerHeartbeats(nc: NatsConnection, closed: AbortSignal, log: Logger): AsyncGenerator<SseMessage> {
  const channel = new Channel<WorkerInfo>();
  const reader = new HeartbeatReader(log);
  const sub = nc.subscribe(HEARTBEATS_WILDCARD, {
    callback: onMessage(log, "workers stream", (msg) => {
      const info = reader.read(msg.subject, msg.data);
      if (info) channel.push(info);
    }),
  });
  const stop = () => channel.close();
  closed.addEventListener("abort", stop);
  try {
    for await (const info of channel) yield { event: "worker_heartbeat", data: { type: "worker_heartbeat", data: info } };
  } finally {
    closed.removeEventListener("abort", stop);
    sub.unsubscribe();
  }
}
