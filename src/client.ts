/**
 * The operator commands of the CLI: each is one request to the NATS API
 * (`watch` follows a job's record), printed as a table or lines, or as JSON
 * with --json for scripts.
 */
import { parseArgs } from "node:util";
import { connect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/nats-core";
import {
  api,
  BosunError,
  MAX_WAIT_MS,
  type JobStatus,
  type OpsFlags,
  type OpsPatch,
  type QueueStatus,
  type WorkerInfo,
} from "./contract/index.js";
import { jobEvents } from "./gateway/events.js";
import { readReply } from "./platform/nats.js";
import { DEFAULT_NATS_URL, natsOptions } from "./platform/nats-options.js";


class CommandError extends Error {
  override readonly name = "CommandError";
  constructor(message: string, readonly exitCode = 1) {
    super(message);
  }
}

async function withNats<T>(url: string | undefined, work: (nc: NatsConnection) => Promise<T>): Promise<T> {
  const nc = await connect(natsOptions(url ?? process.env.NATS_URL ?? DEFAULT_NATS_URL, "bosun-cli"));
  try {
    return await work(nc);
  } finally {
    await nc.close();
  }
}

/** One API request; an error reply becomes a CommandError carrying its code and message. */
async function request<T>(nc: NatsConnection, subject: string, body: unknown, timeoutMs = 5000): Promise<T> {
  const reply = await nc.request(subject, JSON.stringify(body), { timeout: timeoutMs });
  try {
    return readReply<T>(reply);
  } catch (err) {
    throw err instanceof BosunError ? new CommandError(`${err.code}: ${err.message}`) : err;
  }
}

function table(rows: Record<string, unknown>[]): string {
  if (rows.length === 0) return "(none)";
  const columns = Object.keys(rows[0]!);
  const cells = rows.map((r) => columns.map((c) => String(r[c] ?? "")));
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((row) => row[i]!.length)));
  const line = (values: string[]) => values.map((v, i) => v.padEnd(widths[i]!)).join("  ").trimEnd();
  return [line(columns.map((c) => c.toUpperCase())), ...cells.map(line)].join("\n");
}

const print = (json: boolean, value: unknown, text: () => string) => process.stdout.write(`${json ? JSON.stringify(value, null, 2) : text()}\n`);

const commonOptions = { json: { type: "boolean" }, nats: { type: "string" } } as const;

async function submit(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      ...commonOptions,
      queue: { type: "string" },
      wait: { type: "boolean" },
      "wait-ms": { type: "string" },
      "max-attempts": { type: "string" },
      "timeout-ms": { type: "string" },
    },
  });
  const [type, payloadText] = positionals;
  if (!type || positionals.length > 2) throw new CommandError("usage: bosun submit TYPE [PAYLOAD_JSON] [--queue Q] [--wait] [--wait-ms N]", 2);
  let payload: unknown = {};
  if (payloadText !== undefined) {
    try {
      payload = JSON.parse(payloadText);
    } catch {
      throw new CommandError(`PAYLOAD is not valid JSON: ${payloadText}`, 2);
    }
  }
  const waitMs = values["wait-ms"] !== undefined ? Number(values["wait-ms"]) : values.wait ? 60_000 : undefined;
  const body = {
    type,
    payload,
    ...(values.queue && { queue: values.queue }),
    ...(waitMs !== undefined && { wait_ms: Math.min(waitMs, MAX_WAIT_MS) }),
    ...(values["max-attempts"] && { max_attempts: Number(values["max-attempts"]) }),
    ...(values["timeout-ms"] && { timeout_ms: Number(values["timeout-ms"]) }),
  };
  const reply = await withNats(values.nats, (nc) => request(nc, api.jobsSubmit, body, (waitMs ?? 0) + 5000));
  process.stdout.write(`${JSON.stringify(reply)}\n`);
}

async function workers(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: commonOptions });
  const { workers } = await withNats(values.nats, (nc) => request<{ workers: WorkerInfo[] }>(nc, api.workersList, {}));
  print(!!values.json, workers, () =>
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
}

async function queue(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: commonOptions });
  const { queues } = await withNats(values.nats, (nc) => request<{ queues: QueueStatus[] }>(nc, api.queueStatus, {}));
  print(!!values.json, queues, () =>
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
}

const flagLines = (flags: OpsFlags) =>
  [`submissions_paused=${flags.submissions_paused}`, ...Object.entries(flags.queues).map(([q, f]) => `${q}.submissions_paused=${f.submissions_paused}`)].join("\n");

/** `bosun ops set submissions_paused=true default.submissions_paused=false` */
function opsPatch(assignments: string[]): OpsPatch {
  const patch: OpsPatch = {};
  for (const assignment of assignments) {
    const match = /^(?:([A-Za-z0-9_-]+)\.)?submissions_paused=(true|false)$/.exec(assignment);
    if (!match) throw new CommandError(`cannot read "${assignment}": use submissions_paused=true|false or QUEUE.submissions_paused=true|false`, 2);
    const [, queueName, value] = match;
    if (queueName) (patch.queues ??= {})[queueName] = { submissions_paused: value === "true" };
    else patch.submissions_paused = value === "true";
  }
  return patch;
}

async function ops(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: commonOptions });
  const [verb, ...assignments] = positionals;
  if (verb === "get" && assignments.length === 0) {
    const flags = await withNats(values.nats, (nc) => request<OpsFlags>(nc, api.opsGet, {}));
    print(!!values.json, flags, () => flagLines(flags));
  } else if (verb === "set" && assignments.length > 0) {
    const flags = await withNats(values.nats, (nc) => request<OpsFlags>(nc, api.opsSet, opsPatch(assignments)));
    print(!!values.json, flags, () => flagLines(flags));
  } else {
    throw new CommandError("usage: bosun ops get | bosun ops set [QUEUE.]submissions_paused=true|false ...", 2);
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

async function status(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: commonOptions });
  if (positionals.length !== 1) throw new CommandError("usage: bosun status JOB_ID [--json]", 2);
  const job = await withNats(values.nats, (nc) => request<JobStatus>(nc, api.jobsGet, { job_id: positionals[0] }));
  print(!!values.json, job, () =>
    [`job ${job.job_id}  ${job.type} on ${job.queue}`, statusLine(job), `created ${job.created_at}  correlation ${job.correlation_id}`].join("\n"),
  );
}

async function watch(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: commonOptions });
  if (positionals.length !== 1) throw new CommandError("usage: bosun watch JOB_ID [--json]", 2);
  const jobId = positionals[0]!;
  await withNats(values.nats, async (nc) => {
    const stop = new AbortController();
    process.once("SIGINT", () => stop.abort());
    const events = await jobEvents(nc, jobId, stop.signal);
    const first = await request<JobStatus>(nc, api.jobsGet, { job_id: jobId }).catch((err: unknown) => {
      events.close();
      throw err;
    });
    for await (const { data } of events.stream(first)) {
      const event = data as { type: string; data: JobStatus };
      print(!!values.json, event, () => `${new Date().toISOString()}  ${event.type.padEnd(8)}  ${statusLine(event.data)}`);
    }
  });
}

export const clientCommands: Record<string, (argv: string[]) => Promise<void>> = { submit, workers, queue, ops, status, watch };

/** Runs a client command; returns the exit code. */
export async function runClientCommand(name: string, argv: string[]): Promise<number> {
  try {
    await clientCommands[name]!(argv);
    return 0;
  } catch (err) {
    process.stderr.write(`bosun ${name}: ${(err as Error).message}\n`);
    return err instanceof CommandError ? err.exitCode : 1;
  }
}
