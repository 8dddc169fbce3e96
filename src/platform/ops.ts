/**
 * The ops (cutover) flags, held in the ops KV bucket and watched live by
 * every gateway and supervisor: a change applies everywhere within the
 * watch's latency (milliseconds), without a restart.
 */
import type { NatsConnection, QueuedIterator } from "@nats-io/nats-core";
import { Kvm, KvWatchInclude, type KV, type KvWatchEntry } from "@nats-io/kv";
import type { Logger } from "pino";
import { buckets, opsKeys, type OpsFlags, type OpsPatch } from "../contract/index.js";

const QUEUE_KEY = /^queues\.([^.]+)\.submissions_paused$/;
const OPEN_RETRY_MS = 1000;

export class OpsFlagsView {
  #flags: OpsFlags = { submissions_paused: false, queues: {} };
  #watch: QueuedIterator<KvWatchEntry> | undefined;
  #retry: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(private readonly log: Logger) {}

  get flags(): OpsFlags {
    return structuredClone(this.#flags);
  }

  submissionsPaused(queue: string): boolean {
    return this.#flags.submissions_paused || this.#flags.queues[queue]?.submissions_paused === true;
  }

  /** Watches a bucket already open (a supervisor provisions it). */
  async watch(kv: KV): Promise<void> {
    const watch = (this.#watch = await kv.watch({ include: KvWatchInclude.LastValue }));
    void (async () => {
      for await (const entry of watch) this.#apply(entry);
    })().catch((err: unknown) => this.log.error({ err }, "ops flag watch ended"));
  }

  /** For gateways: opens the bucket when it exists, retrying until a supervisor has created it. */
  watchWhenReady(nc: NatsConnection): void {
    const attempt = () => {
      if (this.#stopped) return;
      new Kvm(nc)
        .open(buckets.ops)
        .then(async (kv) => {
          await kv.status();
          await this.watch(kv);
        })
        .catch(() => {
          this.#retry = setTimeout(attempt, OPEN_RETRY_MS);
        });
    };
    attempt();
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#retry);
    this.#watch?.stop();
  }

  #apply(entry: KvWatchEntry): void {
    const value = entry.operation === "PUT" && entry.string() === "true";
    if (entry.key === opsKeys.submissionsPaused) {
      this.#flags.submissions_paused = value;
    } else {
      const queue = QUEUE_KEY.exec(entry.key)?.[1];
      if (!queue) return;
      if (entry.operation === "PUT") this.#flags.queues[queue] = { submissions_paused: value };
      else delete this.#flags.queues[queue];
    }
    this.log.info({ flag: entry.key, value, operation: entry.operation }, "ops flag applied");
  }
}

/** Writes a validated patch, one key per flag. */
export async function writeOpsPatch(kv: KV, patch: OpsPatch): Promise<void> {
  if (patch.submissions_paused !== undefined) await kv.put(opsKeys.submissionsPaused, String(patch.submissions_paused));
  for (const [queue, flags] of Object.entries(patch.queues ?? {})) {
    await kv.put(opsKeys.queueSubmissionsPaused(queue), String(flags.submissions_paused));
  }
}
