/**
 * "Tracing on with a no-op SDK" for bench/tracing.ts (loaded with node
 * --import into every Bosun process): a real SDK tracer provider, so every
 * span is created, recorded and ended, but exported nowhere. With
 * BENCH_TRACING_ALS=1 also the SDK's AsyncLocalStorage context manager (what
 * NodeSDK registers), whose cost is Node's async tracking of every promise.
 */
import { context, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { TracerProvider } from "@opentelemetry/sdk-trace";

if (process.env.BENCH_TRACING_ALS === "1") context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
trace.setGlobalTracerProvider(new TracerProvider({ spanProcessors: [] }));
