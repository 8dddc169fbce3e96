/**
 * The two event streams the gateway serves as server-sent events. Each is a
 * NATS subscription held for as long as the client stays connected.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import { Kvm } from "@nats-io/kv";
import {
  buckets,
  FINAL_STATES,
  HEARTBEAT_LEAVING,
  HEARTBEAT_STATE_HEADER,
  HEARTBEATS_WILDCARD,
  JobResult,
  JobStatus,
  parseWith,
  resultSubject,
  WorkerInfo,
  type JobEvent,
} from "../contract/index.js";

const decoder = new TextDecoder();
const RESULT_GRACE_MS = 500;

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
 * Every change of one job's record (state changes and progress reports, in
 * order) until it ends. The result stream backs the KV watch up: a fast job's
 * record is never written past "queued", and a final record write is not
 * acknowledged.
 */
export async function* jobEvents(nc: NatsConnection, jobId: string, closed: AbortSignal): AsyncGenerator<SseMessage> {
  const kv = await new Kvm(nc).open(buckets.jobs);
  const channel = new Channel<{ record?: JobStatus; result?: JobResult }>();
  const watch = await kv.watch({ key: jobId });
  let last: JobStatus | undefined;
  // A job that showed as running gets a final record right after its result: give it a
  // moment to arrive. A fast job that succeeded gets none; its result is the last word.
  const results = nc.subscribe(resultSubject(jobId), {
    callback: (_err, msg) => {
      const result = parseWith(JobResult, JSON.parse(decoder.decode(msg.data)));
      const finalRecordFollows = last?.state === "running" || result.state !== "succeeded";
      if (finalRecordFollows) setTimeout(() => channel.push({ result }), RESULT_GRACE_MS).unref();
      else channel.push({ result });
    },
  });
  void (async () => {
    for await (const entry of watch) if (entry.operation === "PUT") channel.push({ record: parseWith(JobStatus, entry.json()) });
  })();
  const stop = () => channel.close();
  closed.addEventListener("abort", stop);
  try {
    for await (const { record, result } of channel) {
      const next = record ?? (last && result ? { ...last, state: result.state, error: result.error, attempts: result.attempts, owner: null } : undefined);
      if (!next || (last && next.state === last.state && next.progress === last.progress && FINAL_STATES.has(next.state))) continue;
      const event: JobEvent = { type: last && last.state === next.state ? "progress" : "state", data: next };
      yield { event: event.type, data: event };
      last = next;
      if (FINAL_STATES.has(next.state)) return;
    }
  } finally {
    closed.removeEventListener("abort", stop);
    watch.stop();
    results.unsubscribe();
  }
}

/** Heartbeats as they arrive: `{"type": "worker_heartbeat", "data": WorkerInfo}`. */
export async function* workerHeartbeats(nc: NatsConnection, closed: AbortSignal): AsyncGenerator<SseMessage> {
  const channel = new Channel<WorkerInfo>();
  const sub = nc.subscribe(HEARTBEATS_WILDCARD, {
    callback: (_err, msg) => {
      // A stopping supervisor's last beat: it is no longer a live worker.
      if (msg.headers?.get(HEARTBEAT_STATE_HEADER) === HEARTBEAT_LEAVING) return;
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
