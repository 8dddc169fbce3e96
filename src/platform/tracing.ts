/**
 * Traces across processes: a W3C traceparent travels with every request and
 * job (NATS headers on requests and results, the job envelope on the job, the
 * run command to the execution process), and each hop opens a span with
 * @opentelemetry/api. Without an SDK registered in the process those spans
 * are no-ops that still carry the incoming context on, so a trace that
 * enters Bosun leaves it whole; the gateway and the NATS API start one when a
 * request brings none. Register an SDK (e.g. `node --import ./otel.mjs`, see
 * docs/client.md) to record and export the spans.
 */
import { randomBytes } from "node:crypto";
import {
  context,
  isSpanContextValid,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  TraceFlags,
  type Attributes,
  type Context,
  type Span,
} from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { VERSION } from "./version.js";

export { SpanKind };
export type { Context, Span };

export const TRACEPARENT = "traceparent";
export const TRACESTATE = "tracestate";

/** Used directly, not through the global propagator, which is a no-op until an SDK installs one. */
const w3c = new W3CTraceContextPropagator();
const tracer = () => trace.getTracer("bosun", VERSION);

type Carrier = Record<string, string | undefined>;
/** Reads a header from a plain record or from NATS / Fetch headers. */
type HeaderSource = Carrier | { get(name: string): string | null | undefined } | undefined;

const read = (source: HeaderSource, name: string): string | undefined => {
  if (!source) return undefined;
  const value = typeof source.get === "function" ? (source as { get(n: string): string | null | undefined }).get(name) : (source as Carrier)[name];
  return typeof value === "string" && value.length > 0 ? value : undefined;
};

/** The remote parent a traceparent (and tracestate) names; the root context for none or a malformed one. */
export function contextFrom(source: HeaderSource): Context {
  const traceparent = read(source, TRACEPARENT);
  if (!traceparent) return ROOT_CONTEXT;
  const carrier: Carrier = { [TRACEPARENT]: traceparent, [TRACESTATE]: read(source, TRACESTATE) };
  return w3c.extract(ROOT_CONTEXT, carrier, { get: (c, k) => c[k], keys: (c) => Object.keys(c) });
}

/** The traceparent (and tracestate) of a span, for a header or a field. */
export function headersOf(span: Span | undefined): Record<string, string> {
  if (!span) return {};
  const carrier: Record<string, string> = {};
  w3c.inject(trace.setSpan(ROOT_CONTEXT, span), carrier, { set: (c, k, v) => (c[k] = v) });
  return carrier;
}

export const traceparentOf = (span: Span | undefined): string | undefined => headersOf(span)[TRACEPARENT];

/** The active context's traceparent, for an outgoing request (none when nothing is active). */
export const traceHeaders = (): Record<string, string> => headersOf(trace.getSpan(context.active()));

/**
 * Starts a span under `parent`. Without an SDK the API's no-op span carries
 * the parent's ids on; with neither an SDK nor a parent, a fresh trace id is
 * made here, so every request has a traceparent to pass on.
 */
export function startSpan(name: string, kind: SpanKind, parent: Context, attributes?: Attributes): Span {
  const span = tracer().startSpan(name, { kind, attributes }, parent);
  if (isSpanContextValid(span.spanContext())) return span;
  return trace.wrapSpanContext({ traceId: randomBytes(16).toString("hex"), spanId: randomBytes(8).toString("hex"), traceFlags: TraceFlags.NONE });
}

/** Ends a span with an error status when the work failed. */
export function endSpan(span: Span, error?: { code: string; message: string } | unknown): void {
  if (error !== undefined && error !== null) {
    const e = error as { code?: unknown; message?: unknown };
    span.setStatus({ code: SpanStatusCode.ERROR, message: typeof e.message === "string" ? e.message : String(error) });
    if (typeof e.code === "string") span.setAttribute("bosun.error.code", e.code);
  }
  span.end();
}

/** Runs work with the span active, so handlers (and libraries they call) see it as the current context. */
export const withSpan = <T>(span: Span, work: () => T): T => context.with(trace.setSpan(context.active(), span), work);

/** Exports spans still buffered by an SDK (a BatchSpanProcessor) before a process exits; at most `ms`. */
export async function flushTraces(ms = 1000): Promise<void> {
  const provider = trace.getTracerProvider() as { getDelegate?(): unknown };
  const delegate = (provider.getDelegate?.() ?? provider) as { forceFlush?(): Promise<void> };
  if (typeof delegate.forceFlush !== "function") return;
  await Promise.race([delegate.forceFlush().catch(() => undefined), new Promise((resolve) => setTimeout(resolve, ms).unref())]);
}
