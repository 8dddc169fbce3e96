/**
 * Error boundaries for everything that runs outside a request: NATS
 * subscription callbacks, watch loops, timers, and the messages they read.
 * A throw in a nats.js callback ends the connection's reader loop (every
 * request then times out), and an unhandled rejection ends the process;
 * here either is one log line and the loop goes on.
 */
import type { Msg } from "@nats-io/nats-core";
import type { Logger } from "pino";
import type { z } from "zod";
import { tryDecode, type DecodeLimits } from "../contract/index.js";

/** Wraps a callback (sync or async): nothing it throws or rejects with escapes; it is logged. */
export function guard<A extends unknown[]>(log: Logger, what: string, fn: (...args: A) => unknown): (...args: A) => void {
  const fail = (err: unknown) => log.error({ err, in: what }, `${what} failed`);
  return (...args) => {
    try {
      const result = fn(...args);
      if (result instanceof Promise) result.catch(fail);
    } catch (err) {
      fail(err);
    }
  };
}

/** A nats.js subscription callback that hands each message to `handle` inside a guard. */
export function onMessage(log: Logger, what: string, handle: (msg: Msg) => unknown): (err: Error | null, msg: Msg) => void {
  const guarded = guard(log, what, handle);
  return (err, msg) => {
    if (err) log.warn({ err, in: what }, `${what}: subscription error`);
    else guarded(msg);
  };
}

/**
 * Visits every item of an async iterator (a KV watch, a subscription) in
 * order. An item whose visit throws is logged and skipped; the iterator
 * ending with an error is logged too. Resolves when the iterator ends.
 */
export async function forEachGuarded<T>(items: AsyncIterable<T>, log: Logger, what: string, visit: (item: T) => unknown): Promise<void> {
  const fail = (err: unknown) => log.error({ err, in: what }, `${what} failed`);
  try {
    for await (const item of items) {
      try {
        const result = visit(item);
        if (result instanceof Promise) await result.catch(fail);
      } catch (err) {
        fail(err);
      }
    }
  } catch (err) {
    log.error({ err, in: what }, `${what} ended with an error`);
  }
}

/** Dropped-message log lines per source and second; past it they are counted and summed up. */
const DROP_LOG_PER_SECOND = 10;
const dropWindows = new Map<string, { start: number; logged: number; suppressed: number }>();

export interface InboundContext {
  log: Logger;
  /** Where it was read: "jobs stream", "heartbeat", "job record", ... */
  source: string;
  subject?: string;
  seq?: number;
}

/**
 * The decode boundary for what is read back from NATS (stream messages,
 * bucket values, subscriptions): the value, or undefined with a log line.
 * Callers then drop (ack/term) the message; it never reaches code that
 * assumes it is valid.
 */
export function readInbound<S extends z.ZodType>(schema: S, data: Uint8Array | string, ctx: InboundContext, limits?: DecodeLimits): z.output<S> | undefined {
  const decoded = tryDecode(schema, data, limits);
  if (decoded.ok) return decoded.value;
  logDropped(ctx, decoded.error.message);
  return undefined;
}

/** Stored messages already reported: a listing reads the same bad one again and again. */
const reported = new Set<string>();
const MAX_REPORTED = 1000;

/**
 * One line per dropped message (a stored one once per process), at most
 * DROP_LOG_PER_SECOND per source; the rest are counted in the next line.
 */
export function logDropped(ctx: InboundContext, reason: string): void {
  if (ctx.seq !== undefined && ctx.subject !== undefined) {
    const key = `${ctx.source}:${ctx.subject}:${ctx.seq}`;
    if (reported.has(key)) return;
    if (reported.size >= MAX_REPORTED) reported.clear();
    reported.add(key);
  }
  const now = Date.now();
  let window = dropWindows.get(ctx.source);
  if (!window || now - window.start >= 1000) {
    window = { start: now, logged: 0, suppressed: window?.suppressed ?? 0 };
    dropWindows.set(ctx.source, window);
  }
  if (window.logged >= DROP_LOG_PER_SECOND) {
    window.suppressed++;
    return;
  }
  window.logged++;
  const suppressed = window.suppressed;
  window.suppressed = 0;
  ctx.log.warn(
    { source: ctx.source, subject: ctx.subject?.slice(0, 256), seq: ctx.seq, reason: reason.slice(0, 300), ...(suppressed > 0 && { not_logged_before: suppressed }) },
    "dropping a malformed message",
  );
}

/**
 * The last resort, for a promise someone forgot to catch: logged as the
 * bug it is, and the process keeps serving (its jobs and requests are not
 * lost to one stray rejection). The fuzz test fails on any such line.
 */
export function logUnhandledRejections(log: Logger): void {
  process.on("unhandledRejection", (err) => log.error({ err }, "unhandled rejection"));
}
