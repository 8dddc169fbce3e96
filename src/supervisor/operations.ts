/**
 * What an operator asks a supervisor: the live workers, a recycle for one
 * of them, per-queue status from JetStream's own numbers, and the ops flags.
 */
import type { NatsConnection, Subscription } from "@nats-io/nats-core";
import { errors, headers as natsHeaders } from "@nats-io/nats-core";
import type { JetStreamManager } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import type { Logger } from "pino";
import { AckPolicy, DeliverPolicy } from "@nats-io/jetstream";
import {
  BosunError,
  controlSubject,
  decodeWith,
  encodeJson,
  laneConsumer,
  laneDeadFilter,
  laneScheduledFilter,
  parseWith,
  RecycleReply,
  RecycleRequest,
  streams,
  type OpsFlags,
  type OpsPatch,
  type QueueStatus,
  type WorkerInfo,
} from "../contract/index.js";
import { patchedFlags, writeOpsPatch, type OpsFlagsView } from "../platform/ops.js";
import { readReply } from "../platform/nats.js";
import type { Heartbeats } from "./heartbeat.js";
import type { Pool } from "../actors/pool/pool.js";
import { answer } from "./api.js";
import { onMessage } from "../platform/guard.js";
import type { Lane, LaneRegistry } from "../records/index.js";
import { AUTHORIZATION_HEADER, type Gate } from "../auth/index.js";

const CONTROL_TIMEOUT_MS = 3000;

export interface OperationsDeps {
  nc: NatsConnection;
  jsm: JetStreamManager;
  opsKv: KV;
  ops: OpsFlagsView;
  heartbeats: Heartbeats;
  lanes: LaneRegistry;
  pool: Pool;
  workerId: string;
  gate: Gate;
  log: Logger;
}

export class Operations {
  #control: Subscription | undefined;

  constructor(private readonly deps: OperationsDeps) {}

  /** Listens for commands addressed to this supervisor. */
  start(): void {
    const { nc, workerId, pool, log, gate } = this.deps;
    this.#control = nc.subscribe(controlSubject(workerId, "recycle"), {
      callback: onMessage(log, "recycle command", (msg) =>
        answer(
          msg,
          async () => {
            const req = await gate.admit("workers_recycle", msg.headers, () => decodeWith(RecycleRequest, msg.data));
            const target = pool.recycle(req.pid, req.thread_id);
            if (!target) {
              throw req.pid === undefined && req.thread_id === undefined
                ? new BosunError("conflict", `worker ${workerId} has no idle process to recycle`)
                : new BosunError("not_found", `worker ${workerId} has no ${req.thread_id === undefined ? `process ${req.pid}` : `thread ${req.thread_id}`}`);
            }
            log.info({ worker_id: workerId, ...target.logFields() }, "recycle requested");
            return { status: "recycle_requested", worker_id: workerId, pid: target.pid, ...(target.threadId !== undefined && { thread_id: target.threadId }) } satisfies RecycleReply;
          },
          log,
          "recycle",
        ),
      ),
    });
  }

  stop(): void {
    this.#control?.unsubscribe();
  }

  workers(): WorkerInfo[] {
    return this.deps.heartbeats.live().sort((a, b) => a.worker_id.localeCompare(b.worker_id));
  }

  /** Forwards to the supervisor named: only it can recycle its own processes. */
  async recycle(req: RecycleRequest, authorization: string | undefined): Promise<RecycleReply> {
    let reply;
    const headers = natsHeaders();
    // The named supervisor checks the caller's key again (its control subject is no way around the check).
    if (authorization) headers.set(AUTHORIZATION_HEADER, authorization);
    try {
      reply = await this.deps.nc.request(controlSubject(req.worker_id, "recycle"), encodeJson(req), { timeout: CONTROL_TIMEOUT_MS, headers });
    } catch (err) {
      if (err instanceof errors.RequestError && err.isNoResponders()) throw new BosunError("not_found", `no live worker ${req.worker_id}`);
      throw err;
    }
    return parseWith(RecycleReply, readReply(reply));
  }

  /**
   * Per queue, summed over its lanes: pending and running from each lane's
   * consumer, scheduled and dead from the lane's messages in those streams
   * (a cancelled delayed job's message is removed by the cancel, so it no
   * longer counts). The cost follows the lanes and the waiting jobs, never
   * the finished jobs kept.
   */
  async queues(): Promise<QueueStatus[]> {
    const byQueue = new Map<string, Lane[]>();
    for (const lane of this.deps.lanes.all()) byQueue.set(lane.queue, [...(byQueue.get(lane.queue) ?? []), lane]);
    const workers = this.workers();
    const statuses = await Promise.all(
      [...byQueue].map(async ([queue, lanes]) => {
        const counts = await Promise.all(lanes.map((lane) => this.#laneCounts(lane.code)));
        const sum = (k: keyof (typeof counts)[number]) => counts.reduce((n, c) => n + c[k], 0);
        const status: QueueStatus = {
          queue,
          pending: sum("pending"),
          pending_by_band: {
            h: counts.reduce((n, c, i) => n + (lanes[i]!.band === "h" ? c.pending : 0), 0),
            n: counts.reduce((n, c, i) => n + (lanes[i]!.band === "n" ? c.pending : 0), 0),
            l: counts.reduce((n, c, i) => n + (lanes[i]!.band === "l" ? c.pending : 0), 0),
          },
          scheduled: sum("scheduled"),
          running: sum("running"),
          dead: sum("dead"),
          consumers: {
            durable: laneConsumer(lanes.find((l) => l.tenant === null && l.band === "n")?.code ?? lanes[0]!.code),
            waiting_pulls: sum("waiting"),
            workers: workers.filter((w) => w.queues.includes(queue)).map((w) => w.worker_id),
          },
          limits: this.deps.ops.limits(queue),
          use: {
            running: workers.reduce((n, w) => n + (w.queue_use?.[queue]?.running ?? 0), 0),
            window_starts: workers.reduce((n, w) => n + (w.queue_use?.[queue]?.window_starts ?? 0), 0),
          },
        };
        return status;
      }),
    );
    return statuses.sort((a, b) => a.queue.localeCompare(b.queue));
  }

  async #laneCounts(lane: string): Promise<{ pending: number; running: number; waiting: number; scheduled: number; dead: number }> {
    const { jsm } = this.deps;
    const [consumer, scheduled, dead] = await Promise.all([
      jsm.consumers.info(streams.jobs, laneConsumer(lane)).catch(() => undefined),
      jsm.streams.info(streams.scheduled, { subjects_filter: laneScheduledFilter(lane) }),
      this.#countMatching(streams.dead, laneDeadFilter(lane)),
    ]);
    return {
      pending: consumer?.num_pending ?? 0,
      running: consumer?.num_ack_pending ?? 0,
      waiting: consumer?.num_waiting ?? 0,
      scheduled: Object.values(scheduled.state.subjects ?? {}).reduce((n, c) => n + c, 0),
      dead,
    };
  }

  /** Messages on a filter of a limits stream, counted by the server (a throwaway consumer's pending count). */
  async #countMatching(stream: string, filter: string): Promise<number> {
    const { jsm } = this.deps;
    const info = await jsm.consumers.add(stream, {
      filter_subject: filter,
      ack_policy: AckPolicy.None,
      deliver_policy: DeliverPolicy.All,
      inactive_threshold: 5_000_000_000,
      mem_storage: true,
    });
    await jsm.consumers.delete(stream, info.name).catch(() => undefined);
    return info.num_pending;
  }

  opsFlags(): OpsFlags {
    return this.deps.ops.flags;
  }

  /** Applies a patch and answers the flags as they now are (this supervisor's watch may lag by a moment). */
  async setOps(patch: OpsPatch): Promise<OpsFlags> {
    await writeOpsPatch(this.deps.opsKv, patch);
    return patchedFlags(this.deps.ops.flags, patch);
  }
}
