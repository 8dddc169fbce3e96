/**
 * Heartbeats both ways: this supervisor's WorkerInfo goes out every few
 * seconds and on every pool change, and the latest WorkerInfo of every
 * other supervisor comes in, so any supervisor can tell which job types
 * and queues are served by someone alive.
 */
import type { NatsConnection, Subscription } from "@nats-io/nats-core";
import type { StreamReader } from "../platform/stream-reads.js";
import type { StreamWriter } from "../platform/stream-writer.js";
import type { Logger } from "pino";
import {
  encodeJson,
  heartbeatSubject,
  HEARTBEATS_WILDCARD,
  streams,
  WorkerInfo,
} from "../contract/index.js";

const decoder = new TextDecoder();
/** Pool changes come in bursts under load; one heartbeat per this many ms is enough. */
const MIN_GAP_MS = 250;
const MISSED_BEATS = 3;

interface Seen {
  info: WorkerInfo;
  seenAt: number;
}

export class Heartbeats {
  readonly #peers = new Map<string, Seen>();
  #sub: Subscription | undefined;
  #timer: NodeJS.Timeout | undefined;
  #pending: NodeJS.Timeout | undefined;
  #lastSent = 0;

  constructor(
    private readonly nc: NatsConnection,
    private readonly opts: { workerId: string; intervalMs: number; log: Logger; snapshot(): WorkerInfo },
  ) {}

  async start(reader: StreamReader): Promise<void> {
    this.#sub = this.nc.subscribe(HEARTBEATS_WILDCARD, {
      callback: (err, msg) => {
        if (!err) this.#record(msg.data, Date.now());
      },
    });
    await this.#loadStored(reader);
    this.publishNow();
    this.#timer = setInterval(() => this.publishNow(), this.opts.intervalMs);
  }

  /** Publishes soon, at most once per MIN_GAP_MS. */
  changed(): void {
    if (this.#pending) return;
    const wait = Math.max(0, this.#lastSent + MIN_GAP_MS - Date.now());
    this.#pending = setTimeout(() => this.publishNow(), wait);
  }

  /**
   * Publishes a heartbeat and waits until the stream has stored it: an
   * acknowledged write, which a node cut off from the cluster's majority
   * cannot get. The runner's outcome gate asks this before it takes jobs again.
   */
  async confirm(writer: StreamWriter): Promise<void> {
    await writer.publish(heartbeatSubject(this.opts.workerId), encodeJson(this.opts.snapshot()));
  }

  publishNow(): void {
    clearTimeout(this.#pending);
    this.#pending = undefined;
    this.#lastSent = Date.now();
    if (this.nc.isClosed()) return;
    this.nc.publish(heartbeatSubject(this.opts.workerId), encodeJson(this.opts.snapshot()));
  }

  /** Latest WorkerInfo of every supervisor heard from within three of its own heartbeat periods. */
  live(now = Date.now()): WorkerInfo[] {
    return [...this.#peers.values()].filter((s) => now - s.seenAt <= MISSED_BEATS * s.info.heartbeat_ms).map((s) => s.info);
  }

  /** Live supervisors that serve this type on this queue. */
  serversOf(type: string, queue: string): string[] {
    return this.live()
      .filter((w) => w.job_types.includes(type) && w.queues.includes(queue))
      .map((w) => w.worker_id);
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    clearTimeout(this.#pending);
    await this.#sub?.drain().catch(() => undefined);
  }

  #record(data: Uint8Array, seenAt: number): void {
    try {
      const info = WorkerInfo.parse(JSON.parse(decoder.decode(data)));
      this.#peers.set(info.worker_id, { info, seenAt });
    } catch (err) {
      this.opts.log.warn({ err }, "ignoring malformed heartbeat");
    }
  }

  async #loadStored(reader: StreamReader): Promise<void> {
    const info = await reader.jsm.streams.info(streams.heartbeats, { subjects_filter: HEARTBEATS_WILDCARD });
    const subjects = Object.keys(info.state.subjects ?? {});
    await Promise.all(
      subjects.map(async (subject) => {
        const msg = await reader.last(streams.heartbeats, subject);
        if (msg) this.#record(msg.data, msg.time.getTime());
      }),
    );
  }
}
