/**
 * The decode boundary for delivered job messages (BOSUN_JOBS and
 * BOSUN_SCHEDULED): the envelope against the submit's limits, on the
 * subject its job id names (records/decode.ts, as every reader of a job
 * message), and the headers and delivery count the runner and the
 * scheduler compute with. Anything with publish rights can write to these
 * streams, so a message that fails is terminated (never redelivered) with a
 * log line, and never reaches code that builds subjects or counts attempts
 * from it.
 */
import type { Logger } from "pino";
import { headerNames, jobSubject, scheduledSubject, type JobEnvelope } from "../contract/index.js";
import { logDropped } from "../platform/guard.js";
import { integerHeader, readParked, type ParkedJob } from "../records/index.js";
import type { JobMessage } from "../platform/puller.js";

export interface InboundJob {
  job: JobEnvelope;
  /** Attempts used before this message (its Bosun-Attempt-Offset header). */
  attemptOffset: number;
  /** Epoch ms the message is due (Bosun-Due-At); 0 when it has none. */
  dueAt: number;
}

/** Due times beyond this are not a date Bosun wrote. */
const MAX_DUE_AT = Date.parse("9999-12-31T00:00:00Z");

/** The job in a delivered message, or undefined after terminating a malformed one; `decoded` when its envelope was read already (the compute desk). */
export function readJobMessage(msg: JobMessage, log: Logger, source: "jobs stream" | "scheduled stream", decoded?: ParkedJob): InboundJob | undefined {
  const ctx = { log, source, subject: msg.subject, seq: msg.streamSeq };
  const drop = (reason?: string): undefined => {
    if (reason) logDropped(ctx, reason);
    msg.term();
    return undefined;
  };
  if (!Number.isSafeInteger(msg.deliveryCount) || msg.deliveryCount < 1) return drop("no delivery count in its ack subject");
  const dueAt = integerHeader(msg.header(headerNames.dueAt), MAX_DUE_AT);
  if (dueAt === undefined) return drop(`${headerNames.dueAt} is not a time in epoch ms`);
  const stored = { subject: msg.subject, data: msg.data, seq: msg.streamSeq, headers: { get: (name: string) => msg.header(name) ?? "" } };
  const parked = decoded ?? readParked(stored, { log, source }, source === "jobs stream" ? jobSubject : scheduledSubject);
  if (!parked) return drop();
  return { job: parked.job, attemptOffset: parked.offset, dueAt };
}
