/** What a hop of a trace is (platform/tracing.ts makes them), apart so that a stand-in for tracing can share it. */
import type { Attributes, Span } from "@opentelemetry/api";

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
}
