/**
 * The two event streams the gateway serves as server-sent events. Each is a
 * NATS subscription held for as long as the client stays connected.
 */
import type { Msg, NatsConnection } from "@nats-io/nats-core";
import {
  buckets,
  FinalRecord,
  FINAL_STATES,
  HEARTBEATS_WILDCARD,
  InterimRecord,
  JobEnvelope,
  jobSubject,
  kvKeySubject,
  resultSubject,
  scheduledSubject,
  WorkerInfo,
  type JobEvent,
  type JobStatus,
} from "../contract/index.js";
import { jetstreamManager } from "@nats-io/jetstream";
import { decodeStored, offsetOf, readSources, statusOf, type JobSources, type ParkedJob } from "../records/index.js";

const decoder = new TextDecoder();

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
 * Every change of one job (state changes and progress reports, in order)
 * until it ends. The job's own subjects are followed as core
 * subscriptions: its queued and scheduled messages, its interim record, its
 * final record. Each message updates the job's sources and the status is
 * put together from them as a read would (so it never goes back).
 */
export async function jobEvents(nc: NatsConnection, jobId: string, closed: AbortSignal): Promise<{ stream(first: JobStatus): AsyncGenerator<SseMessage>; close(): void }> {
  const jsm = await jetstreamManager(nc);
  const channel = new Channel<Partial<JobSources>>();
  const follow = (subject: string, read: (msg: Msg) => Partial<JobSources> | undefined) =>
    nc.subscribe(subject, {
      callback: (_err, msg) => {
        try {
          const update = read(msg);
          if (update) channel.push(update);
        } catch {
          // Not a message of this job's shape: nothing to show.
        }
      },
    });
  const parked = (msg: Msg): ParkedJob => ({ job: decodeStored(JobEnvelope, msg), offset: offsetOf((n) => msg.headers?.get(n) || undefined) });
  const subs = [
    follow(jobSubject(jobId), (msg) => ({ queued: parked(msg) })),
    follow(scheduledSubject(jobId), (msg) => ({ scheduled: parked(msg) })),
    follow(kvKeySubject(buckets.jobs, jobId), (msg) => (msg.data.length > 0 ? { interim: decodeStored(InterimRecord, msg) } : undefined)),
    follow(resultSubject(jobId), (msg) => ({ final: decodeStored(FinalRecord, msg) })),
  ];
  await nc.flush();
  const close = () => {
    channel.close();
    for (const sub of subs) sub.unsubscribe();
  };
  async function* stream(first: JobStatus): AsyncGenerator<SseMessage> {
    closed.addEventListener("abort", close);
    // What is stored now, so later messages are weighed against it (a read never goes back).
    const sources: JobSources = await readSources(jsm, jobId);
    let last = first;
    try {
      yield { event: "state", data: { type: "state", data: first } satisfies JobEvent };
      if (FINAL_STATES.has(first.state)) return;
      for await (const update of channel) {
        Object.assign(sources, update);
        const next = statusOf(sources);
        if (!next || (next.state === last.state && next.progress === last.progress && next.attempts === last.attempts)) continue;
        const event: JobEvent = { type: next.state === last.state ? "progress" : "state", data: next };
        yield { event: event.type, data: event };
        last = next;
        if (FINAL_STATES.has(next.state)) return;
      }
    } finally {
      closed.removeEventListener("abort", close);
      close();
    }
  }
  return { stream, close };
}

/** Heartbeats as they arrive: `{"type": "worker_heartbeat", "data": WorkerInfo}`. */
export async function* workerHeartbeats(nc: NatsConnection, closed: AbortSignal): AsyncGenerator<SseMessage> {
  const channel = new Channel<WorkerInfo>();
  const sub = nc.subscribe(HEARTBEATS_WILDCARD, {
    callback: (_err, msg) => {
      const parsed = WorkerInfo.safeParse(JSON.parse(decoder.decode(msg.data)));
      if (parsed.success) channel.push(parsed.data);
    },
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
