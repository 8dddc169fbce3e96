/**
 * The runner's pull credits over its lanes: one puller per lane, what each
 * lane is known to hold (lane-activity.ts), and which lanes the runner's
 * room is asked for, in what shares (the lane order, lane-order.ts) and
 * within which queue limits.
 */
import type { Puller } from "../platform/puller.js";
import { LaneActivity } from "./lane-activity.js";
import { MIN_SHARE, type LaneOrder } from "./lane-order.js";
import type { QueueLimits } from "./queue-limits.js";

export const WATCH_EXPIRES_MS = 10_000;
const SHARED_EXPIRES_MS = 1000;
/**
 * While a lower band waits: a request the higher band's lane cannot fill
 * (another supervisor took its jobs) holds the credits until it expires,
 * and a band hand-over waited out one (issue 15's bench: 3 bands at 0.56×
 * one band with 1 s).
 */
const HANDOVER_EXPIRES_MS = 100;

/** What the credits need of a lane's puller. */
export type LanePuller = Pick<Puller, "outstanding" | "pull" | "reset" | "close">;

export interface LanePullsOptions {
  laneOrder: LaneOrder;
  limits: Pick<QueueLimits, "caps">;
  /** The queue a lane belongs to, as its limits are kept. */
  queueOf(lane: string): string;
}

export class LanePulls {
  readonly #pullers = new Map<string, LanePuller>();
  readonly #activity = new LaneActivity();

  constructor(private readonly opts: LanePullsOptions) {}

  has(lane: string): boolean {
    return this.#pullers.has(lane);
  }

  add(lane: string, puller: LanePuller): void {
    this.#pullers.set(lane, puller);
  }

  /**
   * A job arrived from the lane: true when the credits should be shared
   * again now, not when a job ends: the lane woke up or ran dry, has more
   * waiting than it asked for, or used up its requests (a watch to renew).
   */
  delivered(lane: string, pending: number): boolean {
    const changed = this.#activity.delivered(lane, pending, Date.now());
    const asked = this.#pullers.get(lane)?.outstanding ?? 0;
    return changed || asked === 0 || pending > asked;
  }

  /** A pull request on the lane ended unfilled (or went silent): its credits are free, and the lane counts as dry. */
  ranDry(lane: string): void {
    this.#activity.ranDry(lane);
  }

  /** After a reconnect the server may have forgotten our pull requests. */
  reset(): void {
    for (const p of this.#pullers.values()) p.reset();
  }

  async close(): Promise<void> {
    await Promise.all([...this.#pullers.values()].map((p) => p.close()));
  }

  /**
   * Asks for up to `room` jobs not already asked for, from the lanes known
   * to have jobs waiting, and no more from each than it has waiting (unless
   * the room covers a full share for each). Only the best band among them
   * is pulled from: lower bands wait until it has no job left that is not
   * asked for. Within it the lane order shares the credits.
   *
   * While there is room (a free process, or a queue place while jobs run
   * short: pulled ahead, a busy pool has no free process, and an idle
   * tenant would wait for the backlog), every dry lane of that band or
   * above keeps a request open, outside the credits: a job there is noticed
   * at once, and the open request holds no credits a lane with work needs.
   * It asks for one job, or, while the caller may take jobs beyond its
   * room (`ahead`), for as many as its room (at least a share) as far as
   * the room left and those cover it: nine lanes with a trickle each, one
   * job a request, cost more throughput in pull requests than the bands
   * themselves (issue 15's bench, 3 bands × 3 tenants).
   */
  refill(room: number, ahead: number): void {
    const now = Date.now();
    const { laneOrder, limits, queueOf } = this.opts;
    const waiting = (lane: string) => this.#activity.waiting(lane, now);
    // A limited queue's credits go to its lanes with work. Its dry lanes are watched as any queue's,
    // outside the credits, but only while it has room: counted in them, a limit of 1 kept one lane
    // watched and the others never noticed. A watched job beyond the share is handed back (once: its
    // lane then has work).
    const caps = limits.caps([...this.#pullers].filter(([lane]) => waiting(lane) > 0).map(([lane, p]) => [queueOf(lane), p.outstanding]));
    const cap = (lane: string, n: number) => caps.cap(queueOf(lane), n);
    let best = Number.NEGATIVE_INFINITY;
    let outstanding = 0;
    for (const [lane, puller] of this.#pullers) {
      if (waiting(lane) === 0) continue;
      outstanding += puller.outstanding;
      // Only a lane with jobs not yet asked for holds lower bands back; nor does a queue at its limit.
      if (waiting(lane) > puller.outstanding && cap(lane, 1) > 0) best = Math.max(best, laneOrder.rank(lane));
    }
    const wants: [string, number][] = [];
    const dry: string[] = [];
    let lowerWaiting = false;
    let standing = 0;
    for (const [lane, puller] of this.#pullers) {
      if (laneOrder.rank(lane) < best) {
        lowerWaiting = true;
        continue;
      }
      const want = waiting(lane) - puller.outstanding;
      if (waiting(lane) > 0) {
        if (want > 0 && cap(lane, 1) > 0) wants.push([lane, want]);
      } else if (cap(lane, 1) > 0) {
        standing += puller.outstanding;
        if (puller.outstanding === 0) dry.push(lane);
      }
    }
    let credits = room - outstanding;
    // Room to spare beyond every lane's backlog: a lane with only a few jobs waiting is asked for a full
    // share, the rest open for its next jobs, rather than one request per job or two.
    const asked = wants.reduce((n, [, want]) => n + Math.max(want, MIN_SHARE), 0);
    if (asked <= credits - standing) for (const w of wants) w[1] = Math.max(w[1], MIN_SHARE);
    if (credits > 0 && wants.length > 0) {
      // Several lanes, or lower bands waiting: requests end soon if their jobs went elsewhere, so the
      // credits go back into the rotation, and a band hands over within HANDOVER_EXPIRES_MS.
      const expires = lowerWaiting ? HANDOVER_EXPIRES_MS : wants.length > 1 ? SHARED_EXPIRES_MS : WATCH_EXPIRES_MS;
      for (const [lane, n] of laneOrder.share(credits, wants)) {
        const k = caps.take(queueOf(lane), n);
        this.#pullers.get(lane)!.pull(k, expires);
        credits -= k;
      }
    }
    if (room <= 0) return;
    let spare = ahead > 0 ? credits + ahead - standing : 0;
    for (const lane of dry) {
      const n = spare >= MIN_SHARE ? Math.min(spare, Math.max(MIN_SHARE, room)) : 1;
      // Taken, not only looked at: dry lanes of one limited queue share its credits, not each ask for all of them.
      // At least the one job of a watch, even where the shares above used up a limited queue's credits.
      const k = Math.max(1, caps.take(queueOf(lane), n));
      spare -= k;
      this.#pullers.get(lane)!.pull(k, WATCH_EXPIRES_MS);
    }
  }
}
