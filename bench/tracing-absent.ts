/**
 * The "baseline" of bench/tracing.ts: src/platform/tracing.ts as if Bosun
 * had no tracing at all (same exports, so the rest of this build compiles
 * unchanged; no traceparent is made, read or passed on). Copied over that
 * file in a copy of this tree (its import of ../src/platform/ made ./), so
 * baseline and "off" differ in tracing only.
 */
import { SpanKind } from "@opentelemetry/api";
import type { Hop } from "../src/platform/hop.js";

export type { Hop };
export { SpanKind };
export const TRACEPARENT = "traceparent";

const absent: Hop = { traceparent: undefined, span: undefined, setAttribute: () => undefined, end: () => undefined, run: (work) => work() };

export const validTraceparent = (_value: unknown): _value is string => false;
export const traceIds = (_traceparent: string) => ({ trace_id: "", span_id: "" });
export const hop = (_name: string, _kind: SpanKind, _incoming: string | null | undefined, _opts?: unknown): Hop => absent;
export const continueTrace = (_incoming: string | null | undefined): Hop => absent;
export const traceHeaders = (): Record<string, string> => ({});
export const flushTraces = async (_ms?: number): Promise<void> => undefined;
