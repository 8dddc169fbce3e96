/**
 * Where remote compute servers' lease requests wait for a job. Each lane a
 * waiting server may take from (its queues, its target) gets a puller on the
 * lane's durable consumer, the same one supervisors of that target share,
 * and asks for as many jobs as the requests waiting for it want, with short
 * expiries. A job that arrives after its request ended (a request for
 * several answered with fewer leaves the rest of its pull open), or that no
 * waiting request takes (its type), is kept for the next request for up to
 * STASH_MS, then handed back as a new message with the same attempt
 * number: it costs no attempt, and it is never held long for a server
 * that has gone. So is one beyond its queue's limits: the desk asks for no
 * more than those allow (lease-limits.ts), but the supervisor's own runs
 * may have taken the credits meanwhile.
 */
import type { JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import type { Logger } from "pino";
import { streams } from "../contract/index.js";
import { JobMessage, Puller } from "../platform/puller.js";
import { ensureConsumer, laneConsumerConfig } from "../platform/topology.js";
import { readBack, type CancelRegistry, type JobStore, type Lane, type LaneRegistry, type ParkedJob } from "../records/index.js";
import type { LeaseLimits } from "./lease-limits.js";
import type { StoredServer } from "./servers.js";

/** One pull request's life on the server: short, so credits of a request that ended come back soon. */
const PULL_EXPIRES_MS = 1000;
/**
 * How long a request for several jobs that has one waits for the others
 * its delivery said are pending: they come in the same burst, or another
 * reader took them.
 */
const GATHER_MS = 5;
/** How long a delivered job no request took waits for the next one: a compute server's next lease call comes within ms. */
const STASH_MS = 250;

interface Stashed {
  lane: Lane;
  msg: JobMessage;
  parked: ParkedJob;
  timer: NodeJS.Timeout;
}

/** A delivery and its job as decoded here (undefined: malformed, for the lease path to terminate with its log line). */
export interface Delivered {
  msg: JobMessage;
  parked: ParkedJob | undefined;
}

interface Waiter {
  server: StoredServer;
  types: ReadonlySet<string> | undefined;
  /** Jobs it takes at most; it is answered once it has them, or once the lane has no more to give at once. */
  want: number;
  got: Delivered[];
  /** It has a job and more may come in the same burst: answered GATHER_MS from now at the latest. */
  gather(): void;
  resolve(): void;
}

const serves = (server: StoredServer, lane: Lane): boolean => lane.target === server.target && server.queues.includes(lane.queue);

export class LeaseDesk {
  readonly #waiters: Waiter[] = [];
  readonly #stash: Stashed[] = [];
  readonly #pullers = new Map<string, Promise<Puller | undefined>>();
  #stopped = false;

  constructor(
    private readonly nc: NatsConnection,
    private readonly jsm: JetStreamManager,
    private readonly store: JobStore,
    private readonly lanes: LaneRegistry,
    private readonly leaseMs: number,
    private readonly log: Logger,
    private readonly limits: LeaseLimits,
    private readonly cancels: CancelRegistry,
  ) {}

  start(): void {
    // A lane registered by a submit after a request began waiting is pulled from at once.
    this.lanes.onLane(() => this.#topUp());
    this.limits.whenRoom(() => this.#topUp());
  }

  /** Up to `want` jobs for this server: within waitMs for the first, and those that come with it. */
  take(server: StoredServer, types: readonly string[] | undefined, waitMs: number, want = 1): Promise<Delivered[]> {
    return new Promise((resolve) => {
      let gathering: NodeJS.Timeout | undefined;
      const waiter: Waiter = {
        server,
        types: types && new Set(types),
        want,
        got: [],
        gather: () => {
          gathering ??= setTimeout(() => waiter.resolve(), GATHER_MS);
        },
        resolve: () => {
          clearTimeout(timer);
          clearTimeout(gathering);
          const at = this.#waiters.indexOf(waiter);
          if (at >= 0) this.#waiters.splice(at, 1);
          resolve(waiter.got);
        },
      };
      // Jobs delivered before it came are its at once; it waits only when there are none.
      this.#fromStash(waiter);
      if (waiter.got.length > 0) return resolve(waiter.got);
      this.#waiters.push(waiter);
      // Read by resolve, which only runs after this line (a timer or a later delivery).
      const timer = setTimeout(() => waiter.resolve(), waitMs);
      this.#topUp();
    });
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    for (const waiter of [...this.#waiters]) waiter.resolve();
    await Promise.all([...this.#stash].map((stashed) => this.#handBack(stashed)));
    const pullers = await Promise.all(this.#pullers.values());
    await Promise.all(pullers.map((p) => p?.close()));
  }

  /** Asks each lane for as many jobs as requests still want from it, minus those already asked for. */
  #topUp(): void {
    if (this.#stopped) return;
    for (const lane of this.lanes.all()) {
      const wanted = this.#waiters.reduce((n, w) => n + (serves(w.server, lane) ? w.want - w.got.length : 0), 0);
      if (wanted === 0) continue;
      void this.#puller(lane).then((puller) => {
        if (!puller) return;
        // Queue limits: no more than the queue's credits left (lease-limits.ts).
        const missing = this.limits.pullable(lane.queue, puller, wanted - puller.outstanding);
        if (missing > 0) puller.pull(missing, PULL_EXPIRES_MS);
      });
    }
  }

  #puller(lane: Lane): Promise<Puller | undefined> {
    let puller = this.#pullers.get(lane.code);
    if (!puller) {
      const config = laneConsumerConfig(lane.code, this.leaseMs);
      puller = ensureConsumer(this.jsm, streams.jobs, config).then(
        () =>
          new Puller(this.nc, {
            stream: streams.jobs,
            consumer: config.durable_name,
            expiresMs: PULL_EXPIRES_MS,
            log: this.log,
            onJob: (msg) => void this.#deliver(lane, msg).catch((err: unknown) => this.log.error({ err, lane: lane.code }, "compute desk: a delivered job was not handled; it returns after its lease")),
            onCreditsReturned: () => this.#topUp(),
          }),
        (err: unknown) => {
          // Tried again with the next request.
          this.#pullers.delete(lane.code);
          this.log.warn({ err, lane: lane.code }, "could not open a lane for compute leases");
          return undefined;
        },
      );
      this.#pullers.set(lane.code, puller);
    }
    return puller;
  }

  async #deliver(lane: Lane, msg: JobMessage): Promise<void> {
    const parked = readBack.queued({ subject: msg.subject, data: msg.data, seq: msg.streamSeq, headers: { get: (name: string) => msg.header(name) ?? "" } }, this.log);
    const type = parked?.job.type;
    const waiter = this.#waiters
      .filter((w) => serves(w.server, lane) && (type === undefined || !w.types || w.types.has(type)))
      .sort((a, b) => this.#rank(a) - this.#rank(b))[0];
    // Queue limits: admitted here, released when its lease ends (lease-limits.ts).
    if (waiter && this.limits.admit(lane.queue, msg)) {
      waiter.got.push({ msg, parked });
      // Nothing more pending in the lane: no reason to wait for another.
      if (waiter.got.length >= waiter.want || msg.pending === 0) waiter.resolve();
      else waiter.gather();
      return;
    }
    if (!parked) return msg.term();
    const stashed: Stashed = { lane, msg, parked, timer: setTimeout(() => void this.#handBack(stashed), STASH_MS) };
    this.#stash.push(stashed);
  }

  /** Takes stashed jobs the waiter may have, oldest first, up to what it wants. */
  #fromStash(waiter: Waiter): void {
    for (const stashed of [...this.#stash]) {
      if (waiter.got.length >= waiter.want) return;
      if (!serves(waiter.server, stashed.lane) || (waiter.types && !waiter.types.has(stashed.parked.job.type))) continue;
      // Queue limits (lease-limits.ts): beyond them it stays stashed, and is handed back in time.
      if (!this.limits.admit(stashed.lane.queue, stashed.msg)) continue;
      waiter.got.push(this.#unstash(stashed));
    }
  }

  #unstash(stashed: Stashed): Stashed {
    clearTimeout(stashed.timer);
    const at = this.#stash.indexOf(stashed);
    if (at >= 0) this.#stash.splice(at, 1);
    return stashed;
  }

  /** Back in its lane behind the others, no attempt spent: no request came for it in time. */
  async #handBack(stashed: Stashed): Promise<void> {
    const { msg, parked } = this.#unstash(stashed);
    try {
      await this.store.handBack(msg, parked, { cancelled: this.cancels.has(parked.job.job_id) });
    } catch (err) {
      // Left to its lease it comes back counted as an attempt it never had; rare (the stream is electing a leader).
      this.log.warn({ err, job_id: parked.job.job_id }, "could not hand a job back from the compute desk");
    }
  }

  /** Waiters keep their order; a waiter restricted to types it names is asked last, so it does not take what others wait for. */
  #rank(w: Waiter): number {
    return this.#waiters.indexOf(w) + (w.types ? this.#waiters.length : 0);
  }
}
