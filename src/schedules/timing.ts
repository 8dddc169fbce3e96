/**
 * When a schedule's ticks fall: cron (five or six fields, in its time zone,
 * computed by cron-parser) or every `every_ms` from the schedule's anchor
 * (the time it was created or replaced). Ticks are whole milliseconds since
 * the epoch, so every supervisor computes the same ones.
 */
import { CronExpressionParser } from "cron-parser";
import type { ScheduleSpec } from "../contract/index.js";

export interface Cadence {
  spec: Pick<ScheduleSpec, "cron" | "every_ms" | "timezone">;
  /** every_ms ticks are anchor + k * every_ms, k >= 1. */
  anchorMs: number;
}

/** The first tick strictly after `afterMs`. */
export function tickAfter({ spec, anchorMs }: Cadence, afterMs: number): number {
  if (spec.every_ms !== undefined) {
    const k = Math.max(1, Math.floor((afterMs - anchorMs) / spec.every_ms) + 1);
    return anchorMs + k * spec.every_ms;
  }
  return CronExpressionParser.parse(spec.cron!, { tz: spec.timezone, currentDate: new Date(afterMs) }).next().getTime();
}

/** The last tick at or before `atMs` (at least the first tick, which the caller knows has passed). */
export function tickAtOrBefore({ spec, anchorMs }: Cadence, atMs: number): number {
  if (spec.every_ms !== undefined) return anchorMs + Math.max(1, Math.floor((atMs - anchorMs) / spec.every_ms)) * spec.every_ms;
  return CronExpressionParser.parse(spec.cron!, { tz: spec.timezone, currentDate: new Date(atMs + 1) }).prev().getTime();
}
