/**
 * The ops (cutover) flags, held in the ops KV bucket and watched live by
 * every gateway and supervisor: a change applies everywhere within the
 * watch's latency (milliseconds), without a restart.
 */
import type { NatsConnection, QueuedIterator } from "@nats-io/nats-core";
import { Kvm, KvWatchInclude, type KV, type KvWatchEntry } from "@nats-io/kv";
import type { Logger } from "pino";
import { z } from "zod";
import {
  buckets,
  DEFAULT_TARGET,
  MaxConcurrency,
  MaxPending,
  name,
  NAME_PATTERN,
  opsKeys,
  QUEUE_LIMIT_NAMES,
  RateLimit,
  type OpsFlags,
  type OpsPatch,
  type QueueLimits,
} from "../contract/index.js";
import { forEachGuarded } from "./guard.js";

const QUEUE_KEY = /^queues\.([^.]+)\.([a-z_]+)$/;
const OPEN_RETRY_MS = 1000;

type QueueFlags = OpsFlags["queues"][string];

/** How a flag is stored: switches as `true`/`false`, limits as JSON, a target as its bare name. */
const Switch = z.enum(["true", "false"]).transform((v) => v === "true");
const json = <T extends z.ZodType>(schema: T) =>
  z
    .string()
    .transform((text, ctx) => {
      try {
        return JSON.parse(text) as unknown;
      } catch {
        ctx.addIssue({ code: "custom", message: "not JSON" });
        return z.NEVER;
      }
    })
    .pipe(schema);
const GlobalFlagValues = z.object({ submissions_paused: Switch, compute_endpoints_enabled: Switch }).partial();
const QueueFlagValues = z
  .object({
    submissions_paused: Switch,
    active_target: name("target"),
    max_concurrency: json(MaxConcurrency),
    rate_limit: json(RateLimit),
    max_pending: json(MaxPending),
  })
  .partial();

export class OpsFlagsView {
  #global: z.output<typeof GlobalFlagValues> = {};
  /** A Map, not an object: a queue may be called `__proto__`. */
  readonly #queues = new Map<string, Partial<QueueFlags>>();
  readonly #listeners: (() => void)[] = [];
  #watch: QueuedIterator<KvWatchEntry> | undefined;
  #retry: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(private readonly log: Logger) {}

  get flags(): OpsFlags {
    return {
      submissions_paused: this.#global.submissions_paused ?? false,
      compute_endpoints_enabled: this.computeEndpointsEnabled,
      queues: Object.fromEntries([...this.#queues].map(([q, flags]) => [q, { ...flags, submissions_paused: flags.submissions_paused ?? false }])),
    };
  }

  submissionsPaused(queue: string): boolean {
    return this.#global.submissions_paused === true || this.#queues.get(queue)?.submissions_paused === true;
  }

  limits(queue: string): QueueLimits {
    const { submissions_paused: _, active_target: _target, ...limits } = this.#queues.get(queue) ?? {};
    return limits;
  }

  get computeEndpointsEnabled(): boolean {
    return this.#global.compute_endpoints_enabled ?? true;
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
    const text = entry.operation === "PUT" ? entry.string() : undefined;
    const [, queue, flag] = QUEUE_KEY.exec(entry.key) ?? [];
    let value: object | undefined;
    if (Object.hasOwn(GlobalFlagValues.shape, entry.key)) {
      value = this.#read(GlobalFlagValues, entry.key, entry.key, text);
      this.#global = { ...this.#global, [entry.key]: undefined, ...value };
    } else if (queue && flag && NAME_PATTERN.test(queue) && Object.hasOwn(QueueFlagValues.shape, flag)) {
      value = this.#read(QueueFlagValues, entry.key, flag, text);
      const flags: Partial<QueueFlags> = { ...this.#queues.get(queue), [flag]: undefined, ...value };
      // A queue is listed while any of its keys exists (an unpaused queue shows `false`, as before limits).
      if (Object.values(flags).every((v) => v === undefined)) this.#queues.delete(queue);
      else this.#queues.set(queue, Object.fromEntries(Object.entries(flags).filter(([, v]) => v !== undefined)));
    } else return;
    if (value) this.log.info({ flag: entry.key, value: text ?? null, operation: entry.operation }, "ops flag applied");
    for (const listener of this.#listeners) listener();
  }

  /**
   * One flag's stored value, read (`{}` when deleted). The bucket is wire
   * too: a value no patch could have written reads as unset, with a
   * warning (undefined), never half-applied.
   */
  #read<S extends z.ZodObject>(schema: S, key: string, flag: string, text: string | undefined): Partial<z.output<S>> | undefined {
    if (text === undefined) return {};
    const parsed = schema.safeParse({ [flag]: text });
    if (parsed.success) return parsed.data as Partial<z.output<S>>;
    this.log.warn({ flag: key, value: text.slice(0, 100) }, "ops flag value is not valid; ignored");
    return undefined;
  }
}

/** Writes a validated patch, one key per flag; `null` deletes a limit's key (an active target's: back to `default`). */
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
