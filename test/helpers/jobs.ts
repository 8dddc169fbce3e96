/**
 * Reading jobs the way a test needs to: submitting over NATS, waiting for
 * results, and watching the jobs KV bucket to learn which supervisor and
 * which execution process ran each job (the record names its owner while
 * the job runs).
 */
import type { NatsConnection } from "@nats-io/nats-core";
import { Kvm, KvWatchInclude, type KV } from "@nats-io/kv";
import type { JobResult, JobStatus, SubmitReply } from "./http.js";
import { requestJson } from "./nats-client.js";
import { waitFor } from "./wait.js";

export const JOBS_BUCKET = "bosun_jobs";
const decoder = new TextDecoder();

export interface Owner {
  worker_id: string;
  pid: number;
  /** With thread isolation: the thread that ran it (pid is then the supervisor's). */
  thread_id?: number;
}

/**
 * Every owner each job's record has shown, collected live from the KV
 * bucket. Start it before submitting; stop it at teardown.
 */
export class OwnerWatch {
  readonly owners = new Map<string, Owner[]>();
  readonly states = new Map<string, string[]>();
  #stop: (() => void) | undefined;

  private constructor(readonly kv: KV) {}

  static async start(nc: NatsConnection, t: { teardown(fn: () => unknown): void }): Promise<OwnerWatch> {
    const kv = await new Kvm(nc).open(JOBS_BUCKET);
    const w = new OwnerWatch(kv);
    const iter = await kv.watch({ key: ">", include: KvWatchInclude.UpdatesOnly, ignoreDeletes: true });
    w.#stop = () => iter.stop();
    t.teardown(() => w.stop());
    void (async () => {
      for await (const e of iter) {
        if (e.operation !== "PUT") continue;
        try {
          const record = JSON.parse(decoder.decode(e.value)) as JobStatus;
          w.#record(e.key, record);
        } catch {
          // not a job record
        }
      }
    })();
    return w;
  }

  #record(jobId: string, record: JobStatus): void {
    const states = this.states.get(jobId) ?? [];
    states.push(record.state);
    this.states.set(jobId, states);
    if (!record.owner) return;
    const list = this.owners.get(jobId) ?? [];
    const last = list[list.length - 1];
    if (!last || last.pid !== record.owner.pid || last.thread_id !== record.owner.thread_id || last.worker_id !== record.owner.worker_id) list.push(record.owner);
    this.owners.set(jobId, list);
  }

  /** The first owner seen for a job, waiting for it to show up. */
  async ownerOf(jobId: string, timeoutMs = 10_000): Promise<Owner> {
    return waitFor(() => this.owners.get(jobId)?.[0], { timeoutMs, what: `an owner in the record of job ${jobId}` });
  }

  stop(): void {
    this.#stop?.();
  }
}

/** Submits over NATS; with waitMs the reply is the result (or the submit reply if it did not finish). */
export async function submitNats(nc: NatsConnection, body: Record<string, unknown>, waitMs?: number): Promise<SubmitReply | JobResult> {
  const reply = await requestJson<SubmitReply | JobResult>(
    nc,
    "bosun.api.jobs.submit",
    waitMs === undefined ? body : { ...body, wait_ms: waitMs },
    { timeoutMs: (waitMs ?? 0) + 10_000 },
  );
  if (reply.errorCode) throw new Error(`submit failed: ${reply.errorCode} ${JSON.stringify(reply.body)}`);
  return reply.body;
}

/** Polls bosun.api.jobs.result until the job has a result. */
export async function resultOf(nc: NatsConnection, jobId: string, timeoutMs = 20_000): Promise<JobResult> {
  return waitFor<JobResult>(
    async () => {
      const reply = await requestJson<JobResult>(nc, "bosun.api.jobs.result", { job_id: jobId });
      if (reply.errorCode) {
        if (reply.errorCode === "409") return undefined;
        throw new Error(`result of ${jobId}: ${reply.errorCode} ${JSON.stringify(reply.body)}`);
      }
      return reply.body;
    },
    { timeoutMs, intervalMs: 50, what: `the result of job ${jobId}` },
  );
}

/** Runs one job to its end over NATS (submit with wait_ms) and returns its result. */
export async function runJob(nc: NatsConnection, body: Record<string, unknown>, timeoutMs = 20_000): Promise<JobResult> {
  const reply = await submitNats(nc, body, timeoutMs);
  if ("result" in reply) return reply;
  return resultOf(nc, reply.job_id, timeoutMs);
}
