/**
 * The ops (cutover) flags, held in the ops KV bucket and watched live by
 * every gateway and supervisor: a change applies everywhere within the
 * watch's latency (milliseconds), without a restart.
 */
import type { NatsConnection, QueuedIterator } from "@nats-io/nats-core";
import { Kvm, KvWatchInclude, type KV, type KvWatchEntry } from "@nats-io/kv";
import type { Logger } from "pino";
import { buckets, NAME_PATTERN, opsKeys, type OpsFlags, type OpsPatch } from "../contract/index.js";
import { forEachGuarded } from "./guard.js";

const QUEUE_KEY = /^queues\.([^.]+)\.submissions_paused$/;
const OPEN_RETRY_MS = 1000;

export class OpsFlagsView {
  #paused = false;
  /** A Map, not an object: a queue may be called `__proto__`. */
  readonly #queues = new Map<string, boolean>();
  #watch: QueuedIterator<KvWatchEntry> | undefined;
  #retry: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(private readonly log: Logger) {}

  get flags(): OpsFlags {
    return { submissions_paused: this.#paused, queues: Object.fromEntries([...this.#queues].map(([q, paused]) => [q, { submissions_paused: paused }])) };
  }

  submissionsPaused(queue: string): boolean {
    return this.#paused || this.#queues.get(queue) === true;
  }

  /** Watches a bucket already open (a supervisor provisions it). */
  async watch(kv: KV): Promise<void> {
    const watch = (this.#watch = await kv.watch({ include: KvWatchInclude.LastValue }));
    void forEachGuarded(watch, this.log, "ops flag watch", (entry) => this.#apply(entry));
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
      this.#paused = value;
    } else {
      const queue = QUEUE_KEY.exec(entry.key)?.[1];
      if (!queue || !NAME_PATTERN.test(queue)) return;
      if (entry.operation === "PUT") this.#queues.set(queue, value);
      else this.#queues.delete(queue);
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
