/**
 * The BullMQ peer's worker host: one Node process running one BullMQ Worker,
 * like a Bosun supervisor is one process running its pool. Started by the
 * harness with IPC; configured by environment:
 *
 *   BENCH_REDIS_PORT, BENCH_QUEUE, BENCH_CONCURRENCY,
 *   BENCH_MODE = inprocess (the processor is a function in this process)
 *              | sandboxed (the processor is BENCH_PROCESSOR, run in child processes)
 *
 * It counts completed and failed jobs and tells the harness when a count
 * it asked about ({t: "notify", at}) is reached.
 */
import { Worker, type Processor } from "bullmq";

type ParentMessage = { t: "notify"; at: number } | { t: "stop" };

const env = (name: string): string => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};

const mode = env("BENCH_MODE");
const connection = { host: "127.0.0.1", port: Number(env("BENCH_REDIS_PORT")), maxRetriesPerRequest: null };
const inProcess: Processor = async () => null;
const worker = new Worker(env("BENCH_QUEUE"), mode === "sandboxed" ? env("BENCH_PROCESSOR") : inProcess, {
  connection,
  concurrency: Number(env("BENCH_CONCURRENCY")),
  // Child processes, not worker threads: the same isolation as Bosun's execution processes.
  useWorkerThreads: false,
});

let completed = 0;
let failed = 0;
let targets: number[] = [];

function check(): void {
  const done = completed + failed;
  const reached = targets.filter((at) => done >= at);
  if (reached.length === 0) return;
  targets = targets.filter((at) => done < at);
  for (const at of reached) process.send?.({ t: "reached", at, completed, failed });
}

worker.on("completed", () => {
  completed++;
  check();
});
worker.on("failed", () => {
  failed++;
  check();
});
worker.on("error", (err) => process.stderr.write(`bullmq worker error: ${err.message}\n`));

process.on("message", (msg: ParentMessage) => {
  if (msg.t === "notify") {
    targets.push(msg.at);
    check();
  } else if (msg.t === "stop") {
    void worker.close().finally(() => process.exit(0));
  }
});
// The harness going away leaves nothing to do.
process.on("disconnect", () => process.exit(0));

await worker.waitUntilReady();
process.send?.({ t: "ready" });
