/**
 * Where remote compute servers' lease requests wait for a job. Each lane a
 * waiting server may take from (its queues, its target) gets a puller on the
 * lane's durable consumer, the same one supervisors of that target share,
 * and asks for exactly as many jobs as there are requests waiting for it,
 * with short expiries: a job is never held for a server that has gone. A
 * job that arrives after its request ended, or that no waiting request takes
 * (its type), is handed back as a new message with the same attempt
 * number: it costs no attempt.
 */
import type { JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import type { Logger } from "pino";
import { streams } from "../contract/index.js";
import { JobMessage, Puller } from "../platform/puller.js";
import { ensureConsumer, laneConsumerConfig } from "../platform/topology.js";
import { readBack, type JobStore, type Lane, type LaneRegistry } from "../records/index.js";
import type { StoredServer } from "./servers.js";

/** One pull request's life on the server: short, so credits of a request that ended come back soon. */
const PULL_EXPIRES_MS = 1000;

interface Waiter {
  server: StoredServer;
  types: ReadonlySet<string> | undefined;
  resolve(msg: JobMessage | undefined): void;
}

const serves = (server: StoredServer, lane: Lane): boolean => lane.target === server.target && server.queues.includes(lane.queue);

export class LeaseDesk {
  readonly #waiters: Waiter[] = [];
  readonly #pullers = new Map<string, Promise<Puller | undefined>>();
  #stopped = false;

  constructor(
    private readonly nc: NatsConnection,
    private readonly jsm: JetStreamManager,
    private readonly store: JobStore,
    private readonly lanes: LaneRegistry,
    private readonly leaseMs: number,
    private readonly log: Logger,
  ) {}

  start(): void {
    // A lane registered by a submit after a request began waiting is pulled from at once.
    this.lanes.onLane(() => this.#topUp());
  }

  /** One job for this server within waitMs, or undefined. */
  take(server: StoredServer, types: readonly string[] | undefined, waitMs: number): Promise<JobMessage | undefined> {
    return new Promise((resolve) => {
      const waiter: Waiter = {
        server,
        types: types && new Set(types),
        resolve: (msg) => {
          clearTimeout(timer);
          const at = this.#waiters.indexOf(waiter);
          if (at >= 0) this.#waiters.splice(at, 1);
          resolve(msg);
        },
      };
      this.#waiters.push(waiter);
      // Read by resolve, which only runs after this line (a timer or a later delivery).
      const timer = setTimeout(() => waiter.resolve(undefined), waitMs);
      this.#topUp();
    });
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    for (const waiter of [...this.#waiters]) waiter.resolve(undefined);
    const pullers = await Promise.all(this.#pullers.values());
    await Promise.all(pullers.map((p) => p?.close()));
  }

  /** Asks each lane for as many jobs as requests wait for it, minus those already asked for. */
  #topUp(): void {
    if (this.#stopped) return;
    for (const lane of this.lanes.all()) {
      const wanted = this.#waiters.filter((w) => serves(w.server, lane)).length;
      if (wanted === 0) continue;
      void this.#puller(lane).then((puller) => {
        const missing = wanted - (puller?.outstanding ?? wanted);
        if (missing > 0) puller!.pull(missing, PULL_EXPIRES_MS);
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
    // A malformed message is the lease path's to terminate (it decodes it again there, with the log line).
    const type = parked?.job.type;
    const waiter = this.#waiters
      .filter((w) => serves(w.server, lane) && (type === undefined || !w.types || w.types.has(type)))
      .sort((a, b) => this.#rank(a) - this.#rank(b))[0];
    if (waiter) {
      waiter.resolve(msg);
      return;
    }
    if (!parked) return msg.term();
    try {
      await this.store.handBack(msg, parked);
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
