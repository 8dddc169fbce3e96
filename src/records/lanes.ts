/**
 * The lane registry (KV bucket bosun_lanes): lane code -> what the lane is.
 * A lane is written once, by the first submit that needs it, and every
 * process caches what it has seen forever (a lane never changes). Runners
 * watch it to learn the lanes of their queues.
 */
import type { KV, KvWatchEntry } from "@nats-io/kv";
import type { QueuedIterator } from "@nats-io/nats-core";
import type { Logger } from "pino";
import { followBucket } from "./bucket-watch.js";
import { z } from "zod";
import { bandOf, buckets, DEFAULT_TARGET, laneCode, NAME_PATTERN, type Band } from "../contract/index.js";
import { logDropped, readInbound } from "../platform/guard.js";
import { lostRace } from "../platform/nats-errors.js";

const name = z.string().regex(NAME_PATTERN);
export const Lane = z.object({
  code: z.string(),
  queue: name,
  target: name,
  band: z.enum(["h", "n", "l"]),
  tenant: name.nullable(),
});
export type Lane = z.infer<typeof Lane>;

/** The lane a new job goes to. The target is the queue's active one (issue 14); today always "default". */
export function laneFor(queue: string, tenant: string | null, priority: number, target = DEFAULT_TARGET): Lane {
  const band: Band = bandOf(priority);
  return { code: laneCode(queue, target, band, tenant), queue, target, band, tenant };
}

/** A lane's code is the hash of what it is: an entry that says otherwise was not written by Bosun. */
const describes = (lane: Lane, code: string): boolean => lane.code === code && lane.code === laneCode(lane.queue, lane.target, lane.band, lane.tenant);

export class LaneRegistry {
  readonly #lanes = new Map<string, Lane>();
  readonly #listeners = new Set<(lane: Lane) => void>();
  #watch: QueuedIterator<KvWatchEntry> | undefined;

  constructor(
    private readonly kv: KV,
    private readonly log: Logger,
  ) {}

  /** Loads every lane stored, then follows new ones. */
  async start(): Promise<void> {
    this.#watch = await followBucket(this.kv, this.log, "lane", (entry) => {
      if (entry.operation !== "PUT") return;
      const ctx = { log: this.log, source: "lane registry", subject: `$KV.${buckets.lanes}.${entry.key}`, seq: entry.revision };
      const lane = readInbound(Lane, entry.value, ctx);
      if (lane && !describes(lane, entry.key)) {
        logDropped(ctx, "its code is not the code of the lane it describes");
      } else if (lane) this.#learn(lane);
    });
  }

  stop(): void {
    this.#watch?.stop();
  }

  /** Makes sure the lane is registered before a job is written to it (one write per lane, ever). */
  async ensure(lane: Lane): Promise<void> {
    if (this.#lanes.has(lane.code)) return;
    try {
      await this.kv.create(lane.code, JSON.stringify(lane));
    } catch (err) {
      if (!lostRace(err)) throw err;
    }
    this.#learn(lane);
  }

  get(code: string): Lane | undefined {
    return this.#lanes.get(code);
  }

  /** A lane another process registered a moment ago is read from the bucket (the watch may not have brought it yet). */
  async lookup(code: string): Promise<Lane | undefined> {
    const known = this.#lanes.get(code);
    if (known) return known;
    const entry = await this.kv.get(code);
    if (!entry || entry.operation !== "PUT") return undefined;
    const lane = readInbound(Lane, entry.value, { log: this.log, source: "lane registry", subject: `$KV.${buckets.lanes}.${code}`, seq: entry.revision });
    if (!lane || !describes(lane, code)) return undefined;
    this.#learn(lane);
    return lane;
  }

  all(): Lane[] {
    return [...this.#lanes.values()];
  }

  /** Lanes matching a listing's queue and tenant filters (undefined: any). */
  matching(queue: string | undefined, tenant: string | undefined): Lane[] {
    return this.all().filter((l) => (queue === undefined || l.queue === queue) && (tenant === undefined || l.tenant === tenant));
  }

  onLane(listener: (lane: Lane) => void): void {
    this.#listeners.add(listener);
    for (const lane of this.#lanes.values()) listener(lane);
  }

  #learn(lane: Lane): void {
    if (this.#lanes.has(lane.code)) return;
    this.#lanes.set(lane.code, lane);
    for (const listener of this.#listeners) listener(lane);
  }
}
