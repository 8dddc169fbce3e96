/**
 * Heartbeats both ways: this supervisor's WorkerInfo goes out every few
 * seconds and on every pool change, and the latest WorkerInfo of every
 * other supervisor comes in, so any supervisor can tell which job types
 * and queues are served by someone alive.
 */
import { headers, type NatsConnection, type Subscription } from "@nats-io/nats-core";
import type { JetStreamManager } from "@nats-io/jetstream";
import { readLast } from "../platform/stream-reads.js";
import type { StreamWriter } from "../platform/stream-writer.js";
import type { Logger } from "pino";
import {
  encodeJson,
  HEARTBEAT_LEAVING,
  HEARTBEAT_STATE_HEADER,
  heartbeatSubject,
  HEARTBEATS_WILDCARD,
  MAX_HEARTBEAT_BYTES,
  MAX_TRACKED_WORKERS,
  streams,
  type WorkerInfo,
} from "../contract/index.js";
import { guard, onMessage } from "../platform/guard.js";
import { HeartbeatReader, isLeaving } from "../platform/heartbeat-reader.js";

/** Pool changes come in bursts under load; one heartbeat per this many ms is enough. */
const MIN_GAP_MS = 250;
const MISSED_BEATS = 3;

interface Seen {
  info: WorkerInfo;
  seenAt: number;
}

export class Heartbeats {
  readonly #peers = new Map<string, Seen>();
  /** Peers whose heartbeats say they are stopping (never counted live). */
  readonly #draining = new Map<string, Seen>();
  #sub: Subscription | undefined;
  #timer: NodeJS.Timeout | undefined;
  #pending: NodeJS.Timeout | undefined;
  #lastSent = 0;
  #warnedSize = false;
  #left = false;
  readonly #reader: HeartbeatReader;

  constructor(
    private readonly nc: NatsConnection,
    private readonly opts: {
      workerId: string;
      intervalMs: number;
      log: Logger;
      snapshot(): WorkerInfo;
      writer: StreamWriter;
      /** Each heartbeat is an acknowledged write: whether it gets through says whether outcomes can be stored. */
      onWrite(write: Promise<unknown>): void;
    },
  ) {
    this.#reader = new HeartbeatReader(opts.log);
  }

  async start(jsm: JetStreamManager): Promise<void> {
    this.#sub = this.nc.subscribe(HEARTBEATS_WILDCARD, {
      callback: onMessage(this.opts.log, "heartbeat", (msg) => this.#record(msg.subject, msg.data, Date.now(), isLeaving(msg.headers))),
    });
    await this.#loadStored(jsm);
    this.publishNow();
    this.#timer = setInterval(guard(this.opts.log, "heartbeat timer", () => this.publishNow()), this.opts.intervalMs);
  }

  /** Publishes soon, at most once per MIN_GAP_MS. */
  changed(): void {
    if (this.#pending) return;
    const wait = Math.max(0, this.#lastSent + MIN_GAP_MS - Date.now());
    this.#pending = setTimeout(guard(this.opts.log, "heartbeat timer", () => this.publishNow()), wait);
  }

  /**
   * Publishes a heartbeat and waits until the stream has stored it: an
   * acknowledged write, which a node cut off from the cluster's majority
   * cannot get. The runner's outcome gate asks this before it takes jobs again.
   */
  async confirm(): Promise<void> {
    await this.opts.writer.publish(heartbeatSubject(this.opts.workerId), encodeJson(this.opts.snapshot()));
  }

  publishNow(): void {
    clearTimeout(this.#pending);
    this.#pending = undefined;
    this.#lastSent = Date.now();
    if (this.nc.isClosed()) return;
    if (this.#left) {
      this.#publishLeaving();
      return;
    }
    const data = encodeJson(this.opts.snapshot());
    if (data.byteLength > MAX_HEARTBEAT_BYTES && !this.#warnedSize) {
      // Every reader ignores it: this supervisor would look gone.
      this.#warnedSize = true;
      this.opts.log.error({ bytes: data.byteLength, limit: MAX_HEARTBEAT_BYTES }, "heartbeat is over the size limit; other processes ignore it");
    }
    this.opts.onWrite(this.opts.writer.publish(heartbeatSubject(this.opts.workerId), data));
  }

  /** Latest WorkerInfo of every supervisor heard from within three of its own heartbeat periods. */
  live(now = Date.now()): WorkerInfo[] {
    return [...this.#peers.values()].filter((s) => now - s.seenAt <= MISSED_BEATS * s.info.heartbeat_ms).map((s) => s.info);
  }

  /** A worker that does not answer the subjects its heartbeats promise is not live, whatever it sent. */
  forget(workerId: string): void {
    this.#peers.delete(workerId);
  }

  /** Live supervisors that serve this type on this queue. */
  serversOf(type: string, queue: string, target: string): string[] {
    return this.live()
      .filter((w) => w.job_types.includes(type) && w.queues.includes(queue) && w.target === target)
      .map((w) => w.worker_id);
  }

  /**
   * As this supervisor begins to stop: it serves nothing from now on, and
   * every heartbeat until stop() says so. They go on while it drains,
   * because the jobs it still runs count against their queues' limits
   * (`queue_use`) until they end.
   */
  leave(): void {
    if (this.#left) return;
    this.#left = true;
    this.#peers.delete(this.opts.workerId);
    this.publishNow();
  }

  async stop(): Promise<void> {
    // The last word of a leaver: what it still holds now (nothing, once drained).
    if (this.#left) this.publishNow();
    clearInterval(this.#timer);
    clearTimeout(this.#pending);
    await this.#sub?.drain().catch(() => undefined);
  }

  /** Supervisors stopping, heard from within three of their periods: they take nothing new, but their last jobs still run. */
  draining(now = Date.now()): WorkerInfo[] {
    return [...this.#draining.values()].filter((s) => now - s.seenAt <= MISSED_BEATS * s.info.heartbeat_ms).map((s) => s.info);
  }

  #publishLeaving(): void {
    const h = headers();
    h.set(HEARTBEAT_STATE_HEADER, HEARTBEAT_LEAVING);
    this.nc.publish(heartbeatSubject(this.opts.workerId), encodeJson(this.opts.snapshot()), { headers: h });
  }

  #record(subject: string, data: Uint8Array, seenAt: number, leaving: boolean): void {
    const info = this.#reader.read(subject, data, seenAt, leaving);
    if (!info) return;
    const [into, other] = leaving ? [this.#draining, this.#peers] : [this.#peers, this.#draining];
    other.delete(info.worker_id);
    if (into.size >= MAX_TRACKED_WORKERS && !into.has(info.worker_id)) {
      for (const [id, seen] of into) if (seenAt - seen.seenAt > MISSED_BEATS * seen.info.heartbeat_ms) into.delete(id);
    }
    into.set(info.worker_id, { info, seenAt });
  }

  async #loadStored(jsm: JetStreamManager): Promise<void> {
    const info = await jsm.streams.info(streams.heartbeats, { subjects_filter: HEARTBEATS_WILDCARD });
    // Spoofed heartbeats on many subjects must not turn start-up into a flood of reads.
    const subjects = Object.keys(info.state.subjects ?? {}).slice(0, MAX_TRACKED_WORKERS);
    await Promise.all(
      subjects.map(async (subject) => {
        const msg = await readLast(jsm, streams.heartbeats, subject);
        if (msg) this.#record(msg.subject, msg.data, msg.time.getTime(), isLeaving(msg.headers));
      }),
    );
  }
}
