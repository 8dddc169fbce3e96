/**
 * Every read of a stored message by subject or sequence goes through here
 * (the job store, the listing, retention), so how a miss is confirmed is
 * decided in one place.
 */
import type { JetStreamManager, StoredMsg } from "@nats-io/jetstream";

/**
 * The last message on a LITERAL subject, or null. Every read of a job's
 * message by its subject goes through here (never a wildcard: that is
 * linear in the subjects stored).
 */
export function readLast(jsm: JetStreamManager, stream: string, subject: string): Promise<StoredMsg | null> {
  return jsm.direct.getMessage(stream, { last_by_subj: subject });
}

/** The message at a sequence, or null when it is gone. */
export function readSeq(jsm: JetStreamManager, stream: string, seq: number): Promise<StoredMsg | null> {
  return jsm.direct.getMessage(stream, { seq });
}

/** The first message at or after a sequence (any subject), or null: the server skips deleted ones. */
export function readFirstFrom(jsm: JetStreamManager, stream: string, seq: number): Promise<StoredMsg | null> {
  return jsm.direct.getMessage(stream, { seq, next_by_subj: ">" });
}

/** Deletes one stored message; one already gone (replaced, purged) is no error. */
export async function dropMessage(jsm: JetStreamManager, stream: string, seq: number): Promise<void> {
  await jsm.streams.deleteMessage(stream, seq, false).catch((err: unknown) => {
    // nats-server says "no message found" or "sequence N not found", depending on why it is gone.
    if (!(err instanceof Error && /no message found|sequence \d+ not found/i.test(err.message))) throw err;
  });
}
