/**
 * The decode boundary of the record model: every message a job's state is
 * read from (its job message, scheduled message, interim record, final
 * record, dead letter), whether by a direct get, a listing or a
 * subscription, becomes a typed value here or reads as absent with a log
 * line (platform/guard.ts). Anything with publish rights can write to these
 * subjects, so a message counts only if it passes the contract's schema
 * with the submit's limits and names the job its subject names.
 */
import type { Logger } from "pino";
import type { z } from "zod";
import { headerNames, isJobId, JobEnvelope, MAX_ATTEMPTS } from "../contract/index.js";
import { logDropped, readInbound, type InboundContext } from "../platform/guard.js";
import type { ParkedJob } from "./status.js";

/** A stored or delivered message: a direct get's, a subscription's or a pull's. */
export interface StoredLike {
  subject: string;
  data: Uint8Array;
  seq?: number;
  headers?: { get(name: string): string } | undefined;
}

/** The most attempts a message can say were used before it: lost runs can exceed max_attempts. */
export const MAX_ATTEMPT_OFFSET = 2 * MAX_ATTEMPTS;

/** A header holding an integer 0..max: absent is 0, anything else undefined (no number Bosun wrote). */
export function integerHeader(text: string | undefined, max: number): number | undefined {
  if (text === undefined || text === "") return 0;
  if (!/^\d{1,16}$/.test(text)) return undefined;
  const value = Number(text);
  return value <= max ? value : undefined;
}

/**
 * A message's value against its schema, kept only if its job id is the one
 * `subjectOf` would file it under (a final record copied onto another job's
 * subject is not that job's record); otherwise undefined, logged.
 */
export function readStored<S extends z.ZodType>(
  schema: S,
  msg: StoredLike,
  ctx: { log: Logger; source: string },
  subjectOf: (jobId: string) => string,
  jobIdOf: (value: z.output<S>) => string,
): z.output<S> | undefined {
  const where: InboundContext = { ...ctx, subject: msg.subject, seq: msg.seq };
  const value = readInbound(schema, msg.data, where);
  if (value === undefined) return undefined;
  const jobId = jobIdOf(value);
  if (!isJobId(jobId) || subjectOf(jobId) !== msg.subject) {
    logDropped(where, "its job id is not the one its subject names");
    return undefined;
  }
  return value;
}

/** A job message (queued or parked) with the attempts used before it, or undefined (logged). */
export function readParked(msg: StoredLike, ctx: { log: Logger; source: string }, subjectOf: (jobId: string) => string): ParkedJob | undefined {
  const offset = integerHeader(msg.headers?.get(headerNames.attemptOffset), MAX_ATTEMPT_OFFSET);
  if (offset === undefined) {
    logDropped({ ...ctx, subject: msg.subject, seq: msg.seq }, `${headerNames.attemptOffset} is not an integer 0-${MAX_ATTEMPT_OFFSET}`);
    return undefined;
  }
  const job = readStored(JobEnvelope, msg, ctx, subjectOf, (j) => j.job_id);
  return job && { job, offset };
}
