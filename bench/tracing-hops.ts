/**
 * The tracing work of one noop job measured alone, in one process, without
 * NATS: what bench/tracing.ts's end-to-end figures, on a shared machine,
 * cannot resolve below a few per cent. Per job: the submit's API hop, the
 * job's envelope and run command through JSON (with the traceparent they
 * carry), the run hop, and the execution process continuing the trace.
 * Without an SDK, then with a no-op one (spans recorded, exported nowhere);
 * each step the best of 7 batches.
 *   npm run build && npx tsc -p bench/tsconfig.json && node dist/bench/bench/tracing-hops.js
 */
import { trace } from "@opentelemetry/api";
import { TracerProvider } from "@opentelemetry/sdk-trace";
import type * as Tracing from "../src/platform/tracing.js";

// The build's, like the processes bench/tracing.ts starts (src/ compiled beside the bench cannot find package.json).
const { continueTrace, hop, SpanKind } = (await import(new URL("../../platform/tracing.js", import.meta.url).href)) as typeof Tracing;

const BATCH = 50_000;
const job = { job_id: "28zSrz2cI20I0E4G9INHR57BRGS32J", type: "noop", queue: "default", payload: null, correlation_id: "C1MWMUJ5I4XGILSDJ24Y46", timeout_ms: 30_000 };

const steps = {
  "API hop": (_incoming?: string) => {
    const api = hop("bosun.api jobs_submit", SpanKind.SERVER, undefined, { attributes: () => ({ "messaging.destination.name": "bosun.api.jobs.submit" }) });
    const traceparent = api.traceparent;
    api.end();
    return traceparent;
  },
  "envelope JSON": (traceparent: string | undefined) => (JSON.parse(JSON.stringify({ ...job, ...(traceparent && { traceparent }) })) as { traceparent?: string }).traceparent,
  "run hop": (traceparent: string | undefined) => {
    const run = hop("bosun.run noop", SpanKind.CONSUMER, traceparent, {
      attributes: () => ({ "bosun.job_id": job.job_id, "bosun.queue": job.queue, "bosun.attempt": 1, "bosun.worker_id": "w" }),
    });
    run.end();
    return run.traceparent;
  },
  "run command JSON": (traceparent: string | undefined) => (JSON.parse(JSON.stringify({ t: "run", job_id: job.job_id, type: job.type, attempt: 1, traceparent })) as { traceparent?: string }).traceparent,
  "execution process": (traceparent: string | undefined) => {
    const continued = continueTrace(traceparent);
    continued.run(() => undefined);
    continued.end();
    return traceparent;
  },
};

/** µs per job of each step, given the traceparent a job brings to it (none off; with an SDK, the one the API hop started). */
function measure(traceparent: string | undefined): Record<string, number> {
  const best: Record<string, number> = {};
  for (const [name, step] of Object.entries(steps)) {
    for (let round = 0; round < 7; round++) {
      const t0 = performance.now();
      for (let i = 0; i < BATCH; i++) step(traceparent);
      best[name] = Math.min(best[name] ?? Infinity, ((performance.now() - t0) * 1000) / BATCH);
    }
  }
  return best;
}

const off = measure(undefined);
trace.setGlobalTracerProvider(new TracerProvider({ spanProcessors: [] }));
const sdk = measure(steps["API hop"]());
const sum = (r: Record<string, number>) => Object.values(r).reduce((a, b) => a + b, 0);
console.log("µs per noop job       off     sdk");
for (const name of Object.keys(steps)) console.log(`  ${name.padEnd(18)} ${off[name]!.toFixed(2).padStart(6)}  ${sdk[name]!.toFixed(2).padStart(6)}`);
console.log(`  ${"all".padEnd(18)} ${sum(off).toFixed(2).padStart(6)}  ${sum(sdk).toFixed(2).padStart(6)}`);
