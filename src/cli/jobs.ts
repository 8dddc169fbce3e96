/**
 * `bosun submit`, `status`, `watch`, `result`, `cancel`, `retry` (one job at a
 * time) and `bosun jobs` (a listing), all through the typed client over NATS.
 */
import { Option, type Command } from "commander";
import type { BosunClient } from "../client/index.js";
import { JobState, MAX_WAIT_MS, type JobResult, type JobStatus } from "../contract/index.js";
import { count, parsePayload } from "./args.js";
import { withApi } from "./nats-request.js";
import { clientOptions, print, table, type ClientOptions } from "./output.js";
import { jobProgress, statusLine } from "./progress.js";

const WAIT_DEFAULT_MS = 60_000;
/** `bosun watch` follows a job for at most this long (a day). */
const WATCH_MS = 24 * 3600 * 1000;
/** How long a finished job's last event may trail its result. */
const LAST_EVENT_GRACE_MS = 2000;

interface SubmitOptions extends ClientOptions {
  queue?: string;
  wait?: boolean;
  waitMs?: number;
  maxAttempts?: number;
  timeoutMs?: number;
}

export function addJobCommands(program: Command): void {
  clientOptions(
    program
      .command("submit")
      .description("submit one job and print the reply (with --wait, the result once it finishes)")
      .argument("<type>", "job type, e.g. echo")
      .argument("[payload]", "the payload as JSON", undefined)
      .option("--queue <queue>", "queue (default: default)")
      .option("--wait", `wait for the result (up to ${WAIT_DEFAULT_MS / 1000} s)`)
      .addOption(new Option("--wait-ms <ms>", `wait up to this long for the result (at most ${MAX_WAIT_MS})`).argParser(count("--wait-ms")))
      .addOption(new Option("--max-attempts <n>", "attempts before the job is dead").argParser(count("--max-attempts")))
      .addOption(new Option("--timeout-ms <ms>", "kill the run past this").argParser(count("--timeout-ms"))),
  ).action(async (type: string, payloadText: string | undefined, opts: SubmitOptions) => {
    const waitMs = opts.waitMs ?? (opts.wait ? WAIT_DEFAULT_MS : undefined);
    const body = {
      type,
      payload: parsePayload(payloadText),
      ...(opts.queue && { queue: opts.queue }),
      ...(opts.maxAttempts !== undefined && { max_attempts: opts.maxAttempts }),
      ...(opts.timeoutMs !== undefined && { timeout_ms: opts.timeoutMs }),
    };
    const reply = await withApi(opts.nats, async (api) => {
      const accepted = await api.submit(body);
      if (waitMs === undefined) return accepted;
      // The result on stdout; the progress on stderr (a bar on a terminal), so a pipe gets the result alone.
      const result = await follow(api, accepted.job_id, Math.min(waitMs, MAX_WAIT_MS), opts.json ? undefined : process.stderr);
      return result ?? { job_id: accepted.job_id, state: (await api.get(accepted.job_id)).state };
    });
    process.stdout.write(`${JSON.stringify(reply)}\n`);
  });

  clientOptions(program.command("status").description("a job's status").argument("<job_id>")).action(async (jobId: string, opts: ClientOptions) => {
    const job = await withApi(opts.nats, (api) => api.get(jobId));
    print(opts.json, job, () =>
      [`job ${job.job_id}  ${job.type} on ${job.queue}`, statusLine(job), `created ${job.created_at}  correlation ${job.correlation_id}`].join("\n"),
    );
  });

  clientOptions(program.command("watch").description("a job's state changes and progress until it ends: a bar on a terminal, lines otherwise (Ctrl-C stops watching)").argument("<job_id>")).action(
    async (jobId: string, opts: ClientOptions) => {
      const stop = new AbortController();
      process.once("SIGINT", () => stop.abort());
      const result = await withApi(opts.nats, async (api) => {
        await api.get(jobId);
        return follow(api, jobId, WATCH_MS, process.stdout, opts.json, stop.signal);
      });
      if (result && !opts.json) process.stdout.write(`${result.state}${result.error ? `  ${result.error.code}: ${result.error.message}` : ""}\n`);
    },
  );

  clientOptions(program.command("result").description("a finished job's result (not_finished while it runs)").argument("<job_id>")).action(
    async (jobId: string, opts: ClientOptions) => {
      const result = await withApi(opts.nats, (api) => api.result(jobId));
      process.stdout.write(`${JSON.stringify(result, null, opts.json ? 2 : undefined)}\n`);
    },
  );

  clientOptions(program.command("cancel").description("cancel a job: a queued one never runs, a running one is killed").argument("<job_id>")).action(
    async (jobId: string, opts: ClientOptions) => {
      const reply = await withApi(opts.nats, (api) => api.cancel(jobId));
      print(opts.json, reply, () => (reply.cancel_requested ? `${jobId}: cancel requested (it is running; its process is being killed)` : `${jobId}: ${reply.state}`));
    },
  );

  clientOptions(program.command("retry").description("queue a dead job again with fresh attempts").argument("<job_id>")).action(async (jobId: string, opts: ClientOptions) => {
    const reply = await withApi(opts.nats, (api) => api.retry(jobId));
    print(opts.json, reply, () => `${jobId}: ${reply.state}`);
  });

  clientOptions(
    program
      .command("jobs")
      .description("list jobs, newest first, a page at a time (--all: every page)")
      .addOption(new Option("--state <state>", "only jobs in this state").choices(JobState.options))
      .option("--queue <queue>", "only jobs of this queue")
      .option("--tenant <tenant>", "only jobs of this tenant")
      .option("--type <type>", "only jobs of this type")
      .addOption(new Option("--limit <n>", "jobs per page (default 20)").argParser(count("--limit")))
      .option("--cursor <cursor>", "the page after this cursor (printed under each page)")
      .option("--all", "every page, not only the first"),
  ).action(async (opts: ListOptions) => {
    const filter = {
      limit: opts.limit ?? 20,
      ...(opts.state && { state: opts.state }),
      ...(opts.queue && { queue: opts.queue }),
      ...(opts.tenant && { tenant: opts.tenant }),
      ...(opts.type && { type: opts.type }),
      ...(opts.cursor && { cursor: opts.cursor }),
    };
    await withApi(opts.nats, async (api) => {
      if (!opts.all) {
        const page = await api.listPage(filter);
        print(opts.json, page, () => `${jobTable(page.jobs)}${page.next_cursor ? `\nnext page: --cursor ${page.next_cursor}` : ""}`);
        return;
      }
      for await (const page of api.pages(filter)) print(opts.json, page.jobs, () => jobTable(page.jobs));
    });
  });
}

interface ListOptions extends ClientOptions {
  state?: JobState;
  queue?: string;
  tenant?: string;
  type?: string;
  limit?: number;
  cursor?: string;
  all?: boolean;
}

const jobTable = (jobs: JobStatus[]): string =>
  table(
    jobs.map((j) => ({
      job: j.job_id,
      type: j.type,
      queue: j.queue,
      tenant: j.tenant ?? "",
      state: j.state,
      attempts: `${j.attempts}/${j.max_attempts}`,
      progress: j.progress === null ? "" : `${Math.round(j.progress * 100)}%`,
      created: j.created_at,
    })),
  );

/**
 * Shows a job's events on `out` (a bar on a terminal, lines otherwise, JSON
 * lines with json) until it has a result; undefined when `timeoutMs` ran out
 * first. The result is read by `wait`, so a job that ended before the events
 * were followed still ends the command.
 */
async function follow(api: BosunClient, jobId: string, timeoutMs: number, out: NodeJS.WriteStream | undefined, json?: boolean, signal?: AbortSignal): Promise<JobResult | undefined> {
  const display = out ? jobProgress(jobId, out, { json }) : undefined;
  const stop = new AbortController();
  signal?.addEventListener("abort", () => stop.abort());
  const shown = (async () => {
    if (!display) return;
    try {
      for await (const event of api.events(jobId, { signal: stop.signal })) display.show(event);
    } catch {
      // The events are only shown; wait() decides how the command ends.
    }
  })();
  try {
    const result = await api.wait(jobId, { timeoutMs, signal: stop.signal });
    // The event stream ends by itself on the final state: let it show that last event.
    await Promise.race([shown, new Promise((resolve) => setTimeout(resolve, LAST_EVENT_GRACE_MS).unref())]);
    return result;
  } catch (err) {
    if ((err as Error).name === "WaitTimeoutError") return undefined;
    throw err;
  } finally {
    stop.abort();
    await shown;
    display?.stop();
  }
}
