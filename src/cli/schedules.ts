/** `bosun schedules list|get|create|delete|pause|resume|trigger`: recurring jobs (docs/scheduling.md). */
import { Option, type Command } from "commander";
import type { Schedule } from "../contract/index.js";
import { count, parsePayload } from "./args.js";
import { CommandError, ExitCode } from "./errors.js";
import { withApi } from "./nats-request.js";
import { clientOptions, print, table, type ClientOptions } from "./output.js";

interface CreateOptions extends ClientOptions {
  cron?: string;
  everyMs?: number;
  timezone?: string;
  queue?: string;
  misfire?: "run_once" | "skip";
  paused?: boolean;
}

const row = (s: Schedule) => ({
  schedule: s.schedule_id,
  when: s.cron !== undefined ? `${s.cron} (${s.timezone})` : `every ${s.every_ms} ms`,
  job: `${String(s.job.type)}@${String(s.job.queue ?? "default")}`,
  state: s.paused ? "paused" : "active",
  next_run: s.next_run_at ?? "",
  last_run: s.last_run_at ?? "",
  last_job: s.last_job_id ?? "",
});

export function addScheduleCommands(program: Command): void {
  const schedules = program.command("schedules").description("recurring jobs: cron (5 or 6 fields, a time zone) or every N ms, one job per tick");
  clientOptions(schedules.command("list").description("every schedule with its next and last run")).action(async (opts: ClientOptions) => {
    const { schedules: all } = await withApi(opts.nats, (api) => api.schedulesList());
    print(opts.json, all, () => table(all.map(row)));
  });
  clientOptions(schedules.command("get").description("one schedule").argument("<schedule_id>")).action(async (id: string, opts: ClientOptions) => {
    const s = await withApi(opts.nats, (api) => api.schedulesGet({ schedule_id: id }));
    print(opts.json, s, () => table([row(s)]));
  });
  clientOptions(
    schedules
      .command("create")
      .description("create or replace a schedule, e.g. bosun schedules create nightly report '{\"kind\":\"daily\"}' --cron '0 3 * * *' --timezone Europe/Paris")
      .argument("<schedule_id>")
      .argument("<type>", "the job type each tick submits")
      .argument("[payload]", "the job's payload as JSON")
      .option("--cron <expression>", "5 fields (minute first) or 6 (second first)")
      .addOption(new Option("--every-ms <ms>", "a tick every this many ms (instead of --cron)").argParser(count("--every-ms", 1)))
      .option("--timezone <tz>", "IANA time zone of the cron expression (default UTC)")
      .option("--queue <queue>", "the job's queue (default: default)")
      .addOption(new Option("--misfire <policy>", "ticks missed while no supervisor ran: run once on recovery, or skip").choices(["run_once", "skip"]))
      .option("--paused", "create it paused"),
  ).action(async (id: string, type: string, payloadText: string | undefined, opts: CreateOptions) => {
    if ((opts.cron === undefined) === (opts.everyMs === undefined)) throw new CommandError("give --cron or --every-ms (one of them)", ExitCode.usage);
    const spec = {
      schedule_id: id,
      ...(opts.cron !== undefined && { cron: opts.cron }),
      ...(opts.everyMs !== undefined && { every_ms: opts.everyMs }),
      ...(opts.timezone !== undefined && { timezone: opts.timezone }),
      ...(opts.misfire !== undefined && { misfire: opts.misfire }),
      ...(opts.paused && { paused: true }),
      job: { type, payload: parsePayload(payloadText), ...(opts.queue !== undefined && { queue: opts.queue }) },
    };
    const s = await withApi(opts.nats, (api) => api.schedulesCreate(spec));
    print(opts.json, s, () => table([row(s)]));
  });
  for (const [name, what] of [
    ["pause", "no ticks until resumed"],
    ["resume", "ticks again from now (paused ticks are not run)"],
  ] as const) {
    clientOptions(schedules.command(name).description(what).argument("<schedule_id>")).action(async (id: string, opts: ClientOptions) => {
      const s = await withApi(opts.nats, (api) => (name === "pause" ? api.schedulesPause({ schedule_id: id }) : api.schedulesResume({ schedule_id: id })));
      print(opts.json, s, () => table([row(s)]));
    });
  }
  clientOptions(schedules.command("trigger").description("run the schedule's job now, once").argument("<schedule_id>")).action(async (id: string, opts: ClientOptions) => {
    const reply = await withApi(opts.nats, (api) => api.schedulesTrigger({ schedule_id: id }));
    print(opts.json, reply, () => reply.job_id);
  });
  clientOptions(schedules.command("delete").description("delete a schedule").argument("<schedule_id>")).action(async (id: string, opts: ClientOptions) => {
    const reply = await withApi(opts.nats, (api) => api.schedulesDelete({ schedule_id: id }));
    print(opts.json, reply, () => `deleted ${reply.schedule_id}`);
  });
}
