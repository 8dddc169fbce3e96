/**
 * bench/RESULTS.md: the machine, the versions, every figure's median and
 * spread over the rounds, Bosun's ratios to its peers against the targets,
 * and how each system was set up.
 */
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import type { Counts } from "./context.js";
import { findBinary } from "./procs.js";
import { median } from "./stats.js";

export interface MetricDef {
  key: string;
  label: string;
  unit: string;
  digits: number;
}

export interface Section {
  title: string;
  about: string;
  metrics: MetricDef[];
}

const m = (key: string, label: string, unit: string, digits = 0): MetricDef => ({ key, label, unit, digits });

const PROCESS_LABELS: Record<string, string> = {
  supervisor: "supervisor",
  children: "execution",
  nats: "nats-server",
  harness: "client",
  gateway: "gateway",
  worker: "worker",
  redis: "redis-server",
};
const cpuRows = (key: string, label: string, procs: string[]): MetricDef[] =>
  procs.map((p) => m(`us.${key}.${p}`, `${label}: ${PROCESS_LABELS[p]}`, "µs"));

export function sections(c: Counts): Section[] {
  return ([
    {
      title: "1. Throughput",
      about: `${c.throughput.toLocaleString("en")} \`noop\` jobs per run, ${c.inflight} submits outstanding at a time, timed from the first submit until every job's result (Bosun) or completion (BullMQ) has been seen. "accepted" is the rate of the submits alone.`,
      metrics: [
        m("tp.bosun_nats", "Bosun, NATS API", "jobs/s"),
        m("tp.bosun_nats_thread", "Bosun, NATS API, thread isolation", "jobs/s"),
        m("tp.bosun_http", "Bosun, HTTP via gateway", "jobs/s"),
        m("tp.bullmq_inprocess", "BullMQ, in-process processor", "jobs/s"),
        m("tp.bullmq_sandboxed", "BullMQ, sandboxed processor", "jobs/s"),
        m("tp.bosun_nats.accept", "Bosun, NATS API: accepted", "jobs/s"),
        m("tp.bosun_nats_thread.accept", "Bosun, NATS API, thread isolation: accepted", "jobs/s"),
        m("tp.bosun_http.accept", "Bosun, HTTP: accepted", "jobs/s"),
        m("tp.bullmq_inprocess.accept", "BullMQ in-process: added", "jobs/s"),
        m("tp.bullmq_sandboxed.accept", "BullMQ sandboxed: added", "jobs/s"),
      ],
    },
    {
      title: "2. Latency",
      about: `${c.latency.toLocaleString("en")} sequential \`noop\` jobs per run (after ${c.latencyWarmup} untimed), each timed from submit to result in hand.`,
      metrics: [
        m("lat.bosun_nats.p50", "Bosun, NATS API (wait_ms): p50", "ms", 2),
        m("lat.bosun_nats.p99", "Bosun, NATS API (wait_ms): p99", "ms", 2),
        m("lat.bosun_nats_thread.p50", "Bosun, NATS API, thread isolation: p50", "ms", 2),
        m("lat.bosun_nats_thread.p99", "Bosun, NATS API, thread isolation: p99", "ms", 2),
        m("lat.bosun_http.p50", "Bosun, HTTP ?wait_ms: p50", "ms", 2),
        m("lat.bosun_http.p99", "Bosun, HTTP ?wait_ms: p99", "ms", 2),
        m("lat.bullmq.p50", "BullMQ, add + waitUntilFinished: p50", "ms", 2),
        m("lat.bullmq.p99", "BullMQ, add + waitUntilFinished: p99", "ms", 2),
        m("lat.bosun_nats.mean", "Bosun, NATS API: mean", "ms", 2),
        m("lat.bosun_http.mean", "Bosun, HTTP: mean", "ms", 2),
        m("lat.bullmq.mean", "BullMQ: mean", "ms", 2),
      ],
    },
    {
      title: "3. The limit: raw JetStream on the same server",
      about: `${c.throughput.toLocaleString("en")} messages of a job envelope's size (~330 bytes) per phase, file storage, work-queue stream. Publish: \`js.publish\` awaiting each PubAck, ${c.inflight} outstanding. Consume: a durable pull consumer, \`consume()\`, \`ack()\` per message, timed until the acks are flushed. The limit is the same message count published (noAsyncTraces) and then consumed (max_messages 1,000): n / (publish time + consume time).`,
      metrics: [
        m("js.publish_defaults", "publish, nats.js defaults", "msgs/s"),
        m("js.publish_fast", "publish, noAsyncTraces: true", "msgs/s"),
        m("js.consume_defaults", "consume + ack, default max_messages (100)", "msgs/s"),
        m("js.consume_1000", "consume + ack, max_messages 1,000", "msgs/s"),
        m("js.limit", "limit: publish + consume, best settings", "msgs/s"),
        m("js.pipelined", "publish and consume at once (informational)", "msgs/s"),
      ],
    },
    {
      title: "4. Scale",
      about: `Scale-out: workload 1 over the NATS API with 1 and with 2 supervisors (each with a pool of ${c.pool}). CPU: ${c.cpuJobs.toLocaleString("en")} \`cpu\` jobs of ${c.cpuMs} ms per run on one supervisor with a pool of 1, 2 and 4 processes; on ${os.cpus().length} cores the ideal is min(pool, cores) × ${Math.round(1000 / c.cpuMs)} jobs/s.`,
      metrics: [
        m("scale.supervisors_1", "noop, 1 supervisor", "jobs/s"),
        m("scale.supervisors_2", "noop, 2 supervisors", "jobs/s"),
        m("cpu.pool_1", `cpu ${c.cpuMs} ms, pool 1`, "jobs/s", 1),
        m("cpu.pool_2", `cpu ${c.cpuMs} ms, pool 2`, "jobs/s", 1),
        m("cpu.pool_4", `cpu ${c.cpuMs} ms, pool 4`, "jobs/s", 1),
      ],
    },
    {
      title: "6. Realistic workloads",
      about: `Over the NATS API for Bosun, ${c.inflight} submits outstanding as in workload 1. Sleep: ${c.sleepJobs.toLocaleString("en")} jobs that wait ${c.sleepMs} ms (Bosun's \`sleep\`, a \`setTimeout\` in BullMQ's processor), pool ${c.sleepPool} (Bosun) and concurrency ${c.sleepPool} (BullMQ): the ideal is ${Math.round((c.sleepPool * 1000) / c.sleepMs).toLocaleString("en")} jobs/s. CPU: ${c.cpuShortJobs.toLocaleString("en")} jobs that burn ${c.cpuShortMs} ms of CPU time each, pool / concurrency ${c.cpuShortPool}: on ${os.cpus().length} cores the ideal is ${Math.round((Math.min(c.cpuShortPool, os.cpus().length) * 1000) / c.cpuShortMs)} jobs/s, less what the rest of the system needs.`,
      metrics: [
        m("sleep.bosun_process", `sleep ${c.sleepMs} ms, pool ${c.sleepPool}: Bosun, process isolation`, "jobs/s"),
        m("sleep.bosun_thread", `sleep ${c.sleepMs} ms, pool ${c.sleepPool}: Bosun, thread isolation`, "jobs/s"),
        m("sleep.bullmq_sandboxed", `sleep ${c.sleepMs} ms, concurrency ${c.sleepPool}: BullMQ sandboxed`, "jobs/s"),
        m("sleep.bullmq_inprocess", `sleep ${c.sleepMs} ms, concurrency ${c.sleepPool}: BullMQ in-process`, "jobs/s"),
        m("cpu5.bosun_process", `cpu ${c.cpuShortMs} ms, pool ${c.cpuShortPool}: Bosun, process isolation`, "jobs/s", 1),
        m("cpu5.bosun_thread", `cpu ${c.cpuShortMs} ms, pool ${c.cpuShortPool}: Bosun, thread isolation`, "jobs/s", 1),
        m("cpu5.bullmq_sandboxed", `cpu ${c.cpuShortMs} ms, concurrency ${c.cpuShortPool}: BullMQ sandboxed`, "jobs/s", 1),
        m("cpu5.bullmq_inprocess", `cpu ${c.cpuShortMs} ms, concurrency ${c.cpuShortPool}: BullMQ in-process`, "jobs/s", 1),
      ],
    },
    {
      title: "7. CPU per job",
      about: "CPU time (user + system, from /proc/<pid>/stat) each process used during the timed part of a workload-1 run, divided by its jobs. \"execution\" is the supervisor's execution processes (or BullMQ's sandbox children) together; with thread isolation the execution threads are inside the supervisor's figure. \"client\" is the harness process, which submits and counts results.",
      metrics: [
        ...cpuRows("tp.bosun_nats", "Bosun NATS API", ["supervisor", "children", "nats", "harness"]),
        ...cpuRows("tp.bosun_nats_thread", "Bosun NATS API, threads", ["supervisor", "nats", "harness"]),
        ...cpuRows("tp.bosun_http", "Bosun HTTP", ["gateway", "supervisor", "children", "nats", "harness"]),
        ...cpuRows("tp.bullmq_sandboxed", "BullMQ sandboxed", ["worker", "children", "redis", "harness"]),
        ...cpuRows("tp.bullmq_inprocess", "BullMQ in-process", ["worker", "redis", "harness"]),
      ],
    },
    {
      title: "5. Memory",
      about: "Peak RSS (VmHWM from /proc/<pid>/status, sampled every 200 ms so replaced children count too) during workload 1. For execution processes and BullMQ's sandbox children the figure is the largest of them.",
      metrics: [
        m("mem.supervisor", "Bosun supervisor", "MiB", 1),
        m("mem.supervisor_threads", "Bosun supervisor with its 4 execution threads (thread isolation)", "MiB", 1),
        m("mem.execution", "Bosun execution process", "MiB", 1),
        m("mem.bullmq_inprocess_host", "BullMQ worker process, in-process", "MiB", 1),
        m("mem.bullmq_sandboxed_host", "BullMQ worker process, sandboxed", "MiB", 1),
        m("mem.bullmq_sandbox_child", "BullMQ sandbox child process", "MiB", 1),
      ],
    },
    {
      title: "8. Growth (BENCH_ONLY=growth)",
      about: "Finished `noop` jobs kept (batch submit, one supervisor), then at each size the median of 21 reads through the gateway: a list page (`GET /api/jobs?limit=20`), a dead-letter page (`?state=dead&limit=20`), a status read of a kept job, `GET /api/platform/queue`; the bytes of Bosun's streams per kept job and the supervisor's RSS.",
      metrics: c.growthSizes.flatMap((n) => {
        const label = n >= 1_000_000 ? `${n / 1_000_000}m` : n >= 1000 ? `${n / 1000}k` : String(n);
        const at = n.toLocaleString("en");
        return [
          m(`growth.${label}.list`, `${at} kept: list page`, "ms", 2),
          m(`growth.${label}.dead`, `${at} kept: dead-letter page`, "ms", 2),
          m(`growth.${label}.status`, `${at} kept: status read`, "ms", 2),
          m(`growth.${label}.queue`, `${at} kept: queue status`, "ms", 2),
          m(`growth.${label}.bytes`, `${at} kept: store bytes per job`, "B"),
          m(`growth.${label}.rss`, `${at} kept: supervisor RSS`, "MiB", 1),
        ];
      }),
    },
    {
      title: "9. Cluster: scale-out on three nodes",
      about: `${c.clusterJobs.toLocaleString("en")} \`noop\` jobs per run over the NATS API, with 1, 2 and 3 supervisors (pool ${c.pool} each) on a three-node JetStream cluster on loopback (every stream and bucket R3, as Bosun provisions it there) and on the single server. CPU per job: user + system time of the nats-servers, the supervisors and their execution processes over the timed batch, divided by the jobs; on ${os.cpus().length} cores the throughput cannot pass cores × 1000 ÷ that.`,
      metrics: [1, 2, 3].flatMap((n) => [
        m(`cluster.single_${n}`, `single server, ${n} supervisor(s)`, "jobs/s"),
        m(`cluster.cluster_${n}`, `3-node cluster R3, ${n} supervisor(s)`, "jobs/s"),
        m(`cluster.single_${n}.cpu_per_job`, `single server, ${n}: CPU per job (all processes)`, "ms", 2),
        m(`cluster.cluster_${n}.cpu_per_job`, `cluster R3, ${n}: CPU per job (all processes)`, "ms", 2),
        m(`cluster.single_${n}.nats_cpu_per_job`, `single server, ${n}: nats-server CPU per job`, "ms", 2),
        m(`cluster.cluster_${n}.nats_cpu_per_job`, `cluster R3, ${n}: nats-servers' CPU per job`, "ms", 2),
      ]),
    },
    {
      title: "12. Intake: batch submit, and execution under sustained submits",
      about: `Batch submit: ${c.throughput.toLocaleString("en")} \`noop\` jobs per run in batches of 1,000, 4 batches outstanding, on one supervisor (pool ${c.pool}) over \`bosun.api.jobs.submit_batch\` or \`POST /api/jobs/batch\`, against BullMQ's \`queue.addBulk\` with the same batches and payloads and its Worker (concurrency ${c.pool}) running, as Bosun's supervisor runs; "accepted" from the first batch to the last reply, "finished" to the last result. Sustained: on one supervisor (pool ${c.pool}), first its drain rate (${Math.round(c.throughput / 2).toLocaleString("en")} jobs held with \`max_concurrency: 0\`, then released, no submit beside them), then single submits over NATS with ${c.inflight} outstanding for ${(c.sustainedMs / 1000).toFixed(0)} s; the ratio is the completions inside that window per second ÷ the drain rate. "max_pending" repeats it with \`max_pending: 2000\` on the queue: a refused submit (503) waits 20 ms and is tried again. The backlog (accepted − finished) is sampled every 100 ms.`,
      metrics: [
        m("batch.bosun_nats", "batch, Bosun NATS API: accepted", "jobs/s"),
        m("batch.bosun_http", "batch, Bosun HTTP: accepted", "jobs/s"),
        m("batch.bullmq", "batch, BullMQ addBulk (sandboxed worker): added", "jobs/s"),
        m("batch.bullmq_inprocess", "batch, BullMQ addBulk (in-process worker): added", "jobs/s"),
        m("batch.bosun_nats.finished", "batch, Bosun NATS API: finished", "jobs/s"),
        m("batch.bosun_http.finished", "batch, Bosun HTTP: finished", "jobs/s"),
        m("batch.bullmq.finished", "batch, BullMQ sandboxed: finished", "jobs/s"),
        m("batch.bullmq_inprocess.finished", "batch, BullMQ in-process: finished", "jobs/s"),
        m("sustained.drain", "drain rate, no submits", "jobs/s"),
        m("sustained.accepted", "sustained: accepted", "jobs/s"),
        m("sustained.completions", "sustained: completions in the window", "jobs/s"),
        m("sustained.completion_ratio", "sustained: completions ÷ drain rate", "×", 2),
        m("sustained.max_backlog", "sustained: highest backlog", "jobs"),
        m("sustained.bounded.accepted", "max_pending 2000: accepted", "jobs/s"),
        m("sustained.bounded.refused", "max_pending 2000: refused submits", "per s"),
        m("sustained.bounded.completions", "max_pending 2000: completions in the window", "jobs/s"),
        m("sustained.bounded.completion_ratio", "max_pending 2000: completions ÷ drain rate", "×", 2),
        m("sustained.bounded.max_backlog", "max_pending 2000: highest backlog", "jobs"),
      ],
    },
    {
      title: "11. Remote compute servers (BENCH_ONLY=compute)",
      about: `${c.fairnessJobs.toLocaleString("en")} \`noop\` jobs per run over the NATS API, ${c.inflight} submits outstanding, timed as in workload 1, after ${c.warmup} untimed; then ${c.latency} sequential submits with \`wait_ms\` (submit → result in hand). Supervisor path: one supervisor, pool ${c.pool}. Remote: a queue only one \`bosun compute-worker\` (pool ${c.pool}) serves, leasing over HTTP through the gateway; the supervisor there serves the API only. CPU per job (from /proc) during the timed run: the supervisor, the execution processes (the worker's on the remote path), nats-server, the gateway and the compute worker.`,
      metrics: [
        m("compute.supervisor", "noop, supervisor path", "jobs/s"),
        m("compute.remote", "noop, remote compute worker over HTTP", "jobs/s"),
        m("compute.supervisor.p50", "supervisor path: sequential p50", "ms", 2),
        m("compute.supervisor.p99", "supervisor path: sequential p99", "ms", 2),
        m("compute.remote.p50", "remote: sequential p50", "ms", 2),
        m("compute.remote.p99", "remote: sequential p99", "ms", 2),
        ...cpuRows("compute.supervisor", "supervisor path, CPU per job", ["supervisor", "children", "nats", "gateway"]),
        ...cpuRows("compute.remote", "remote, CPU per job", ["supervisor", "children", "nats", "gateway", "worker"]),
      ],
    },
    {
      title: "10. Priorities, fairness and schedules (BENCH_ONLY=fairness)",
      about: `Throughput: ${c.fairnessJobs.toLocaleString("en")} \`noop\` jobs per run over the NATS API on one supervisor (pool ${c.pool}), ${c.inflight} submits outstanding, timed as in workload 1 (first submit to last result), after ${c.warmup} untimed jobs of the same shape. "One band" submits every job with no priority (0) and no tenant; "3 × 3" gives job i priority -10, 0 or 10 (i mod 3) and tenant \`tenant-a\`, \`-b\` or \`-c\` ((i div 3) mod 3, the submit's \`tenant\` field, as auth is off), so nine lanes are busy at once; the cost is 1 − (3 × 3 ÷ one band). "3 bands" (priority only, i mod 3) and "3 tenants" (tenant only, i mod 3) tell the two costs apart. CPU per job is the supervisor's (with its execution processes apart) and nats-server's. Ticks: on a fresh queue with one supervisor (pool ${c.pool}, warmed up), a schedule \`every_ms: ${c.scheduleEveryMs}\` of \`noop\` is created over \`bosun.api.schedules.create\`, left until its ${c.scheduleTicks}th tick from the create reply's \`next_run_at\` is recorded as its \`last_run_at\`, then deleted; its jobs are read back with \`bosun.api.jobs.list\` filtered by queue (and by \`schedule_id\`), those with a \`tick_at\` in the ${c.scheduleTicks}-tick window kept. Lateness is a job record's \`created_at\` (stamped when the tick's submit is accepted, before the job is queued) minus its \`tick_at\`; "start" is \`started_at\` minus \`tick_at\` (queueing and dispatch on an idle pool added). Ticks seen are the distinct \`tick_at\` in the window (expected ${c.scheduleTicks}); duplicates are jobs beyond one per tick.`,
      metrics: [
        m("fair.one", "noop, one band, no tenant", "jobs/s"),
        m("fair.spread", "noop, 3 bands × 3 tenants", "jobs/s"),
        m("fair.bands", "noop, 3 bands, no tenant", "jobs/s"),
        m("fair.tenants", "noop, one band, 3 tenants", "jobs/s"),
        m("fair.one.accept", "one band: accepted", "jobs/s"),
        m("fair.spread.accept", "3 × 3: accepted", "jobs/s"),
        m("us.fair.one.supervisor", "one band: supervisor CPU per job", "µs"),
        m("us.fair.spread.supervisor", "3 × 3: supervisor CPU per job", "µs"),
        m("us.fair.one.children", "one band: execution CPU per job", "µs"),
        m("us.fair.spread.children", "3 × 3: execution CPU per job", "µs"),
        m("us.fair.one.nats", "one band: nats-server CPU per job", "µs"),
        m("us.fair.spread.nats", "3 × 3: nats-server CPU per job", "µs"),
        m("tick.p50", `every_ms ${c.scheduleEveryMs}: lateness (created_at − tick_at) p50`, "ms"),
        m("tick.p99", `every_ms ${c.scheduleEveryMs}: lateness p99`, "ms"),
        m("tick.max", `every_ms ${c.scheduleEveryMs}: lateness max`, "ms"),
        m("tick.start_p50", `every_ms ${c.scheduleEveryMs}: started_at − tick_at p50`, "ms"),
        m("tick.start_p99", `every_ms ${c.scheduleEveryMs}: started_at − tick_at p99`, "ms"),
        m("tick.seen", "ticks seen (distinct tick_at)", "ticks"),
        m("tick.expected", "ticks expected", "ticks"),
        m("tick.duplicates", "jobs beyond one per tick", "jobs"),
      ],
    },
  ] satisfies Section[]).sort((a, b) => parseInt(a.title) - parseInt(b.title));
}

export interface Target {
  label: string;
  num: string;
  /** Absent: the figure itself is held to the target (an absolute aim, in its own unit). */
  den?: string;
  op: ">=" | "<=" | "info";
  target?: number;
  unit?: string;
}

/** Issue 17's aims first, then figures worth a ratio that have no aim. */
export const targets: Target[] = [
  { label: "noop, process isolation, NATS ÷ BullMQ sandboxed", num: "tp.bosun_nats", den: "tp.bullmq_sandboxed", op: ">=", target: 1.5 },
  { label: "noop, thread isolation, NATS ÷ BullMQ in-process", num: "tp.bosun_nats_thread", den: "tp.bullmq_inprocess", op: ">=", target: 1.2 },
  { label: "noop, HTTP ÷ NATS (process isolation)", num: "tp.bosun_http", den: "tp.bosun_nats", op: ">=", target: 0.8 },
  { label: "sequential p50: Bosun NATS ÷ BullMQ", num: "lat.bosun_nats.p50", den: "lat.bullmq.p50", op: "<=", target: 1.2 },
  { label: "sequential p99: Bosun NATS ÷ BullMQ", num: "lat.bosun_nats.p99", den: "lat.bullmq.p99", op: "<=", target: 1 },
  { label: "batch submit accepted: Bosun ÷ BullMQ addBulk", num: "batch.bosun_nats", den: "batch.bullmq", op: ">=", target: 1 },
  { label: "10 ms sleep jobs, pool 16: Bosun process ÷ BullMQ sandboxed", num: "sleep.bosun_process", den: "sleep.bullmq_sandboxed", op: ">=", target: 1 },
  { label: "supervisor CPU per noop job (process isolation, NATS)", num: "us.tp.bosun_nats.supervisor", op: "<=", target: 250, unit: "µs" },
  { label: "completions under sustained submits ÷ drain rate", num: "sustained.completion_ratio", op: ">=", target: 0.8 },
  { label: "noop, 3 bands × 3 tenants ÷ one band, no tenant (issue 15: < 10 % cost)", num: "fair.spread", den: "fair.one", op: ">=", target: 0.9 },
  { label: "schedule every_ms 100: tick lateness p99 (issue 15)", num: "tick.p99", op: "<=", target: 100, unit: "ms" },
  { label: "noop, thread isolation ÷ process isolation (NATS)", num: "tp.bosun_nats_thread", den: "tp.bosun_nats", op: "info" },
  { label: "noop, process isolation, NATS ÷ BullMQ in-process", num: "tp.bosun_nats", den: "tp.bullmq_inprocess", op: "info" },
  { label: "noop, HTTP ÷ BullMQ sandboxed", num: "tp.bosun_http", den: "tp.bullmq_sandboxed", op: "info" },
  { label: "sequential p50: Bosun HTTP ÷ BullMQ", num: "lat.bosun_http.p50", den: "lat.bullmq.p50", op: "info" },
  { label: "sequential p99: Bosun HTTP ÷ BullMQ", num: "lat.bosun_http.p99", den: "lat.bullmq.p99", op: "info" },
  { label: "sequential p50: Bosun NATS, threads ÷ BullMQ", num: "lat.bosun_nats_thread.p50", den: "lat.bullmq.p50", op: "info" },
  { label: "10 ms sleep jobs, pool 16: Bosun thread ÷ BullMQ in-process", num: "sleep.bosun_thread", den: "sleep.bullmq_inprocess", op: "info" },
  { label: "5 ms CPU jobs, pool 2: Bosun process ÷ BullMQ sandboxed", num: "cpu5.bosun_process", den: "cpu5.bullmq_sandboxed", op: "info" },
  { label: "5 ms CPU jobs, pool 2: Bosun thread ÷ BullMQ in-process", num: "cpu5.bosun_thread", den: "cpu5.bullmq_inprocess", op: "info" },
  { label: "noop, NATS ÷ raw JetStream limit", num: "tp.bosun_nats", den: "js.limit", op: "info" },
  { label: "Scale-out: 2 supervisors ÷ 1", num: "scale.supervisors_2", den: "scale.supervisors_1", op: "info" },
  { label: "Cluster R3 ÷ single server, 1 supervisor", num: "cluster.cluster_1", den: "cluster.single_1", op: "info" },
  { label: "Cluster R3 ÷ single server, 3 supervisors", num: "cluster.cluster_3", den: "cluster.single_3", op: "info" },
  { label: "Cluster scale-out: 2 supervisors ÷ 1", num: "cluster.cluster_2", den: "cluster.cluster_1", op: "info" },
  { label: "Cluster scale-out: 3 supervisors ÷ 1", num: "cluster.cluster_3", den: "cluster.cluster_1", op: "info" },
  { label: "Cluster CPU per job ÷ single server's, 1 supervisor", num: "cluster.cluster_1.cpu_per_job", den: "cluster.single_1.cpu_per_job", op: "info" },
  { label: "CPU 20 ms: pool 2 ÷ pool 1", num: "cpu.pool_2", den: "cpu.pool_1", op: "info" },
  { label: "CPU 20 ms: pool 4 ÷ pool 2", num: "cpu.pool_4", den: "cpu.pool_2", op: "info" },
  { label: "Memory: Bosun supervisor ÷ BullMQ in-process worker process", num: "mem.supervisor", den: "mem.bullmq_inprocess_host", op: "info" },
  { label: "batch submit accepted: Bosun HTTP ÷ BullMQ addBulk", num: "batch.bosun_http", den: "batch.bullmq", op: "info" },
  { label: "batch submit accepted: Bosun NATS ÷ BullMQ addBulk, in-process worker", num: "batch.bosun_nats", den: "batch.bullmq_inprocess", op: "info" },
  { label: "completions under sustained submits, max_pending 2000 ÷ drain rate", num: "sustained.bounded.completion_ratio", op: "info" },
  { label: "noop, 3 bands (no tenant) ÷ one band", num: "fair.bands", den: "fair.one", op: "info" },
  { label: "noop, 3 tenants (one band) ÷ one band, no tenant", num: "fair.tenants", den: "fair.one", op: "info" },
];

export interface TargetOutcome extends Target {
  /** Ratio of medians, or the median itself for an absolute aim. */
  ratio: number;
  /** Lowest and highest of the per-round ratios (round i ÷ round i), or of the rounds' figures. */
  spread: [number, number] | undefined;
  verdict: "PASS" | "MISS" | "n/a" | "";
}

export function evaluate(values: Map<string, number[]>): TargetOutcome[] {
  return targets.map((t) => {
    const num = values.get(t.num) ?? [];
    const den = t.den === undefined ? undefined : (values.get(t.den) ?? []);
    const ratio = den === undefined ? median(num) : median(num) / median(den);
    const perRound = den === undefined ? num : num.slice(0, den.length).map((v, i) => v / den[i]!);
    const spread: [number, number] | undefined = perRound.length > 0 ? [Math.min(...perRound), Math.max(...perRound)] : undefined;
    let verdict: TargetOutcome["verdict"] = "";
    if (t.op !== "info") verdict = !Number.isFinite(ratio) ? "n/a" : (t.op === ">=" ? ratio >= t.target! : ratio <= t.target!) ? "PASS" : "MISS";
    return { ...t, ratio, spread, verdict };
  });
}

/** "1.52×" for a ratio, "212 µs" for an absolute figure. */
export function formatOutcome(o: Pick<TargetOutcome, "unit">, v: number): string {
  if (!Number.isFinite(v)) return "n/a";
  return o.unit ? `${Math.round(v)} ${o.unit}` : `${v.toFixed(2)}×`;
}

// ---- environment ----------------------------------------------------------------------------

const firstLine = (cmd: string, args: string[]): string => {
  const res = spawnSync(findBinary(cmd) ?? cmd, args, { encoding: "utf8" });
  return (res.stdout || res.stderr || "").split("\n")[0]?.trim() || "unknown";
};

const packageVersion = (root: string, name: string): string => {
  try {
    return (JSON.parse(readFileSync(path.join(root, "node_modules", name, "package.json"), "utf8")) as { version: string }).version;
  } catch {
    return "not installed";
  }
};

export interface Environment {
  machine: [string, string][];
  versions: [string, string][];
}

export function describeEnvironment(root: string, loadAtStart: number[]): Environment {
  const cpus = os.cpus();
  const commit = firstLine("git", ["-C", root, "rev-parse", "--short", "HEAD"]);
  const dirty = spawnSync("git", ["-C", root, "status", "--porcelain", "--", "src"], { encoding: "utf8" }).stdout?.trim() ? " + uncommitted changes in src/" : "";
  const bosun = (JSON.parse(readFileSync(path.join(root, "package.json"), "utf8")) as { version: string }).version;
  return {
    machine: [
      ["CPU", `${cpus.length} × ${cpus[0]?.model.trim() ?? "unknown"}`],
      ["memory", `${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`],
      ["kernel", `${os.type()} ${os.release()} (${os.arch()})`],
      ["load average at start (1/5/15 min)", loadAtStart.map((l) => l.toFixed(2)).join(" / ")],
    ],
    versions: [
      ["Bosun", `${bosun} (git ${commit}${dirty})`],
      ["Node.js", process.version],
      ["nats-server", firstLine("nats-server", ["--version"]).replace(/^nats-server:\s*/, "")],
      ["redis-server", firstLine("redis-server", ["--version"]).replace(/^Redis server v=(\S+).*$/, "$1")],
      ["nats.js (@nats-io/transport-node / nats-core / jetstream)", ["transport-node", "nats-core", "jetstream"].map((p) => packageVersion(root, `@nats-io/${p}`)).join(" / ")],
      ["bullmq", packageVersion(root, "bullmq")],
      ["ioredis", packageVersion(root, "ioredis")],
    ],
  };
}

// ---- markdown -------------------------------------------------------------------------------

const fmt = (v: number, digits: number): string =>
  Number.isFinite(v) ? v.toLocaleString("en", { minimumFractionDigits: digits, maximumFractionDigits: digits }) : "n/a";

export interface ReportInput {
  counts: Counts;
  rounds: number;
  /** Set when the run was not the full benchmark (scaled down, fewer rounds or some workloads only). */
  partial?: { scale: number; rounds: number; only?: string[] };
  env: Environment;
  values: Map<string, number[]>;
  /** Figures taken once for the whole run (server peaks). */
  once: [string, string][];
  loadAtStart: number[];
  loadAtEnd: number[];
  errors: string[];
  notes: string[];
  startedAt: Date;
  durationS: number;
  /** The hand-written analysis from profiles (bench/ANALYSIS.md), if any. */
  analysis?: string;
}

export function renderReport(r: ReportInput): string {
  const out: string[] = [];
  const outcomes = evaluate(r.values);
  out.push("# Bosun benchmark results", "");
  if (r.partial) {
    const { scale, rounds, only } = r.partial;
    const what = [scale !== 1 ? `BENCH_SCALE=${scale}` : "", rounds !== 3 ? `BENCH_ROUNDS=${rounds}` : "", only ? `BENCH_ONLY=${only.join(",")}` : ""].filter(Boolean).join(", ");
    const kind = scale !== 1 ? "SMOKE RUN — not a benchmark" : "PARTIAL RUN";
    out.push(
      `> **${kind}** (${what}).${scale !== 1 ? " Counts are scaled down to check the harness, so the figures below mean nothing." : ""} Run \`npm run bench\` without these variables, on a quiet machine, for the real figures.`,
      "",
    );
  }
  out.push(
    `Written by \`npm run bench\` (bench/run.ts) on ${r.startedAt.toISOString()}, in ${Math.round(r.durationS)} s. Every workload ran for Bosun and its peers in the same run, alternating them, ${r.rounds} round(s) each; a figure is the median over the rounds, with the spread (min–max) beside it.`,
    "",
  );

  out.push("## Machine", "", "| | |", "| --- | --- |");
  for (const [k, v] of r.env.machine) out.push(`| ${k} | ${v} |`);
  out.push(`| load average at end | ${r.loadAtEnd.map((l) => l.toFixed(2)).join(" / ")} |`, "");
  const cores = os.cpus().length;
  if (r.loadAtStart[0]! > cores * 0.75) {
    out.push(`> **The machine was busy**: 1-minute load average ${r.loadAtStart[0]!.toFixed(1)} on ${cores} cores before the run started. Other work competed with this run, so its figures are not to be trusted.`, "");
  }
  out.push("## Versions", "", "| | |", "| --- | --- |");
  for (const [k, v] of r.env.versions) out.push(`| ${k} | ${v} |`);
  out.push("");

  out.push(
    "## Bosun against its peers",
    "",
    "Ratios of medians; the spread is the lowest and highest of the per-round ratios (round i of one ÷ round i of the other, the two having run next to each other). Aims from issue 17 first.",
    "",
    "| ratio | value | spread | aim | result |",
    "| --- | --- | --- | --- | --- |",
  );
  for (const o of outcomes) {
    const target = o.op === "info" ? "(informational)" : `${o.op === ">=" ? "≥" : "≤"} ${o.unit ? `${o.target} ${o.unit}` : `${o.target}×`}`;
    const spread = o.spread ? `${formatOutcome(o, o.spread[0])} – ${formatOutcome(o, o.spread[1])}` : "";
    out.push(`| ${o.label} | ${formatOutcome(o, o.ratio)} | ${spread} | ${target} | ${o.verdict ? `**${o.verdict}**` : ""} |`);
  }
  out.push("");

  out.push("## Figures", "");
  for (const s of sections(r.counts)) {
    out.push(`### ${s.title}`, "", s.about, "", "| figure | median | spread (min–max) | spread % | rounds |", "| --- | ---: | ---: | ---: | --- |");
    for (const metric of s.metrics) {
      const v = r.values.get(metric.key) ?? [];
      if (v.length === 0) {
        out.push(`| ${metric.label} | n/a | | | |`);
        continue;
      }
      const med = median(v);
      const lo = Math.min(...v);
      const hi = Math.max(...v);
      out.push(
        `| ${metric.label} | ${fmt(med, metric.digits)} ${metric.unit} | ${fmt(lo, metric.digits)} – ${fmt(hi, metric.digits)} | ${fmt(((hi - lo) / med) * 100, 0)}% | ${v.map((x) => fmt(x, metric.digits)).join(", ")} |`,
      );
    }
    out.push("");
    if (s.title.startsWith("5.") && r.once.length > 0) {
      out.push("Whole run (one figure, not per round):", "");
      for (const [k, v] of r.once) out.push(`- ${k}: ${v}`);
      out.push("");
    }
  }

  out.push("## How each system is set up", "");
  out.push(...setup(r.counts), "");

  out.push("## Where the time goes", "", r.analysis ?? "_No bench/ANALYSIS.md yet: profile a supervisor (`node --cpu-prof`) during workload 1._", "");

  if (r.notes.length > 0) {
    out.push("## Incidents", "", ...r.notes.map((n) => `- ${n.replaceAll("\n", " ")}`), "");
  }
  if (r.errors.length > 0) {
    out.push("## Errors", "", "Runs that failed (their figures are missing above):", "");
    for (const e of r.errors) out.push("```", e, "```");
    out.push("");
  }
  return out.join("\n");
}

function setup(c: Counts): string[] {
  return [
    "One nats-server and one redis-server, both started by the harness on free loopback ports with their data in a temp dir, serve every run:",
    "",
    "- **nats-server**: `nats-server -a 127.0.0.1 -p PORT -js -sd TMP/jetstream` (JetStream on file storage, defaults otherwise).",
    "- **redis-server**: `redis-server --port PORT --bind 127.0.0.1 --save \"\" --appendonly no` (no persistence).",
    "",
    `Both sides are driven from the harness process (one Node process, the client/producer) and do their work in other processes. The same small JSON payload (\`{"i": N, "tag": "bench"}\`) goes with every job. Before each timed phase ${c.warmup} untimed jobs (${c.latencyWarmup} for latency) start the pools and warm the JIT.`,
    "",
    "**Bosun** (`node dist/cli/main.js`, built from this commit):",
    "",
    `- Each run starts its own supervisor(s): \`bosun supervisor --queues Q --min ${c.pool} --max ${c.pool} --worker-id W\` with \`BOSUN_LOG_LEVEL=warn\`, on a fresh queue Q, all other settings default (3 attempts, 60 s timeout, results kept). It is ready when it answers \`$SRV.PING.bosun\`. After the run it is stopped with SIGTERM (graceful drain), its queue's consumer is deleted and the jobs, results and job-record streams are purged, so every run starts from empty streams.`,
    "- One gateway for the whole run: `bosun gateway --host 127.0.0.1 --port PORT` (defaults otherwise).",
    `- NATS API: the harness's nats.js connection (\`noAsyncTraces: true\`, as Bosun's own processes use) requests \`bosun.api.jobs.submit\` with \`{"type": "noop", "queue": Q, "payload": …}\`, ${c.inflight} requests outstanding; each reply means the job is accepted (stored). A core subscription to \`bosun.results.>\` counts the results of the submitted job ids; the run ends when all have arrived and every one is \`succeeded\`.`,
    `- HTTP: \`POST /api/jobs\` through the gateway with Node's http client, a keep-alive agent with at most ${c.inflight} sockets, ${c.inflight} requests outstanding (202 = accepted); results counted the same way.`,
    "- Latency: one request at a time with `\"wait_ms\": 10000` (NATS) or `POST /api/jobs?wait_ms=10000` (HTTP); the reply is the finished job's result (`state: succeeded`).",
    "",
    `**BullMQ** (${"`bullmq`"} dev dependency, Redis via ioredis):`,
    "",
    `- Producer in the harness process: \`new Queue(name, {connection: {host, port, maxRetriesPerRequest: null}})\`, default job options (attempts 1, **removeOnComplete / removeOnFail not set: completed jobs are kept**, as Bosun keeps every job record and result). Throughput: \`queue.add("noop", data)\` with ${c.inflight} adds outstanding (no addBulk, one job per call like Bosun's submit).`,
    `- Worker in its own Node process (bench/peers/bullmq-worker.ts), as Bosun's supervisor is: \`new Worker(name, processor, {connection, concurrency: ${c.pool}, useWorkerThreads: false})\`, other options default (lockDuration 30 s, stalledInterval 30 s, drainDelay 5 s, removeOnComplete unset).`,
    `  - in-process: the processor is \`async () => null\` in the worker process; concurrency ${c.pool} = Bosun's pool size.`,
    `  - sandboxed: the processor is the file bench/peers/noop-processor.cjs; BullMQ runs it in child processes (not worker threads), at most ${c.pool} = concurrency, as many as Bosun's pool.`,
    "- Throughput ends when the worker process has seen `completed` for every job (it counts its own `completed`/`failed` events and tells the harness over IPC); any `failed` fails the run.",
    "- Latency: in-process worker; one job at a time, `await (await queue.add(...)).waitUntilFinished(queueEvents, 10000)` with a `QueueEvents` in the harness.",
    "- Each run uses a fresh queue name; Redis is flushed (FLUSHALL) after each run.",
    "",
    "**Raw JetStream**: see section 3; the harness's own nats.js connections, nothing else running on the server at the time.",
    "",
    "Order: in each round the workloads run in the order 1–4, and within a workload the systems take turns, their order rotated each round so no system always goes first.",
  ];
}
