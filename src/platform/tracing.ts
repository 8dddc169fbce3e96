/**
 * Traces across processes: a W3C traceparent travels with every request and
 * job (NATS headers on requests and results, the job envelope on the job, the
 * run command to the execution process), and each hop is a span from
 * @opentelemetry/api once an SDK is registered in the process.
 *
 * Without an SDK a hop costs next to nothing: no span objects, the incoming
 * traceparent passed on as it came (so a trace that enters Bosun leaves it
 * whole), and a fresh one made only where a job enters through HTTP without
 * one. Register an SDK (e.g. `node --import ./otel.mjs`, see docs/client.md)
 * to record and export the spans.
 */
import { randomBytes } from "node:crypto";
import {
  context,
  isSpanContextValid,
  ProxyTracerProvider,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Span,
} from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { VERSION } from "./version.js";

export { SpanKind };

export const TRACEPARENT = "traceparent";
/** version 00: trace id (32 hex, not all zero), span id (16 hex, not all zero), flags. */
const TRACEPARENT_PATTERN = /^00-(?!0{32})([0-9a-f]{32})-(?!0{16})([0-9a-f]{16})-[0-9a-f]{2}$/;

/** Used directly, not through the global propagator, which is a no-op until an SDK installs one. */
const w3c = new W3CTraceContextPropagator();
const NO_SDK = new ProxyTracerProvider().getDelegate();
const tracer = () => trace.getTracer("bosun", VERSION);

/** Whether an SDK is registered in this process (checked per hop: it may be registered after start-up). */
const recording = (): boolean => (trace.getTracerProvider() as ProxyTracerProvider).getDelegate?.() !== NO_SDK;

export const validTraceparent = (value: unknown): value is string => typeof value === "string" && TRACEPARENT_PATTERN.test(value);

/** A trace's ids, from a traceparent. */
export function traceIds(traceparent: string): { trace_id: string; span_id: string } {
  const [, traceId = "", spanId = ""] = TRACEPARENT_PATTERN.exec(traceparent) ?? [];
  return { trace_id: traceId, span_id: spanId };
}

/** One hop of a trace: what to pass on, and (with an SDK) the span that covers this hop's work. */
export interface Hop {
  /** The traceparent to send on (this hop's span; without an SDK, the one that came in). */
  readonly traceparent: string | undefined;
  readonly span: Span | undefined;
  setAttribute(name: string, value: string | number): void;
  /** Ends the span, with an error status when the work failed. */
  end(error?: { code: string; message: string }): void;
  /** Runs work with the span as the active context (instrumented libraries become its children). */
  run<T>(work: () => T): T;
}

export interface HopOptions {
  /** Attributes of the span; only built when an SDK records. */
  attributes?: () => Attributes;
  /** Start a trace when none came in (where jobs enter from outside: the gateway). */
  start?: boolean;
}

const passOn = (traceparent: string | undefined): Hop => ({
  traceparent,
  span: undefined,
  setAttribute: () => undefined,
  end: () => undefined,
  run: (work) => work(),
});

export function hop(name: string, kind: SpanKind, incoming: string | null | undefined, opts: HopOptions = {}): Hop {
  const parent = validTraceparent(incoming) ? incoming : undefined;
  if (!recording()) return passOn(parent ?? (opts.start ? `00-${randomBytes(16).toString("hex")}-${randomBytes(8).toString("hex")}-01` : undefined));
  const parentContext = parent ? w3c.extract(ROOT_CONTEXT, { [TRACEPARENT]: parent }, { get: (c, k) => c[k], keys: (c) => Object.keys(c) }) : ROOT_CONTEXT;
  const span = tracer().startSpan(name, { kind, attributes: opts.attributes?.() }, parentContext);
  if (!isSpanContextValid(span.spanContext())) return passOn(parent);
  const carrier: Record<string, string> = {};
  w3c.inject(trace.setSpan(ROOT_CONTEXT, span), carrier, { set: (c, k, v) => (c[k] = v) });
  return {
    traceparent: carrier[TRACEPARENT],
    span,
    setAttribute: (key, value) => void span.setAttribute(key, value),
    end(error) {
      if (error) {
        span.setStatus({ code: SpanStatusCode.ERROR, message: error.message });
        span.setAttribute("bosun.error.code", error.code);
      }
      span.end();
    },
    run: (work) => context.with(trace.setSpan(context.active(), span), work),
  };
}

/** The active context's traceparent, for an outgoing request (none when nothing is active). */
export function traceHeaders(): Record<string, string> {
  const span = trace.getSpan(context.active());
  if (!span || !isSpanContextValid(span.spanContext())) return {};
  const carrier: Record<string, string> = {};
  w3c.inject(trace.setSpan(ROOT_CONTEXT, span), carrier, { set: (c, k, v) => (c[k] = v) });
  return carrier;
}

/** Exports spans still buffered by an SDK (a BatchSpanProcessor) before a process exits; at most `ms`. */
export async function flushTraces(ms = 1000): Promise<void> {
  if (!recording()) return;
  const delegate = (trace.getTracerProvider() as ProxyTracerProvider).getDelegate() as { forceFlush?(): Promise<void> };
  if (typeof delegate.forceFlush !== "function") return;
  await Promise.race([delegate.forceFlush().catch(() => undefined), new Promise((resolve) => setTimeout(resolve, ms).unref())]);
}
