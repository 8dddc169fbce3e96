/**
 * Traces across processes: a W3C traceparent travels with every request and
 * job, once per hop (the NATS request's header, the job's envelope, the run
 * command to the execution process), and each hop is a span from
 * @opentelemetry/api once an SDK is registered in the process.
 *
 * Without an SDK a hop costs next to nothing: no span objects, and the
 * incoming traceparent passed on as it came (so a trace that enters Bosun
 * leaves it whole). None is made when none came: with no SDK nothing in the
 * process records a span, so a made-up trace would be one no backend ever
 * sees, and carrying it with the job cost 6-11 % of HTTP throughput. Register
 * an SDK (e.g. `node --import ./otel.mjs`, see docs/client.md) to record and
 * export the spans; a hop then starts a trace where none came in.
 */
import {
  context,
  INVALID_TRACEID,
  isSpanContextValid,
  ProxyTracerProvider,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Context,
  type Span,
  type SpanContext,
  type Tracer,
  type TracerProvider,
} from "@opentelemetry/api";
import type { Hop, HopOptions } from "./hop.js";
import { VERSION } from "./version.js";

export type { Hop, HopOptions };

export { SpanKind };

export const TRACEPARENT = "traceparent";
/** version 00: trace id (32 hex, not all zero), span id (16 hex, not all zero), flags. */
const TRACEPARENT_PATTERN = /^00-(?!0{32})([0-9a-f]{32})-(?!0{16})([0-9a-f]{16})-([0-9a-f]{2})$/;

const NO_SDK = new ProxyTracerProvider().getDelegate();
const sdkProvider = (): TracerProvider | undefined => {
  const delegate = (trace.getTracerProvider() as ProxyTracerProvider).getDelegate?.();
  return delegate === NO_SDK ? undefined : delegate;
};

/**
 * Bosun's tracer from the SDK registered now, kept while that SDK stays.
 * Checked per hop, so an SDK registered after start-up is used from its
 * first hop on: the check is two property reads (about 16 ns), cheaper than
 * reading a clock to check less often.
 */
let cached: { provider: TracerProvider; tracer: Tracer } | undefined;
function sdkTracer(): Tracer | undefined {
  const provider = sdkProvider();
  if (!provider) return undefined;
  if (cached?.provider !== provider) cached = { provider, tracer: provider.getTracer("bosun", VERSION) };
  return cached.tracer;
}

/*
 * A traceparent is read and written here rather than by a W3C propagator:
 * a hop runs per job in every process, and the propagator's carrier objects,
 * second parse and context copies are per-job work a hop does not need.
 */
const remoteParent = (m: RegExpExecArray): Context =>
  trace.setSpanContext(ROOT_CONTEXT, { traceId: m[1]!, spanId: m[2]!, traceFlags: parseInt(m[3]!, 16), isRemote: true });
const traceparentOf = (c: SpanContext): string => `00-${c.traceId}-${c.spanId}-${(c.traceFlags & 0xff).toString(16).padStart(2, "0")}`;

export const validTraceparent = (value: unknown): value is string => typeof value === "string" && TRACEPARENT_PATTERN.test(value);
/** An incoming traceparent's parts; null for none or one that is not a valid version 00 (with an SDK a new trace starts then). */
const parsed = (incoming: string | null | undefined): RegExpExecArray | null => (typeof incoming === "string" ? TRACEPARENT_PATTERN.exec(incoming) : null);

/** A trace's ids, from a traceparent. */
export function traceIds(traceparent: string): { trace_id: string; span_id: string } {
  const [, traceId = "", spanId = ""] = TRACEPARENT_PATTERN.exec(traceparent) ?? [];
  return { trace_id: traceId, span_id: spanId };
}

const passOn = (traceparent: string | undefined): Hop => ({
  traceparent,
  span: undefined,
  setAttribute: () => undefined,
  end: () => undefined,
  run: (work) => work(),
});

export function hop(name: string, kind: SpanKind, incoming: string | null | undefined, opts: HopOptions = {}): Hop {
  const parent = parsed(incoming);
  const tracer = sdkTracer();
  if (!tracer) return passOn(parent?.[0]);
  const span = tracer.startSpan(name, { kind, attributes: opts.attributes?.() }, parent ? remoteParent(parent) : ROOT_CONTEXT);
  if (span.spanContext().traceId === INVALID_TRACEID) return passOn(parent?.[0]);
  return new SpanHop(span);
}

/**
 * A hop that records a span. A class rather than an object literal: a
 * literal with a getter is built on V8's slow path, which measured about
 * 4.5 µs per hop (against 1 µs for the span itself), on two hops per job in
 * the supervisor.
 */
class SpanHop implements Hop {
  #traceparent: string | undefined;

  constructor(readonly span: Span) {}

  // Formatted on first use: of the NATS API's hops only a submit's passes its traceparent on.
  get traceparent(): string {
    return (this.#traceparent ??= traceparentOf(this.span.spanContext()));
  }

  setAttribute(key: string, value: string | number): void {
    this.span.setAttribute(key, value);
  }

  end(error?: { code: string; message: string }): void {
    if (error) {
      this.span.setStatus({ code: SpanStatusCode.ERROR, message: error.message });
      this.span.setAttribute("bosun.error.code", error.code);
    }
    this.span.end();
  }

  run<T>(work: () => T): T {
    return context.with(trace.setSpan(context.active(), this.span), work);
  }
}

/**
 * Work that continues the incoming span rather than recording one of its
 * own: with an SDK, `run` makes the incoming span the active (remote)
 * parent, so spans the work starts (instrumented libraries) are its children.
 */
export function continueTrace(incoming: string | null | undefined): Hop {
  const parent = parsed(incoming);
  const hop = passOn(parent?.[0]);
  if (!parent || !sdkProvider()) return hop;
  return { ...hop, run: (work) => context.with(remoteParent(parent), work) };
}

/** The active context's traceparent, for an outgoing request (none when nothing is active). */
export function traceHeaders(): Record<string, string> {
  const span = trace.getSpan(context.active());
  if (!span || !isSpanContextValid(span.spanContext())) return {};
  return { [TRACEPARENT]: traceparentOf(span.spanContext()) };
}

/** Exports spans still buffered by an SDK (a BatchSpanProcessor) before a process exits; at most `ms`. */
export async function flushTraces(ms = 1000): Promise<void> {
  const delegate = sdkProvider() as { forceFlush?(): Promise<void> } | undefined;
  if (typeof delegate?.forceFlush !== "function") return;
  await Promise.race([delegate.forceFlush().catch(() => undefined), new Promise((resolve) => setTimeout(resolve, ms).unref())]);
}
