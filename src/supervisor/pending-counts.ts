/**
 * Backpressure (max_pending, issue 17): how many jobs wait in a queue, as
 * its lanes' consumers count them (the queue status's `pending`), read at
 * most every REFRESH_MS per queue and never once per submit. Between reads
 * the jobs this supervisor accepted are added, so a burst here cannot run
 * far past the limit on a stale count; other supervisors' bursts show at the
 * next read.
 */
import type { JetStreamManager } from "@nats-io/jetstream";
import { BosunError, laneConsumer, streams } from "../contract/index.js";
import type { LaneRegistry } from "../records/index.js";

const REFRESH_MS = 500;

interface Count {
  pending: number;
  readAt: number;
  reading?: Promise<void>;
}

export class PendingCounts {
  readonly #counts = new Map<string, Count>();

  constructor(
    private readonly jsm: JetStreamManager,
    private readonly lanes: LaneRegistry,
  ) {}

  /** Refuses (503 unavailable) `n` more jobs for a queue already at its max_pending; else counts them in. */
  async admit(queue: string, n: number, maxPending: number | undefined, countIn = true): Promise<void> {
    if (maxPending === undefined) return;
    let count = this.#counts.get(queue);
    if (!count) {
      count = { pending: 0, readAt: 0 };
      this.#counts.set(queue, count);
    }
    if (Date.now() - count.readAt >= REFRESH_MS) count.reading ??= this.#read(queue, count);
    // Only the first submit to a queue waits for a count; later ones take the last one read.
    if (count.readAt === 0) await count.reading;
    if (count.pending + n > maxPending) {
      throw new BosunError("unavailable", `queue "${queue}" has ${count.pending} jobs waiting, at its max_pending of ${maxPending}; retry later`, { queue, pending: count.pending, max_pending: maxPending });
    }
    if (countIn) count.pending += n;
  }

  /** A batch's jobs, by queue (undefined: an entry that will be refused anyway): all counted in, or none. */
  async admitBatch(queues: readonly (string | undefined)[], maxPendingOf: (queue: string) => number | undefined): Promise<void> {
    const perQueue = new Map<string, number>();
    for (const q of queues) if (q !== undefined) perQueue.set(q, (perQueue.get(q) ?? 0) + 1);
    const limited = [...perQueue].filter(([q]) => maxPendingOf(q) !== undefined);
    // Checked first for every queue, so a refusal of one counts none of the others in.
    for (const [queue, n] of limited) await this.admit(queue, n, maxPendingOf(queue), false);
    for (const [queue, n] of limited) this.#counts.get(queue)!.pending += n;
  }

  /** The queue's waiting jobs as last read (and accepted here since), if it was read. */
  last(queue: string): number | undefined {
    const count = this.#counts.get(queue);
    return count?.readAt ? count.pending : undefined;
  }

  async #read(queue: string, count: Count): Promise<void> {
    try {
      const infos = await Promise.all(this.lanes.matching(queue, undefined).map((lane) => this.jsm.consumers.info(streams.jobs, laneConsumer(lane.code)).catch(() => undefined)));
      count.pending = infos.reduce((n, info) => n + (info?.num_pending ?? 0), 0);
      count.readAt = Date.now();
    } finally {
      count.reading = undefined;
    }
  }
}
