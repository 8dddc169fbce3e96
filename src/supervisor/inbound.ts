/**
 * The decode boundary for job messages (BOSUN_JOBS and BOSUN_SCHEDULED):
 * the envelope against the submit's limits (JobEnvelope), and the headers
 * and delivery count the runner and the scheduler compute with. Anything
 * with publish rights can write to these streams, so a message that fails
 * is terminated (never redelivered) with a log line, and never reaches code
 * that builds subjects or counts attempts from it.
 */
import type { Logger } from "pino";
import { headerNames, JobEnvelope, MAX_ATTEMPTS, type JobEnvelope as Envelope } from "../contract/index.js";
import { logDropped, readInbound } from "../platform/guard.js";
import type { JobMessage } from "./puller.js";

export interface InboundJob {
  job: Envelope;
  /** Attempts used before this message (its Bosun-Attempt-Offset header). */
  attemptOffset: number;
  /** Epoch ms the message is due (Bosun-Due-At); 0 when it has none. */
  dueAt: number;
}

/** The most attempts a message can say were used before it: lost runs can exceed max_attempts. */
const MAX_ATTEMPT_OFFSET = 2 * MAX_ATTEMPTS;
/** Due times beyond this are not a date Bosun wrote. */
const MAX_DUE_AT = Date.parse("9999-12-31T00:00:00Z");

/** The job in a delivered message, or undefined after terminating a malformed one. */
export function readJobMessage(msg: JobMessage, log: Logger, source: "jobs stream" | "scheduled stream"): InboundJob | undefined {
  const ctx = { log, source, seq: msg.streamSeq };
  const drop = (reason: string): undefined => {
    logDropped(ctx, reason);
    msg.term();
    return undefined;
  };
  if (!Number.isSafeInteger(msg.deliveryCount) || msg.deliveryCount < 1) return drop("no delivery count in its ack subject");
  const attemptOffset = integerHeader(msg, headerNames.attemptOffset, MAX_ATTEMPT_OFFSET);
  if (attemptOffset === undefined) return drop(`${headerNames.attemptOffset} is not an integer 0-${MAX_ATTEMPT_OFFSET}`);
  const dueAt = integerHeader(msg, headerNames.dueAt, MAX_DUE_AT);
  if (dueAt === undefined) return drop(`${headerNames.dueAt} is not a time in epoch ms`);
  const job = readInbound(JobEnvelope, msg.data, ctx);
  if (!job) {
    msg.term();
    return undefined;
  }
  return { job, attemptOffset, dueAt };
}

/** A header holding an integer 0..max; absent is 0, anything else undefined. */
function integerHeader(msg: JobMessage, name: string, max: number): number | undefined {
  const text = msg.header(name);
  if (text === undefined) return 0;
  if (!/^\d{1,16}$/.test(text)) return undefined;
  const value = Number(text);
  return value <= max ? value : undefined;
}
