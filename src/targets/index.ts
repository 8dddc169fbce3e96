/**
 * Targets and cutover (CONTRACT.md "Targets and ops flags"): a target is a
 * named pool of supervisors (`--target`) and remote compute servers; each
 * queue's active target is a key of the ops bucket, read by every intake
 * when a job is submitted. GET /api/targets lists them, PUT …/active
 * switches a queue. docs/compute.md, "Targets and cutover".
 */
import type { JetStreamManager } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import type { Logger } from "pino";
import type { z } from "zod";
import { BosunError, buckets, DEFAULT_TARGET, name, opsKeys, type ComputeServer, type operations, type WorkerInfo } from "../contract/index.js";
import type { OpsFlagsView } from "../platform/ops.js";
import { lostRace } from "../platform/nats-errors.js";
import { readKvValue } from "../platform/stream-reads.js";

type Io<N extends keyof typeof operations> = [z.output<(typeof operations)[N]["request"]>, z.output<(typeof operations)[N]["response"]>];
type TargetInfo = Io<"targets_list">[1]["targets"][number];

/** What the targets list needs of an enrolled compute server. */
export type ServerSummary = Pick<ComputeServer, "server_id" | "target" | "queues">;

export interface TargetsDeps {
  jsm: JetStreamManager;
  opsKv: KV;
  ops: OpsFlagsView;
  /** The live supervisors' latest heartbeats. */
  live(): WorkerInfo[];
  /** The enrolled compute servers (default: none). */
  computeServers?(): ServerSummary[];
  log: Logger;
}

/** Compare-and-set rounds before a switch gives up on a key others keep changing. */
const CAS_TRIES = 3;
/** As the ops view reads the key: a value that is not a target name is no target. */
const StoredTarget = name("target");

export class Targets {
  constructor(private readonly deps: TargetsDeps) {}

  readonly api = {
    list: async (): Promise<Io<"targets_list">[1]> => ({ targets: this.#list() }),
    activate: (req: Io<"targets_activate">[0]): Promise<Io<"targets_activate">[1]> => this.#activate(req.target_id, req.queue),
  };

  /**
   * Every target something names: a live supervisor's, a compute server's,
   * or a queue's active one (a target switched to before its pool is up
   * still shows, with nobody in it).
   */
  #list(): TargetInfo[] {
    const { ops, live, computeServers = () => [] } = this.deps;
    const targets = new Map<string, { supervisors: Set<string>; servers: Set<string>; active_for: Set<string>; queues: Set<string> }>();
    const entry = (id: string) => {
      let t = targets.get(id);
      if (!t) targets.set(id, (t = { supervisors: new Set(), servers: new Set(), active_for: new Set(), queues: new Set() }));
      return t;
    };
    const members = [
      ...live().map((w) => ({ kind: "supervisors" as const, id: w.worker_id, target: w.target, queues: w.queues })),
      ...computeServers().map((s) => ({ kind: "servers" as const, id: s.server_id, target: s.target, queues: s.queues })),
    ];
    const served = new Set<string>();
    for (const member of members) {
      const t = entry(member.target);
      t[member.kind].add(member.id);
      for (const queue of member.queues) {
        t.queues.add(queue);
        served.add(queue);
      }
    }
    const switched = Object.entries(ops.flags.queues).flatMap(([queue, flags]) => (flags.active_target === undefined ? [] : [queue]));
    for (const queue of new Set([...served, ...switched])) entry(ops.activeTarget(queue)).active_for.add(queue);
    const sorted = (s: Set<string>) => [...s].sort();
    return [...targets]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([target_id, t]) => ({ target_id, supervisors: sorted(t.supervisors), servers: sorted(t.servers), active_for: sorted(t.active_for), queues: sorted(t.queues) }));
  }

  /**
   * Writes the queue's active target by compare-and-set, so `previous` is
   * the one this write replaced. Jobs already queued keep their lanes (the
   * old target's) and drain there; from now on each intake, as its watch
   * of the ops bucket shows the change (milliseconds), puts new jobs in the
   * new target's lanes: no job is written twice.
   */
  async #activate(target: string, queue: string): Promise<Io<"targets_activate">[1]> {
    const { jsm, opsKv, log } = this.deps;
    const key = opsKeys.queueActiveTarget(queue);
    for (let i = 0; i < CAS_TRIES; i++) {
      const stored = await readKvValue(jsm, buckets.ops, key);
      const previous = StoredTarget.safeParse(stored ? new TextDecoder().decode(stored.data) : undefined).data ?? DEFAULT_TARGET;
      try {
        if (stored) await opsKv.update(key, target, stored.seq);
        else await opsKv.create(key, target);
      } catch (err) {
        if (lostRace(err)) continue;
        throw err;
      }
      log.info({ queue, target, previous }, "queue's active target switched");
      return { target_id: target, queue, previous };
    }
    throw new BosunError("conflict", `queue ${queue}'s active target is being changed by someone else; try again`, { queue });
  }
}
