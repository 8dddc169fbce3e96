/** `bosun submit`, `bosun status`, `bosun watch`: one job at a time, over the NATS API. */
import { Option, type Command } from "commander";
import { MAX_WAIT_MS, type JobStatus } from "../contract/index.js";
import { CommandError, ExitCode } from "./errors.js";
import { withApi } from "./nats-request.js";
import { clientOptions, print, type ClientOptions } from "./output.js";

const WAIT_DEFAULT_MS = 60_000;
/** How long past the wait a reply may take before the request counts as unanswered. */
const REPLY_SLACK_MS = 5000;

const count = (name: string) => (text: string) => {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0) throw new CommandError(`${name} must be a whole number, not "${text}"`, ExitCode.usage);
  return n;
};

function parsePayload(text: string | undefined): unknown {
  if (text === undefined) return {};
  try {
    return JSON.parse(text);
  } catch {
    throw new CommandError(`PAYLOAD is not valid JSON: ${text}`, ExitCode.usage);
  }
}

const statusLine = (s: JobStatus) =>
  [
    `${s.state}`,
    `attempts ${s.attempts}/${s.max_attempts}`,
    s.owner ? `on ${s.owner.worker_id} pid ${s.owner.pid}` : "",
    s.progress !== null ? `progress ${Math.round(s.progress * 100)}%` : "",
    s.error ? `error ${s.error.code}: ${s.error.message}` : "",
  ]
    .filter(Boolean)
    .join("  ");

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
      ...(waitMs !== undefined && { wait_ms: Math.min(waitMs, MAX_WAIT_MS) }),
      ...(opts.maxAttempts !== undefined && { max_attempts: opts.maxAttempts }),
      ...(opts.timeoutMs !== undefined && { timeout_ms: opts.timeoutMs }),
    };
    const reply = await withApi(opts.nats, (api) => api.request("jobs_submit", body, (waitMs ?? 0) + REPLY_SLACK_MS));
    process.stdout.write(`${JSON.stringify(reply)}\n`);
  });

  clientOptions(program.command("status").description("a job's status").argument("<job_id>")).action(async (jobId: string, opts: ClientOptions) => {
    const job = await withApi(opts.nats, (api) => api.request("jobs_get", { job_id: jobId }));
    print(opts.json, job, () =>
      [`job ${job.job_id}  ${job.type} on ${job.queue}`, statusLine(job), `created ${job.created_at}  correlation ${job.correlation_id}`].join("\n"),
    );
  });

  clientOptions(program.command("watch").description("a job's state changes and progress, until it ends (Ctrl-C stops watching)").argument("<job_id>")).action(
    async (jobId: string, opts: ClientOptions) => {
      await withApi(opts.nats, async (api) => {
        await api.request("jobs_get", { job_id: jobId });
        const stop = new AbortController();
        process.once("SIGINT", () => stop.abort());
        for await (const { data: event } of api.events(jobId, stop.signal)) {
          print(opts.json, event, () => `${new Date().toISOString()}  ${event.type.padEnd(8)}  ${statusLine(event.data)}`);
        }
      });
    },
  );
}
