/**
 * The BullMQ peer's worker host: one Node process running one BullMQ Worker,
 * like a Bosun supervisor is one process running its pool. Started by the
 * harness with IPC; configured by environment:
 *
 *   BENCH_REDIS_PORT, BENCH_QUEUE, BENCH_CONCURRENCY, BENCH_PROCESSOR (peers/processor.cjs),
 *   BENCH_MODE = inprocess (the processor runs in this process)
 *              | sandboxed (BullMQ runs the processor file in child processes)
 *
 * It counts completed and failed jobs and tells the harness when a count
 * it asked about ({t: "notify", at}) is reached.
 */
import { createRequire } from "node:module";
import { Worker, type Processor } from "bullmq";

type ParentMessage = { t: "notify"; at: number } | { t: "stop" };

const env = (name: string): string => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};

const mode = env("BENCH_MODE");
const connection = { host: "127.0.0.1", port: Number(env("BENCH_REDIS_PORT")), maxRetriesPerRequest: null };
const processorFile = env("BENCH_PROCESSOR");
const inProcess = createRequire(import.meta.url)(processorFile) as Processor;
const worker = new Worker(env("BENCH_QUEUE"), mode === "sandboxed" ? processorFile : inProcess, {
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
