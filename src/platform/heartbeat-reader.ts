/**
 * The decode boundary for heartbeats (`bosun.heartbeats.<worker_id>`), for
 * the supervisors' live-worker tracking and the gateway's workers stream.
 * Anyone who may publish there can send one, so a heartbeat counts only if
 * it is small, valid, names the worker its subject names, and is not one of
 * a flood from that worker. A stopping supervisor's heartbeats (header
 * `Bosun-Heartbeat: leaving`) are held to the same rules, except the rate:
 * the first may follow a regular one closely, and it must not be lost.
 */
import type { Logger } from "pino";
import {
  HEARTBEAT_LEAVING,
  HEARTBEAT_STATE_HEADER,
  HEARTBEATS_PREFIX,
  MAX_HEARTBEAT_BYTES,
  MAX_TRACKED_WORKERS,
  MIN_HEARTBEAT_GAP_MS,
  WorkerInfo,
} from "../contract/index.js";
import { logDropped, readInbound } from "./guard.js";

/** Whether a heartbeat's headers mark it as its worker's last (the worker is stopping). */
export const isLeaving = (headers: { get(name: string): string } | undefined): boolean => headers?.get(HEARTBEAT_STATE_HEADER) === HEARTBEAT_LEAVING;

export class HeartbeatReader {
  /** Worker id -> when its last accepted heartbeat was sent, for the rate limit. */
  readonly #lastAccepted = new Map<string, number>();

  constructor(private readonly log: Logger) {}

  /**
   * The heartbeat's WorkerInfo, or undefined (logged) when it does not count.
   * `at`: when it was sent or stored; `leaving`: see isLeaving().
   */
  read(subject: string, data: Uint8Array, at = Date.now(), leaving = false): WorkerInfo | undefined {
    const ctx = { log: this.log, source: "heartbeat", subject };
    const info = readInbound(WorkerInfo, data, ctx, { maxBytes: MAX_HEARTBEAT_BYTES });
    if (!info) return undefined;
    if (subject !== `${HEARTBEATS_PREFIX}${info.worker_id}`) {
      logDropped(ctx, `worker_id ${info.worker_id} is not the worker its subject names`);
      return undefined;
    }
    const last = this.#lastAccepted.get(info.worker_id);
    if (!leaving && last !== undefined && Math.abs(at - last) < MIN_HEARTBEAT_GAP_MS) {
      // Not a malformed message (a supervisor's timer and a pool change can meet): no warning.
      this.log.debug({ subject }, `heartbeats from one worker less than ${MIN_HEARTBEAT_GAP_MS} ms apart: ignored`);
      return undefined;
    }
    if (last === undefined && this.#lastAccepted.size >= MAX_TRACKED_WORKERS && !this.#forgetOldest(at)) {
      logDropped(ctx, `already tracking ${MAX_TRACKED_WORKERS} workers`);
      return undefined;
    }
    this.#lastAccepted.set(info.worker_id, at);
    return info;
  }

  /** Workers silent for a minute make room; false if every tracked one is recent. */
  #forgetOldest(now: number): boolean {
    let freed = false;
    for (const [worker, at] of this.#lastAccepted) {
      if (now - at > 60_000) {
        this.#lastAccepted.delete(worker);
        freed = true;
      }
    }
    return freed;
  }
}
