/**
 * The two event streams the gateway serves as server-sent events (and the
 * CLI's `bosun watch`). Each is a set of core NATS subscriptions held for as
 * long as the client stays connected: no JetStream consumer is made per
 * stream, so none is left behind when it closes. Every message is read
 * through the decode boundary (records/decode.ts, heartbeat-reader.ts):
 * junk published on these subjects is dropped, never thrown into nats.js's
 * reader loop.
 */
import type { Msg, NatsConnection } from "@nats-io/nats-core";
import { pino, type Logger } from "pino";
import {
  FINAL_STATES,
  HEARTBEATS_WILDCARD,
  isJobId,
  resultSubject,
  scheduledSubject,
  type JobEvent,
  type JobStatus,
  type WorkerInfo,
} from "../contract/index.js";
import { jetstreamManager } from "@nats-io/jetstream";
import { guard, onMessage } from "../platform/guard.js";
import { HeartbeatReader, isLeaving } from "../platform/heartbeat-reader.js";
import { interimSubject, readBack, readSources, statusOf, type JobSources } from "../records/index.js";

/** How often a parked (scheduled) job is checked for having become queued. */
const PARKED_POLL_MS = 1000;

/** For callers without a log (the CLI's watch prints events, not log lines). */
const silent: Logger = pino({ level: "silent" });

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
 * Every change of one job (state changes and progress reports, in order)
 * until it ends. The job's own subjects are followed as core
 * subscriptions: its queued and scheduled messages, its interim record, its
 * final record. Each message updates the job's sources and the status is
 * put together from them as a read would (so it never goes back). An id
 * Bosun never gave out has no subjects to follow (its status read is a 404).
 */
export async function jobEvents(
  nc: NatsConnection,
  jobId: string,
  closed: AbortSignal,
  log: Logger = silent,
): Promise<{ stream(first: JobStatus): AsyncGenerator<SseMessage>; close(): void }> {
  const jsm = await jetstreamManager(nc);
  const channel = new Channel<Partial<JobSources>>();
  const follow = (subject: string, read: (msg: Msg) => Partial<JobSources> | undefined) =>
    nc.subscribe(subject, {
      callback: onMessage(log, "job events", (msg) => {
        const update = read(msg);
        if (update) channel.push(update);
      }),
    });
  const only = <K extends keyof JobSources>(key: K, value: JobSources[K] | undefined): Partial<JobSources> | undefined => (value ? { [key]: value } : undefined);
  // Not the job's queued subject: a gateway's NATS user may not subscribe to bosun.jobs.> (the flow of every
  // job's payload, docs/security.md). The one change seen only there, a parked job becoming queued, is polled.
  const subs = isJobId(jobId)
    ? [
        follow(scheduledSubject(jobId), (msg) => only("scheduled", readBack.scheduled(msg, log))),
        follow(interimSubject(jobId), (msg) => only("interim", readBack.interim(msg, log))),
        follow(resultSubject(jobId), (msg) => only("final", readBack.final(msg, log))),
      ]
    : [];
  const close = () => {
    channel.close();
    for (const sub of subs) sub.unsubscribe();
  };
  await nc.flush().catch((err: unknown) => {
    close();
    throw err;
  });
  async function* stream(first: JobStatus): AsyncGenerator<SseMessage> {
    closed.addEventListener("abort", close);
    let parked: NodeJS.Timeout | undefined;
    try {
      // What is stored now, so later messages are weighed against it (a read never goes back).
      const sources: JobSources = await readSources(jsm, jobId, log);
      let last = first;
      yield { event: "state", data: { type: "state", data: first } satisfies JobEvent };
      if (FINAL_STATES.has(first.state)) return;
      parked = setInterval(
        guard(log, "job events poll", async () => {
          if (last.state !== "scheduled") return;
          const queued = (await readSources(jsm, jobId, log)).queued;
          if (queued) channel.push({ queued });
        }),
        PARKED_POLL_MS,
      );
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
      clearInterval(parked);
      closed.removeEventListener("abort", close);
      close();
    }
  }
  return { stream, close };
}

/** Heartbeats as they arrive: `{"type": "worker_heartbeat", "data": WorkerInfo}`. */
export async function* workerHeartbeats(nc: NatsConnection, closed: AbortSignal, log: Logger): AsyncGenerator<SseMessage> {
  const channel = new Channel<WorkerInfo>();
  const reader = new HeartbeatReader(log);
  const sub = nc.subscribe(HEARTBEATS_WILDCARD, {
    callback: onMessage(log, "workers stream", (msg) => {
      const leaving = isLeaving(msg.headers);
      const info = reader.read(msg.subject, msg.data, Date.now(), leaving);
      // A stopping supervisor's last beat: it is no longer a live worker.
      if (info && !leaving) channel.push(info);
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
