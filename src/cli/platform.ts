/** `bosun workers`, `bosun queue`, `bosun ops get|set`: what an operator looks at and changes. */
import type { Command } from "commander";
import type { OpsFlags, OpsPatch, RateLimit } from "../contract/index.js";
import { CommandError, ExitCode } from "./errors.js";
import { withApi } from "./nats-request.js";
import { clientOptions, print, table, type ClientOptions } from "./output.js";

type FlagValue = boolean | number | string | RateLimit;
const flagText = (value: FlagValue): string => (typeof value === "object" ? `${value.max}/${value.per_ms}` : String(value));

const flagLines = (flags: OpsFlags) =>
  [
    `submissions_paused=${flags.submissions_paused}`,
    `compute_endpoints_enabled=${flags.compute_endpoints_enabled}`,
    ...Object.entries(flags.queues).flatMap(([q, f]) => Object.entries(f).map(([flag, value]) => `${q}.${flag}=${flagText(value)}`)),
  ].join("\n");

/** One assignment's value; undefined when it cannot be read (ranges are the API's to check). */
function flagValue(flag: string, text: string): FlagValue | null | undefined {
  if (flag === "submissions_paused" || flag === "compute_endpoints_enabled") return text === "true" ? true : text === "false" ? false : undefined;
  if (text === "null") return null;
  if (flag === "active_target") return text;
  if (flag === "rate_limit") {
    const m = /^(\d+)\/(\d+)$/.exec(text);
    return m ? { max: Number(m[1]), per_ms: Number(m[2]) } : undefined;
  }
  return /^\d+$/.test(text) ? Number(text) : undefined;
}

const USAGE = "use submissions_paused=true|false, compute_endpoints_enabled=true|false, QUEUE.active_target=TARGET|null, QUEUE.submissions_paused=true|false, QUEUE.max_concurrency=N|null, QUEUE.max_pending=N|null or QUEUE.rate_limit=MAX/PER_MS|null";

/** `submissions_paused=true default.submissions_paused=false reports.max_concurrency=3 reports.rate_limit=10/1000`; the API checks the numbers. */
function opsPatch(assignments: string[]): OpsPatch {
  const patch: OpsPatch = {};
  for (const assignment of assignments) {
    const match = /^(?:([A-Za-z0-9_-]+)\.)?(submissions_paused|compute_endpoints_enabled|active_target|max_concurrency|max_pending|rate_limit)=(.+)$/.exec(assignment);
    const [, queueName, flag, text] = match ?? [];
    const value = flag && text ? flagValue(flag, text) : undefined;
    const global = flag === "submissions_paused" || flag === "compute_endpoints_enabled";
    if (!flag || value === undefined || (!queueName && !global) || (queueName && flag === "compute_endpoints_enabled")) throw new CommandError(`cannot read "${assignment}": ${USAGE}`, ExitCode.usage);
    if (queueName) Object.assign(((patch.queues ??= {})[queueName] ??= {}), { [flag]: value });
    else Object.assign(patch, { [flag]: value });
  }
  return patch;
}

export function addPlatformCommands(program: Command): void {
  clientOptions(program.command("workers").description("live supervisors and their execution processes")).action(async (opts: ClientOptions) => {
    const { workers } = await withApi(opts.nats, (api) => api.workersList());
    print(opts.json, workers, () =>
      table(
        workers.map((w) => ({
          worker: w.worker_id,
          host: w.hostname,
          pool: `${w.busy_count} busy / ${w.idle_count} idle / ${w.pool_size} (${w.min_workers}-${w.max_workers})`,
          pids: w.processes.map((p) => `${p.pid}:${p.state}`).join(" "),
          queues: w.queues.join(","),
          supervision: w.supervision.decision,
        })),
      ),
    );
  });

  clientOptions(program.command("queue").description("per queue: pending, scheduled, running and dead jobs, and who reads it")).action(async (opts: ClientOptions) => {
    const { queues } = await withApi(opts.nats, (api) => api.queueStatus());
    print(opts.json, queues, () =>
      table(
        queues.map((q) => ({
          queue: q.queue,
          pending: q.pending,
          scheduled: q.scheduled,
          running: q.running,
          dead: q.dead,
          workers: q.consumers.workers.join(","),
        })),
      ),
    );
  });

  const ops = program.command("ops").description("the ops flags, read and changed live");
  clientOptions(ops.command("get").description("print the ops flags")).action(async (opts: ClientOptions) => {
    const flags = await withApi(opts.nats, (api) => api.opsGet());
    print(opts.json, flags, () => flagLines(flags));
  });
  clientOptions(
    ops
      .command("set")
      .description("change ops flags, e.g. submissions_paused=true, reports.submissions_paused=false, reports.max_concurrency=3, reports.rate_limit=10/1000, reports.max_pending=null")
      .argument("<assignments...>", "[QUEUE.]submissions_paused=true|false, QUEUE.max_concurrency|max_pending=N|null, QUEUE.rate_limit=MAX/PER_MS|null"),
  ).action(async (assignments: string[], opts: ClientOptions) => {
    const patch = opsPatch(assignments);
    const flags = await withApi(opts.nats, (api) => api.opsSet(patch));
    print(opts.json, flags, () => flagLines(flags));
  });
}
