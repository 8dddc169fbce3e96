/**
 * Heartbeats both ways: this supervisor's WorkerInfo goes out every few
 * seconds and on every pool change, and the latest WorkerInfo of every
 * other supervisor comes in, so any supervisor can tell which job types
 * and queues are served by someone alive.
 */
import { headers, type NatsConnection, type Subscription } from "@nats-io/nats-core";
import type { JetStreamManager } from "@nats-io/jetstream";
import type { Logger } from "pino";
import {
  encodeJson,
  HEARTBEAT_LEAVING,
  HEARTBEAT_STATE_HEADER,
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
  #left = false;

  constructor(
    private readonly nc: NatsConnection,
    private readonly opts: { workerId: string; intervalMs: number; log: Logger; snapshot(): WorkerInfo },
  ) {}

  async start(jsm: JetStreamManager): Promise<void> {
    this.#sub = this.nc.subscribe(HEARTBEATS_WILDCARD, {
      callback: (err, msg) => {
        if (!err) this.#record(msg.data, Date.now(), msg.headers?.get(HEARTBEAT_STATE_HEADER));
      },
    });
    await this.#loadStored(jsm);
    this.publishNow();
    this.#timer = setInterval(() => this.publishNow(), this.opts.intervalMs);
  }

  /** Publishes soon, at most once per MIN_GAP_MS. */
  changed(): void {
    if (this.#pending) return;
    const wait = Math.max(0, this.#lastSent + MIN_GAP_MS - Date.now());
    this.#pending = setTimeout(() => this.publishNow(), wait);
  }

  publishNow(): void {
    clearTimeout(this.#pending);
    this.#pending = undefined;
    this.#lastSent = Date.now();
    if (this.#left || this.nc.isClosed()) return;
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

  /**
   * The last heartbeat, as this supervisor begins to stop: it serves
   * nothing from now on (jobs it still runs finish or are handed back).
   */
  leave(): void {
    if (this.#left) return;
    this.#left = true;
    clearInterval(this.#timer);
    clearTimeout(this.#pending);
    this.#peers.delete(this.opts.workerId);
    if (this.nc.isClosed()) return;
    const h = headers();
    h.set(HEARTBEAT_STATE_HEADER, HEARTBEAT_LEAVING);
    this.nc.publish(heartbeatSubject(this.opts.workerId), encodeJson(this.opts.snapshot()), { headers: h });
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    clearTimeout(this.#pending);
    await this.#sub?.drain().catch(() => undefined);
  }

  #record(data: Uint8Array, seenAt: number, state: string | undefined): void {
    try {
      const info = WorkerInfo.parse(JSON.parse(decoder.decode(data)));
      if (state === HEARTBEAT_LEAVING) {
        this.#peers.delete(info.worker_id);
        return;
      }
      this.#peers.set(info.worker_id, { info, seenAt });
    } catch (err) {
      this.opts.log.warn({ err }, "ignoring malformed heartbeat");
    }
  }

  async #loadStored(jsm: JetStreamManager): Promise<void> {
    const info = await jsm.streams.info(streams.heartbeats, { subjects_filter: HEARTBEATS_WILDCARD });
    const subjects = Object.keys(info.state.subjects ?? {});
    await Promise.all(
      subjects.map(async (subject) => {
        const msg = await jsm.direct.getMessage(streams.heartbeats, { last_by_subj: subject });
        if (msg) this.#record(msg.data, msg.time.getTime(), msg.header?.get(HEARTBEAT_STATE_HEADER));
      }),
    );
  }
}
