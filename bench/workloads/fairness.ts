/**
 * Workload 10 (BENCH_ONLY=fairness, not in the default run): what issue 15's
 * priorities, tenant lanes and schedules cost.
 *
 * - Throughput: `noop` jobs over the NATS API on one supervisor, all in one
 *   band with no tenant (priority 0, no tenant field), and spread evenly over
 *   three bands (priority -10 / 0 / 10) × three tenants (the submit's
 *   `tenant` field, accepted as given while auth is off), interleaved so all
 *   nine lanes stay busy; and, to tell the two apart, three bands with no
 *   tenant and one band with three tenants. All take the same warm-up and
 *   the same timing as workload 1 (first submit to last result).
 * - Tick precision: a schedule `every_ms: 100` of `noop` on a fresh queue
 *   (created over `bosun.api.schedules.create`), left to make its ticks, then
 *   deleted; its jobs are read back with `bosun.api.jobs.list` (by queue) and
 *   each job's lateness is its record's `created_at` (set when the tick's
 *   submit is accepted) minus its `tick_at`.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import { api } from "../../src/contract/index.js";
import { cpuFigures, freshName, type Ctx, type Figures } from "../context.js";
import { CpuMeter } from "../proc-stats.js";
import { summarizeLatencies } from "../stats.js";
import { guarded, perSecond, runBatch, startCluster, stopCluster } from "./bosun.js";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const REQUEST_TIMEOUT_MS = 30_000;

const BANDS = [-10, 0, 10];
const TENANTS = ["tenant-a", "tenant-b", "tenant-c"];
/**
 * What the i-th job of a run adds to its submit. "spread": band i mod 3,
 * tenant (i div 3) mod 3, so consecutive jobs cycle through all nine lanes;
 * "bands" and "tenants" (to tell the two costs apart): only the band, or
 * only the tenant, i mod 3.
 */
export type Lanes = "one" | "bands" | "tenants" | "spread";
const FIELDS: Record<Lanes, ((i: number) => object) | undefined> = {
  one: undefined,
  bands: (i) => ({ priority: BANDS[i % 3]! }),
  tenants: (i) => ({ tenant: TENANTS[i % 3]! }),
  spread: (i) => ({ priority: BANDS[i % 3]!, tenant: TENANTS[Math.floor(i / 3) % 3]! }),
};

/** A request to Bosun's NATS API; an error reply (service error header or `error` body) throws. */
async function call<T>(nc: NatsConnection, subject: string, body: object): Promise<T> {
  const msg = await nc.request(subject, encoder.encode(JSON.stringify(body)), { timeout: REQUEST_TIMEOUT_MS });
  const reply = JSON.parse(decoder.decode(msg.data)) as T & { error?: unknown };
  if (msg.headers?.get("Nats-Service-Error-Code") || reply.error) throw new Error(`${subject} refused: ${JSON.stringify(reply)}`);
  return reply;
}

/** Noop throughput with one band and no tenant, three bands × three tenants, or either alone. */
export async function bosunFairness(ctx: Ctx, lanes: Lanes): Promise<Figures> {
  const { fairnessJobs: n, warmup, pool } = ctx.counts;
  const key = `fair.${lanes}`;
  const fields = FIELDS[lanes];
  const cluster = await startCluster(ctx, `fair_${lanes}`, 1, pool);
  try {
    await guarded(ctx, cluster, runBatch(ctx, "nats", cluster.queue, warmup, { type: "noop" }, fields));
    const supervisor = cluster.supervisors[0]!;
    const cpu = new CpuMeter({ supervisor: supervisor.pid, nats: ctx.natsPids[0]! }, supervisor.pid);
    let timing;
    let used;
    try {
      timing = await guarded(ctx, cluster, runBatch(ctx, "nats", cluster.queue, n, { type: "noop" }, fields));
    } finally {
      used = cpu.stop();
    }
    return { [key]: perSecond(n, timing.finishedMs), [`${key}.accept`]: perSecond(n, timing.acceptedMs), ...cpuFigures(key, used, n) };
  } finally {
    await stopCluster(ctx, cluster);
  }
}

interface TickJob {
  job_id: string;
  created_at: string;
  started_at: string | null;
  schedule_id?: string;
  tick_at?: string;
}

interface ScheduleView {
  next_run_at: string | null;
  last_run_at: string | null;
}

/** Every job of the queue that the schedule made (all pages of the list). */
async function tickJobs(nc: NatsConnection, queue: string, scheduleId: string): Promise<TickJob[]> {
  const out: TickJob[] = [];
  let cursor: string | undefined;
  do {
    const page = await call<{ jobs: TickJob[]; next_cursor: string | null }>(nc, api.jobsList, { queue, limit: 1000, ...(cursor && { cursor }) });
    out.push(...page.jobs.filter((j) => j.schedule_id === scheduleId));
    cursor = page.next_cursor ?? undefined;
  } while (cursor);
  return out;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * A schedule `every_ms` on one supervisor (pool as workload 1), from its
 * first tick (the create reply's next_run_at) until `ticks` ticks are due
 * and the last of them is recorded, then deleted. Lateness: created_at −
 * tick_at of each job in that window; also started_at − tick_at. Ticks seen
 * are the distinct tick times among them; expected is `ticks`.
 */
export async function bosunTicks(ctx: Ctx): Promise<Figures> {
  const { scheduleTicks: ticks, scheduleEveryMs: every, warmup, pool } = ctx.counts;
  const cluster = await startCluster(ctx, "ticks", 1, pool);
  const scheduleId = freshName("bench_tick");
  let created = false;
  try {
    await guarded(ctx, cluster, runBatch(ctx, "nats", cluster.queue, warmup, { type: "noop" }));
    const schedule = await call<ScheduleView>(ctx.nc, api.schedulesCreate, { schedule_id: scheduleId, every_ms: every, job: { type: "noop", queue: cluster.queue } });
    created = true;
    if (!schedule.next_run_at) throw new Error(`schedule ${scheduleId} was created with no next_run_at`);
    const first = Date.parse(schedule.next_run_at);
    const last = first + (ticks - 1) * every;
    await guarded(
      ctx,
      cluster,
      (async () => {
        const deadline = last + 30_000;
        for (;;) {
          const now = await call<ScheduleView>(ctx.nc, api.schedulesGet, { schedule_id: scheduleId });
          if (now.last_run_at && Date.parse(now.last_run_at) >= last) return;
          if (Date.now() > deadline) throw new Error(`schedule ${scheduleId}: last run ${now.last_run_at ?? "none"}, still short of the tick at ${new Date(last).toISOString()} 30 s after it`);
          await sleep(Math.max(100, Math.min(1000, last - Date.now())));
        }
      })(),
    );
    await call(ctx.nc, api.schedulesDelete, { schedule_id: scheduleId });
    created = false;
    // Until the window's jobs have all started (noop: within milliseconds), for started_at.
    let jobs: TickJob[] = [];
    for (let i = 0; i < 50; i++) {
      jobs = (await tickJobs(ctx.nc, cluster.queue, scheduleId)).filter((j) => {
        const at = Date.parse(j.tick_at!);
        return at >= first && at <= last;
      });
      if (jobs.every((j) => j.started_at !== null)) break;
      await sleep(100);
    }
    const seen = new Set(jobs.map((j) => j.tick_at!)).size;
    const late = summarizeLatencies(jobs.map((j) => Date.parse(j.created_at) - Date.parse(j.tick_at!)));
    const startLate = summarizeLatencies(jobs.filter((j) => j.started_at !== null).map((j) => Date.parse(j.started_at!) - Date.parse(j.tick_at!)));
    return {
      "tick.p50": late.p50,
      "tick.p99": late.p99,
      "tick.max": late.max,
      "tick.start_p50": startLate.p50,
      "tick.start_p99": startLate.p99,
      "tick.seen": seen,
      "tick.expected": ticks,
      "tick.duplicates": jobs.length - seen,
    };
  } finally {
    if (created) await call(ctx.nc, api.schedulesDelete, { schedule_id: scheduleId }).catch(() => undefined);
    await stopCluster(ctx, cluster);
  }
}
