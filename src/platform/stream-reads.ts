/**
 * Reads shared by the supervisor's store and the maintenance tasks (which
 * load this module only when they run, to keep execution processes lean).
 */
import { DeliverPolicy, type JetStreamManager, type JsMsg } from "@nats-io/jetstream";

const KV_OPERATION_HEADER = "KV-Operation";
/** A scan's consumer that its process could not delete (it died mid-scan) goes after this. */
const SCAN_INACTIVE_MS = 30_000;

/** A key's latest value as a scan of the bucket's stream reads it. */
export interface LatestValue {
  key: string;
  operation: "PUT" | "DEL" | "PURGE";
  value: Uint8Array;
}

/** Visits the latest value of every key of a bucket stored when it is called, once, then stops. */
export async function scanLatest(jsm: JetStreamManager, bucket: string, visit: (entry: LatestValue) => void): Promise<void> {
  const stream = `KV_${bucket}`;
  const prefix = `$KV.${bucket}.`;
  const info = await jsm.streams.info(stream);
  await scanLastPerSubject(jsm, stream, `${prefix}>`, info.state.messages, (msg) => {
    const op = msg.headers?.get(KV_OPERATION_HEADER);
    visit({ key: msg.subject.slice(prefix.length), operation: op === "DEL" || op === "PURGE" ? op : "PUT", value: msg.data });
  });
}

/** Deletes one stored message; one already gone (replaced, purged) is no error. */
export async function dropMessage(jsm: JetStreamManager, stream: string, seq: number): Promise<void> {
  await jsm.streams.deleteMessage(stream, seq, false).catch((err: unknown) => {
    // nats-server says "no message found" or "sequence N not found", depending on why it is gone.
    if (!(err instanceof Error && /no message found|sequence \d+ not found/i.test(err.message))) throw err;
  });
}

/** Deletes the last message on a subject; false when there was none. */
export async function dropLastMessage(jsm: JetStreamManager, stream: string, subject: string): Promise<boolean> {
  const msg = await jsm.direct.getMessage(stream, { last_by_subj: subject });
  if (!msg) return false;
  await dropMessage(jsm, stream, msg.seq);
  return true;
}

/**
 * Visits the last message of each subject matching `filter`, once, then
 * stops. `expected` is how many there are (from stream info): an ordered
 * consumer cannot tell before its first fetch, and a fetch on nothing waits.
 */
export async function scanLastPerSubject(jsm: JetStreamManager, stream: string, filter: string, expected: number, visit: (msg: JsMsg) => void): Promise<void> {
  let remaining = expected;
  if (remaining === 0) return;
  const consumer = await jsm
    .jetstream()
    .consumers.get(stream, { filter_subjects: filter, deliver_policy: DeliverPolicy.LastPerSubject, inactive_threshold: SCAN_INACTIVE_MS });
  try {
    while (remaining > 0) {
      const batch = await consumer.fetch({ max_messages: Math.min(remaining, 1000), expires: 2000 });
      let got = 0;
      for await (const msg of batch) {
        got++;
        remaining = msg.info.pending;
        visit(msg);
      }
      if (got === 0) break;
    }
  } finally {
    // Not left for the server to expire: a listing per second would otherwise keep hundreds.
    await consumer.delete().catch(() => undefined);
  }
}
