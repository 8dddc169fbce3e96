/**
 * Wire shapes of schedules (recurring jobs). A cron expression and its time
 * zone are checked here, by the cron library the ticks are computed with,
 * so the gateway and the supervisor refuse the same bad schedules.
 */
import { CronExpressionParser } from "cron-parser";
import { z } from "zod";
import { MAX_DELAY_MS, MAX_NAME_LENGTH } from "./limits.js";
import { NAME_PATTERN } from "./subjects.js";
import { SubmitFields } from "./schemas.js";

/** Shortest every_ms: below it the claim per tick costs more than the job. */
export const MIN_EVERY_MS = 100;
export const MAX_CRON_LENGTH = 256;
export const MAX_SCHEDULES_LISTED = 10_000;

export const ScheduleId = z.string().regex(NAME_PATTERN, `schedule_id must be 1-${MAX_NAME_LENGTH} characters of A-Z a-z 0-9 _ -`);

/** A time zone the runtime knows (IANA name, e.g. "Europe/Paris"). */
export const TimeZone = z
  .string()
  .min(1)
  .max(64)
  .refine(
    (tz) => {
      try {
        new Intl.DateTimeFormat("en-US", { timeZone: tz });
        return true;
      } catch {
        return false;
      }
    },
    { message: "timezone must be an IANA time zone name, e.g. UTC or Europe/Paris" },
  );

/** Five fields (minutes first) or six (seconds first); no aliases, so what runs is what is written. */
export const CronExpression = z
  .string()
  .min(1)
  .max(MAX_CRON_LENGTH)
  .superRefine((cron, ctx) => {
    const fields = cron.trim().split(/\s+/).length;
    if (fields !== 5 && fields !== 6) {
      ctx.addIssue({ code: "custom", message: `cron must have 5 fields (minute first) or 6 (second first), not ${fields}` });
      return;
    }
    try {
      CronExpressionParser.parse(cron, { tz: "UTC" }).next();
    } catch (err) {
      ctx.addIssue({ code: "custom", message: `cron: ${(err as Error).message}` });
    }
  });

/** The job each tick submits: a submit body without the fields a schedule sets itself. */
/**
 * How a schedule tick's idempotency key begins. A caller's key may not
 * (the intake refuses it), so nobody can take a tick's key ahead of it and
 * have their job recorded as the tick's, or keep the tick's own from running.
 */
export const TICK_KEY_PREFIX = "schedule:";

export const ScheduleJob = SubmitFields.omit({ idempotency_key: true, delay_ms: true, run_at: true, wait_ms: true }).strict();
export type ScheduleJob = z.infer<typeof ScheduleJob>;

/** POST /api/schedules: creates or replaces. */
export const ScheduleSpec = z
  .object({
    schedule_id: ScheduleId,
    cron: CronExpression.optional(),
    every_ms: z.number().int().min(MIN_EVERY_MS).max(MAX_DELAY_MS).optional(),
    timezone: TimeZone.default("UTC"),
    job: ScheduleJob,
    paused: z.boolean().default(false),
    misfire: z.enum(["run_once", "skip"]).default("run_once"),
  })
  .strict()
  .refine((s) => (s.cron === undefined) !== (s.every_ms === undefined), { message: "give cron or every_ms (one of them)", path: ["cron"] });
export type ScheduleSpec = z.infer<typeof ScheduleSpec>;

const isoTime = z.iso.datetime({ offset: true });

/** A schedule as shown: its spec and where its ticks stand. */
export const Schedule = z.object({
  schedule_id: ScheduleId,
  cron: z.string().optional(),
  every_ms: z.number().int().optional(),
  timezone: z.string(),
  job: z.record(z.string(), z.unknown()),
  paused: z.boolean(),
  misfire: z.enum(["run_once", "skip"]),
  /** The next tick that will make a job (null while paused). */
  next_run_at: isoTime.nullable(),
  /** The tick time of the last job made (a trigger counts, at the time it was asked). */
  last_run_at: isoTime.nullable(),
  last_job_id: z.string().nullable(),
  created_at: isoTime,
  updated_at: isoTime,
});
export type Schedule = z.infer<typeof Schedule>;

export const ScheduleIdRequest = z.object({ schedule_id: ScheduleId }).strict();
export type ScheduleIdRequest = z.infer<typeof ScheduleIdRequest>;
export const ScheduleParams = ScheduleIdRequest;

export const ListSchedulesReply = z.object({ schedules: z.array(Schedule) });
export type ListSchedulesReply = z.infer<typeof ListSchedulesReply>;

export const DeleteScheduleReply = z.object({ schedule_id: ScheduleId, deleted: z.literal(true) });
export type DeleteScheduleReply = z.infer<typeof DeleteScheduleReply>;

export const TriggerReply = z.object({ schedule_id: ScheduleId, job_id: z.string() });
export type TriggerReply = z.infer<typeof TriggerReply>;
