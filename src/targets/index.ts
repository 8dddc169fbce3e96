/**
 * Targets and cutover (CONTRACT.md "Targets and ops flags"). A target is a
 * pool of supervisors (`--target`) and compute servers; each queue's active
 * target is an ops flag (`queues.<queue>.active_target`). A submit puts its
 * job in the lane of the queue's active target, and a job keeps its lane for
 * life, so switching a queue moves only new submissions: jobs already
 * queued for the old target drain there, and no job is written twice.
 */
import type { KV } from "@nats-io/kv";
import type { z } from "zod";
import { DEFAULT_TARGET, type operations, type WorkerInfo } from "../contract/index.js";
import { writeOpsPatch, type OpsFlagsView } from "../platform/ops.js";

type Io<N extends keyof typeof operations> = [z.output<(typeof operations)[N]["request"]>, z.output<(typeof operations)[N]["response"]>];

export interface TargetsDeps {
  opsKv: KV;
  ops: OpsFlagsView;
  /** Live supervisors, from their heartbeats. */
  supervisors(): WorkerInfo[];
  /** Compute servers seen lately. */
  servers(): { server_id: string; target: string; queues: string[] }[];
}

export class Targets {
  constructor(private readonly deps: TargetsDeps) {}

  readonly api = {
    list: async (): Promise<Io<"targets_list">[1]> => {
      const targets = new Map<string, { supervisors: string[]; servers: string[]; active_for: string[]; queues: Set<string> }>();
      const entry = (id: string) => {
        let t = targets.get(id);
        if (!t) targets.set(id, (t = { supervisors: [], servers: [], active_for: [], queues: new Set() }));
        return t;
      };
      entry(DEFAULT_TARGET);
      for (const w of this.deps.supervisors()) {
        const t = entry(w.target);
        t.supervisors.push(w.worker_id);
        for (const q of w.queues) t.queues.add(q);
      }
      for (const s of this.deps.servers()) {
        const t = entry(s.target);
        t.servers.push(s.server_id);
        for (const q of s.queues) t.queues.add(q);
      }
      const queues = new Set([...targets.values()].flatMap((t) => [...t.queues]).concat(Object.keys(this.deps.ops.flags.queues)));
      for (const q of queues) entry(this.deps.ops.activeTarget(q)).active_for.push(q);
      return {
        targets: [...targets]
          .sort(([a], [b]) => a.localeCompare(b))
          .map(([target_id, t]) => ({ target_id, supervisors: t.supervisors.sort(), servers: t.servers.sort(), active_for: t.active_for.sort(), queues: [...t.queues].sort() })),
      };
    },
    activate: async (req: Io<"targets_activate">[0]): Promise<Io<"targets_activate">[1]> => {
      const previous = this.deps.ops.activeTarget(req.queue);
      // The default is no key at all: a queue switched back reads as it did before any switch.
      await writeOpsPatch(this.deps.opsKv, { queues: { [req.queue]: { active_target: req.target_id === DEFAULT_TARGET ? null : req.target_id } } });
      return { target_id: req.target_id, queue: req.queue, previous };
    },
  };
}
