/**
 * A queue's max_concurrency and rate_limit, held by every supervisor
 * serving it together, without a NATS round trip per job (docs/scheduling.md
 * "Global limits"). Each supervisor takes a share of a limit by its rank
 * among the live supervisors serving the queue (heartbeats), the shares
 * summing to the limit, and keeps within its share locally. A lowered share
 * applies at once; a raised one only once the live set has been stable for
 * a heartbeat period and a margin, so the others have seen a newcomer and
 * lowered theirs first. On top, a supervisor never takes more than the
 * limit less what the others last reported in use: a peer still above its
 * new, lowered share (its jobs run on), or one stopping with jobs still
 * running, holds the others back until it is within it.
 *
 * Remote compute leases are taken here too (compute/lease-limits.ts): a
 * supervisor's lease desk admits a lease as one of this supervisor's jobs.
 * As a gateway sends each lease call to any supervisor, every live
 * supervisor holds a share of a queue that a compute server serves.
 */
import type { Logger } from "pino";
import type { QueueLimits as Limits, QueueUse, WorkerInfo } from "../contract/index.js";
import { guard } from "../platform/guard.js";
import type { QueueLimitSample } from "../platform/metrics.js";

/** Beyond one heartbeat period: the newcomer's heartbeat has reached the others, and theirs (lowered) have come back. */
const RAISE_MARGIN_MS = 500;
/** How often shares are looked at again while a queue is limited: a peer gone, a raise that became due. */
const TICK_MS = 200;

export interface QueueLimitsOptions {
  workerId: string;
  /** This supervisor's heartbeat period (peers state their own). */
  heartbeatMs: number;
  limitsOf(queue: string): Limits;
  /** Live supervisors, this one included once its heartbeat is back. */
  live(): WorkerInfo[];
  /** Supervisors stopping: no share, but the jobs they still run count. */
  draining(): WorkerInfo[];
  /** A live compute server serves the queue: every live supervisor's lease desk takes its jobs, so each holds a share. */
  remoteServed?(queue: string): boolean;
  /** Jobs of the queue running that no live supervisor's heartbeat counts (remote leases whose supervisor has gone). */
  uncounted?(queue: string): number;
  /** A limited queue may have room again: pull. */
  onRoom(): void;
  /** In-hand or window counts changed: say so in a heartbeat soon. */
  onUse(): void;
  log: Logger;
}

/** One job of a queue taken by this supervisor, from its arrival until it ends. */
export interface Admission {
  readonly queue: string;
}

type Kind = "concurrency" | "rate";

const memberIds = (peers: readonly WorkerInfo[]): string =>
  peers
    .map((w) => w.worker_id)
    .sort()
    .join(" ");

interface QueueState {
  inHand: number;
  /** Admitted and not yet started: they count in the rate window until they start (or never do). */
  readonly pending: Set<Admission>;
  /** Start times within the rate window, in the order they started. */
  starts: number[];
  /** The shares in force; a queue seen for the first time starts at 0 (a newcomer takes nothing until stable). */
  readonly applied: Map<Kind, number>;
  members: string;
  stableSince: number;
}

export class QueueLimits {
  readonly #queues = new Map<string, QueueState>();
  readonly #startedAt = Date.now();
  #tick: NodeJS.Timeout | undefined;
  #wake: NodeJS.Timeout | undefined;
  #wakeTime = Number.POSITIVE_INFINITY;

  constructor(private readonly opts: QueueLimitsOptions) {}

  start(): void {
    this.#tick = setInterval(
      guard(this.opts.log, "queue limits", () => {
        if ([...this.#queues.keys()].some((q) => this.#limited(q) && this.credits(q) > 0)) this.opts.onRoom();
      }),
      TICK_MS,
    );
    this.#tick.unref();
  }

  stop(): void {
    clearInterval(this.#tick);
    clearTimeout(this.#wake);
  }

  /** Jobs of the queue this supervisor may still take now (pulls outstanding are the caller's to subtract). */
  credits(queue: string, now = Date.now()): number {
    const limits = this.opts.limitsOf(queue);
    // The common case, on every job and refill: no heartbeat scan for a queue without limits.
    if (limits.max_concurrency === undefined && !limits.rate_limit) return Number.POSITIVE_INFINITY;
    const state = this.#state(queue);
    let credits = Number.POSITIVE_INFINITY;
    if (limits.max_concurrency !== undefined) {
      const limit = Math.max(0, limits.max_concurrency - (this.opts.uncounted?.(queue) ?? 0));
      credits = this.#allowed(queue, state, "concurrency", limit, (u) => u.running, now) - state.inHand;
    }
    if (limits.rate_limit) {
      const inWindow = this.#windowCount(state, limits.rate_limit.per_ms, now);
      credits = Math.min(credits, this.#allowed(queue, state, "rate", limits.rate_limit.max, (u) => u.window_starts, now) - inWindow);
      if (credits <= 0 && state.starts.length > 0) this.#wakeAt(state.starts[0]! + limits.rate_limit.per_ms + 1);
    }
    return Math.max(0, credits);
  }

  /**
   * Per limited queue, what its lanes may still be asked for: its credits
   * less the pulls already open on its lanes (`outstanding`, one entry per
   * lane that counts). `cap` looks, `take` spends; unlimited queues are
   * never capped.
   */
  caps(outstanding: readonly (readonly [queue: string, pulls: number])[]): { cap(queue: string, n: number): number; take(queue: string, n: number): number } {
    const left = new Map<string, number>();
    const leftOf = (queue: string) => {
      let l = left.get(queue);
      if (l === undefined) {
        l = this.credits(queue) - outstanding.reduce((n, [q, pulls]) => n + (q === queue ? pulls : 0), 0);
        left.set(queue, l);
      }
      return l;
    };
    const cap = (queue: string, n: number) => Math.max(0, Math.min(n, leftOf(queue)));
    return {
      cap,
      take: (queue, n) => {
        const k = cap(queue, n);
        if (k > 0) left.set(queue, leftOf(queue) - k);
        return k;
      },
    };
  }

  /** Each limit set on these queues, with this supervisor's share and use, for metrics. */
  samples(queues: readonly string[], pendingOf: (queue: string) => number | undefined): QueueLimitSample[] {
    return queues.flatMap((queue) => {
      const { max_concurrency: conc, rate_limit: rate, max_pending: maxPending } = this.opts.limitsOf(queue);
      const use = this.useOf(queue);
      const out: QueueLimitSample[] = [];
      if (conc !== undefined) out.push({ queue, limit: "max_concurrency", value: conc, share: this.share(queue, "concurrency"), use: use.running });
      if (rate) out.push({ queue, limit: "rate_limit", value: rate.max, share: this.share(queue, "rate"), use: use.window_starts });
      if (maxPending !== undefined) out.push({ queue, limit: "max_pending", value: maxPending, use: pendingOf(queue) });
      return out;
    });
  }

  /** A job of the queue arrived: taken (and counted) if within this supervisor's share, else undefined (hand it back). */
  admit(queue: string): Admission | undefined {
    if (this.credits(queue) < 1) return undefined;
    const admission: Admission = { queue };
    const state = this.#state(queue);
    state.inHand++;
    if (this.opts.limitsOf(queue).rate_limit) state.pending.add(admission);
    if (this.#limited(queue)) this.opts.onUse();
    return admission;
  }

  /** The job got a process: its start counts in the rate window from now. */
  started(admission: Admission, at: number): void {
    const state = this.#queues.get(admission.queue);
    if (state?.pending.delete(admission)) state.starts.push(at);
  }

  /** The job ended, or never started (a start that never happened leaves the window too). */
  release(admission: Admission): void {
    const state = this.#queues.get(admission.queue);
    if (!state) return;
    state.inHand--;
    state.pending.delete(admission);
    if (this.#limited(admission.queue)) this.opts.onUse();
  }

  /** This supervisor's use of each limited queue, for its heartbeat. */
  use(): Record<string, QueueUse> {
    return Object.fromEntries([...this.#queues.keys()].filter((q) => this.#limited(q)).map((q) => [q, this.useOf(q)] as const));
  }

  useOf(queue: string): QueueUse {
    const state = this.#queues.get(queue);
    const per = this.opts.limitsOf(queue).rate_limit?.per_ms;
    if (!state) return { running: 0, window_starts: 0 };
    return { running: state.inHand, window_starts: per === undefined ? 0 : this.#windowCount(state, per, Date.now()) };
  }

  /**
   * A limit of the queue, above 0, gives this supervisor no share by its
   * rank (a limit below the number of supervisors sharing it). Not while a
   * newcomer waits to take its share, nor while the limit is used up.
   */
  shareless(queue: string): boolean {
    const { max_concurrency: conc, rate_limit: rate } = this.opts.limitsOf(queue);
    return (conc !== undefined && conc > 0 && this.#rankShare(queue, conc).target === 0) || (rate !== undefined && this.#rankShare(queue, rate.max).target === 0);
  }

  /** This supervisor's share in force of a queue's max_concurrency ("concurrency") or rate_limit ("rate"). */
  share(queue: string, kind: Kind): number | undefined {
    return this.#queues.get(queue)?.applied.get(kind);
  }

  #limited(queue: string): boolean {
    const limits = this.opts.limitsOf(queue);
    return limits.max_concurrency !== undefined || limits.rate_limit !== undefined;
  }

  /** min(share in force, limit − what the others last reported using). */
  #allowed(queue: string, state: QueueState, kind: Kind, limit: number, used: (u: QueueUse) => number, now: number): number {
    const { peers, target } = this.#rankShare(queue, limit);
    const members = memberIds(peers);
    if (state.members !== members) {
      state.members = members;
      state.stableSince = now;
    }
    const applied = state.applied.get(kind) ?? 0;
    let share = target;
    if (target > applied) {
      const settledAt = state.stableSince + Math.max(this.opts.heartbeatMs, ...peers.map((w) => w.heartbeat_ms)) + RAISE_MARGIN_MS;
      if (now < settledAt) {
        share = applied;
        this.#wakeAt(settledAt);
      }
    }
    state.applied.set(kind, share);
    // Whatever a supervisor reports it uses counts, member or not (its desk's leases, a queue it stopped serving).
    const others = [...this.opts.live(), ...this.opts.draining()].filter((w) => w.worker_id !== this.opts.workerId);
    const othersUse = others.reduce((n, w) => n + (w.queue_use?.[queue] ? used(w.queue_use[queue]) : 0), 0);
    return Math.min(share, limit - othersUse);
  }

  /** This supervisor's share of a limit by its rank among the queue's live members, and those members but itself. */
  #rankShare(queue: string, limit: number): { peers: WorkerInfo[]; target: number } {
    const peers = this.#peers(queue);
    const ids = [...peers.map((w) => w.worker_id), this.opts.workerId].sort();
    const rank = ids.indexOf(this.opts.workerId);
    return { peers, target: Math.floor(limit / ids.length) + (rank < limit % ids.length ? 1 : 0) };
  }

  #peers(queue: string): WorkerInfo[] {
    const remote = this.opts.remoteServed?.(queue) ?? false;
    return this.opts.live().filter((w) => w.worker_id !== this.opts.workerId && (remote || w.queues.includes(queue)));
  }

  /** The queue's counts; its live set is looked at (and its change timed) only where a limit is computed. */
  #state(queue: string): QueueState {
    let state = this.#queues.get(queue);
    if (!state) {
      // This supervisor's own start counts as a change of the live set: the others have not seen it yet.
      // `members` starts as the set first looked at, so that first look is no change of its own.
      state = { inHand: 0, pending: new Set(), starts: [], applied: new Map(), members: memberIds(this.#peers(queue)), stableSince: this.#startedAt };
      this.#queues.set(queue, state);
    }
    return state;
  }

  #windowCount(state: QueueState, perMs: number, now: number): number {
    let drop = 0;
    while (drop < state.starts.length && state.starts[drop]! <= now - perMs) drop++;
    if (drop > 0) state.starts.splice(0, drop);
    return state.starts.length + state.pending.size;
  }

  /** One timer for the earliest moment a limited queue gets room again (a raise due, a start leaving the window). */
  #wakeAt(at: number): void {
    if (at >= this.#wakeTime) return;
    clearTimeout(this.#wake);
    this.#wakeTime = at;
    this.#wake = setTimeout(
      guard(this.opts.log, "queue limits", () => {
        this.#wakeTime = Number.POSITIVE_INFINITY;
        this.opts.onRoom();
      }),
      Math.max(0, at - Date.now()),
    );
    this.#wake.unref();
  }
}
