/**
 * The ops (cutover) flags, held in the ops KV bucket and watched live by
 * every gateway and supervisor: a change applies everywhere within the
 * watch's latency (milliseconds), without a restart.
 */
import type { NatsConnection, QueuedIterator } from "@nats-io/nats-core";
import { Kvm, KvWatchInclude, type KV, type KvWatchEntry } from "@nats-io/kv";
import type { Logger } from "pino";
import {
  buckets,
  DEFAULT_TARGET,
  NAME_PATTERN,
  opsKeys,
  QUEUE_LIMIT_NAMES,
  QueueLimits,
  type OpsFlags,
  type OpsPatch,
  type QueueLimitName,
} from "../contract/index.js";
import { forEachGuarded } from "./guard.js";

const QUEUE_KEY = /^queues\.([^.]+)\.([a-z_]+)$/;
const OPEN_RETRY_MS = 1000;

type QueueFlags = OpsFlags["queues"][string];

export class OpsFlagsView {
  #paused = false;
  #computeEnabled = true;
  /** A Map, not an object: a queue may be called `__proto__`. */
  readonly #queues = new Map<string, Partial<QueueFlags>>();
  readonly #listeners: (() => void)[] = [];
  #watch: QueuedIterator<KvWatchEntry> | undefined;
  #retry: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(private readonly log: Logger) {}

  get flags(): OpsFlags {
    return { submissions_paused: this.#paused, compute_endpoints_enabled: this.#computeEnabled, queues: Object.fromEntries([...this.#queues].map(([q, flags]) => [q, { ...flags, submissions_paused: flags.submissions_paused ?? false }])) };
  }

  submissionsPaused(queue: string): boolean {
    return this.#paused || this.#queues.get(queue)?.submissions_paused === true;
  }

  limits(queue: string): QueueLimits {
    const { submissions_paused: _, active_target: _target, ...limits } = this.#queues.get(queue) ?? {};
    return limits;
  }

  get computeEndpointsEnabled(): boolean {
    return this.#computeEnabled;
  }

  /** Where the queue's new submissions go (CONTRACT.md "Targets and ops flags"). */
  activeTarget(queue: string): string {
    return this.#queues.get(queue)?.active_target ?? DEFAULT_TARGET;
  }

  /** Called after every change applied (a limit raised must reach the runner without waiting for a job to end). */
  onChange(listener: () => void): void {
    this.#listeners.push(listener);
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
    const put = entry.operation === "PUT";
    if (entry.key === opsKeys.submissionsPaused) {
      this.#paused = put && entry.string() === "true";
    } else if (entry.key === opsKeys.computeEndpointsEnabled) {
      this.#computeEnabled = !put || entry.string() !== "false";
    } else {
      const [, queue, flag] = QUEUE_KEY.exec(entry.key) ?? [];
      if (!queue || !flag || !NAME_PATTERN.test(queue)) return;
      const flags = { ...this.#queues.get(queue) };
      if (flag === "submissions_paused") {
        if (put) flags.submissions_paused = entry.string() === "true";
        else delete flags.submissions_paused;
      } else if (flag === "active_target") {
        delete flags.active_target;
        const target = put ? entry.string() : undefined;
        if (target !== undefined && NAME_PATTERN.test(target)) flags.active_target = target;
        else if (target !== undefined) this.log.warn({ flag: entry.key }, "ops flag value is not valid; ignored");
      } else if (isLimitName(flag)) {
        delete flags[flag];
        // The bucket is wire too: a value no patch could have written is ignored (and said), never half-applied.
        const value = put ? readLimit(flag, entry.string()) : undefined;
        if (put && value === undefined) this.log.warn({ flag: entry.key }, "ops flag value is not valid; ignored");
        Object.assign(flags, value);
      } else return;
      // A queue is listed while any of its keys exists (an unpaused queue shows `false`, as before limits).
      if (flags.submissions_paused === undefined && flags.active_target === undefined && QUEUE_LIMIT_NAMES.every((l) => flags[l] === undefined)) this.#queues.delete(queue);
      else this.#queues.set(queue, flags);
    }
    this.log.info({ flag: entry.key, value: entry.operation === "PUT" ? entry.string() : null, operation: entry.operation }, "ops flag applied");
    for (const listener of this.#listeners) listener();
  }
}

const isLimitName = (flag: string): flag is QueueLimitName => (QUEUE_LIMIT_NAMES as readonly string[]).includes(flag);

function readLimit(flag: QueueLimitName, text: string): QueueLimits | undefined {
  try {
    const parsed = QueueLimits.safeParse({ [flag]: JSON.parse(text) });
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

/** Writes a validated patch, one key per flag; `null` deletes a limit's key. */
export async function writeOpsPatch(kv: KV, patch: OpsPatch): Promise<void> {
  if (patch.submissions_paused !== undefined) await kv.put(opsKeys.submissionsPaused, String(patch.submissions_paused));
  if (patch.compute_endpoints_enabled !== undefined) await kv.put(opsKeys.computeEndpointsEnabled, String(patch.compute_endpoints_enabled));
  for (const [queue, flags] of Object.entries(patch.queues ?? {})) {
    if (flags.active_target === null) await kv.delete(opsKeys.queueActiveTarget(queue));
    else if (flags.active_target !== undefined) await kv.put(opsKeys.queueActiveTarget(queue), flags.active_target);
    if (flags.submissions_paused !== undefined) await kv.put(opsKeys.queueSubmissionsPaused(queue), String(flags.submissions_paused));
    for (const limit of QUEUE_LIMIT_NAMES) {
      const value = flags[limit];
      if (value === null) await kv.delete(opsKeys.queueLimit(queue, limit));
      else if (value !== undefined) await kv.put(opsKeys.queueLimit(queue, limit), JSON.stringify(value));
    }
  }
}

/** The flags once a patch is applied: what a setter answers before its own watch has caught up. */
export function patchedFlags(flags: OpsFlags, patch: OpsPatch): OpsFlags {
  const queues = new Map(Object.entries(flags.queues));
  for (const [queue, change] of Object.entries(patch.queues ?? {})) {
    const next: QueueFlags = { ...(queues.get(queue) ?? { submissions_paused: false }) };
    if (change.submissions_paused !== undefined) next.submissions_paused = change.submissions_paused;
    if (change.active_target === null) delete next.active_target;
    else if (change.active_target !== undefined) next.active_target = change.active_target;
    for (const limit of QUEUE_LIMIT_NAMES) {
      const value = change[limit];
      if (value === null) delete next[limit];
      else if (value !== undefined) Object.assign(next, { [limit]: value });
    }
    queues.set(queue, next);
  }
  // Own properties by definition (no prototype setter), as for a queue called __proto__.
  return {
    submissions_paused: patch.submissions_paused ?? flags.submissions_paused,
    compute_endpoints_enabled: patch.compute_endpoints_enabled ?? flags.compute_endpoints_enabled,
    queues: Object.fromEntries(queues),
  };
}
