/**
 * "Tracing on with a no-op SDK" for bench/tracing.ts (loaded with node
 * --import into every Bosun process): a real SDK tracer provider and context
 * manager, so every span is created, recorded and ended, but exported nowhere.
 */
import { context, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { TracerProvider } from "@opentelemetry/sdk-trace";

context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
trace.setGlobalTracerProvider(new TracerProvider({ spanProcessors: [] }));
