/**
 * What an operator asks a supervisor: the live workers, a recycle for one
 * of them, per-queue status from JetStream's own numbers, and the ops flags.
 */
import type { NatsConnection, Subscription } from "@nats-io/nats-core";
import { errors } from "@nats-io/nats-core";
import type { JetStreamManager } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import type { Logger } from "pino";
import {
  BosunError,
  controlSubject,
  DEAD_WILDCARD,
  decodeWith,
  encodeJson,
  parseWith,
  RecycleReply,
  RecycleRequest,
  SCHEDULED_WILDCARD,
  streams,
  type OpsFlags,
  type OpsPatch,
  type QueueStatus,
  type WorkerInfo,
} from "../contract/index.js";
import { writeOpsPatch, type OpsFlagsView } from "../platform/ops.js";
import { readReply } from "../platform/nats.js";
import type { Heartbeats } from "./heartbeat.js";
import type { Pool } from "./pool.js";
import { answer } from "./api.js";

const CONSUMER_PREFIX = "bosun_q_";
const CONTROL_TIMEOUT_MS = 3000;

export interface OperationsDeps {
  nc: NatsConnection;
  jsm: JetStreamManager;
  opsKv: KV;
  ops: OpsFlagsView;
  heartbeats: Heartbeats;
  pool: Pool;
  workerId: string;
  log: Logger;
}

export class Operations {
  #control: Subscription | undefined;

  constructor(private readonly deps: OperationsDeps) {}

  /** Listens for commands addressed to this supervisor. */
  start(): void {
    const { nc, workerId, pool, log } = this.deps;
    this.#control = nc.subscribe(controlSubject(workerId, "recycle"), {
      callback: (_err, msg) =>
        void answer(
          msg,
          async () => {
            const req = decodeWith(RecycleRequest, msg.data);
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
    });
  }

  stop(): void {
    this.#control?.unsubscribe();
  }

  workers(): WorkerInfo[] {
    return this.deps.heartbeats.live().sort((a, b) => a.worker_id.localeCompare(b.worker_id));
  }

  /** Forwards to the supervisor named: only it can recycle its own processes. */
  async recycle(req: RecycleRequest): Promise<RecycleReply> {
    let reply;
    try {
      reply = await this.deps.nc.request(controlSubject(req.worker_id, "recycle"), encodeJson(req), { timeout: CONTROL_TIMEOUT_MS });
    } catch (err) {
      if (err instanceof errors.RequestError && err.isNoResponders()) throw new BosunError("not_found", `no live worker ${req.worker_id}`);
      throw err;
    }
    return parseWith(RecycleReply, readReply(reply));
  }

  async queues(): Promise<QueueStatus[]> {
    const { jsm } = this.deps;
    const [scheduled, dead] = await Promise.all([
      this.#countBy(streams.scheduled, SCHEDULED_WILDCARD, 2),
      this.#countBy(streams.dead, DEAD_WILDCARD, 2),
    ]);
    const workers = this.workers();
    const statuses: QueueStatus[] = [];
    for await (const consumer of jsm.consumers.list(streams.jobs)) {
      if (!consumer.name.startsWith(CONSUMER_PREFIX)) continue;
      const queue = consumer.name.slice(CONSUMER_PREFIX.length);
      statuses.push({
        queue,
        pending: consumer.num_pending,
        scheduled: scheduled.get(queue) ?? 0,
        running: consumer.num_ack_pending,
        dead: dead.get(queue) ?? 0,
        consumers: {
          durable: consumer.name,
          waiting_pulls: consumer.num_waiting,
          workers: workers.filter((w) => w.queues.includes(queue)).map((w) => w.worker_id),
        },
      });
    }
    return statuses.sort((a, b) => a.queue.localeCompare(b.queue));
  }

  opsFlags(): OpsFlags {
    return this.deps.ops.flags;
  }

  /** Applies a patch and answers the flags as they now are (this supervisor's watch may lag by a moment). */
  async setOps(patch: OpsPatch): Promise<OpsFlags> {
    await writeOpsPatch(this.deps.opsKv, patch);
    const flags = this.deps.ops.flags;
    if (patch.submissions_paused !== undefined) flags.submissions_paused = patch.submissions_paused;
    Object.assign(flags.queues, patch.queues);
    return flags;
  }

  /** Messages per queue in a stream whose subjects are `bosun.<kind>.<queue>[...]`. */
  async #countBy(stream: string, filter: string, queueToken: number): Promise<Map<string, number>> {
    const info = await this.deps.jsm.streams.info(stream, { subjects_filter: filter });
    const counts = new Map<string, number>();
    for (const [subject, n] of Object.entries(info.state.subjects ?? {})) {
      const queue = subject.split(".")[queueToken]!;
      counts.set(queue, (counts.get(queue) ?? 0) + n);
    }
    return counts;
  }
}
