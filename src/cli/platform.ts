/** `bosun workers`, `bosun queue`, `bosun ops get|set`: what an operator looks at and changes. */
import type { Command } from "commander";
import type { OpsFlags, OpsPatch } from "../contract/index.js";
import { CommandError, ExitCode } from "./errors.js";
import { withApi } from "./nats-request.js";
import { clientOptions, print, table, type ClientOptions } from "./output.js";

const flagLines = (flags: OpsFlags) =>
  [`submissions_paused=${flags.submissions_paused}`, ...Object.entries(flags.queues).map(([q, f]) => `${q}.submissions_paused=${f.submissions_paused}`)].join("\n");

/** `submissions_paused=true default.submissions_paused=false` */
function opsPatch(assignments: string[]): OpsPatch {
  const patch: OpsPatch = {};
  for (const assignment of assignments) {
    const match = /^(?:([A-Za-z0-9_-]+)\.)?submissions_paused=(true|false)$/.exec(assignment);
    if (!match) throw new CommandError(`cannot read "${assignment}": use submissions_paused=true|false or QUEUE.submissions_paused=true|false`, ExitCode.usage);
    const [, queueName, value] = match;
    if (queueName) (patch.queues ??= {})[queueName] = { submissions_paused: value === "true" };
    else patch.submissions_paused = value === "true";
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
      .description("change ops flags, e.g. submissions_paused=true or reports.submissions_paused=false")
      .argument("<assignments...>", "[QUEUE.]submissions_paused=true|false"),
  ).action(async (assignments: string[], opts: ClientOptions) => {
    const patch = opsPatch(assignments);
    const flags = await withApi(opts.nats, (api) => api.opsSet(patch));
    print(opts.json, flags, () => flagLines(flags));
  });
}
