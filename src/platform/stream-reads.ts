/**
 * Reads shared by the supervisor's store and the maintenance tasks (which
 * load this module only when they run, to keep execution processes lean).
 */
import { DeliverPolicy, type JetStreamManager, type JsMsg } from "@nats-io/jetstream";
import { KvWatchInclude, type KV, type KvEntry } from "@nats-io/kv";

/** Visits the latest value of every key stored when it is called, once, then stops. */
export async function scanLatest(kv: KV, visit: (entry: KvEntry) => void): Promise<void> {
  if ((await kv.status()).values === 0) return;
  const watch = await kv.watch({ include: KvWatchInclude.LastValue });
  try {
    for await (const entry of watch) {
      visit(entry);
      // delta counts the values still to come in the initial scan.
      if (!entry.delta) break;
    }
  } finally {
    watch.stop();
  }
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
  const consumer = await jsm.jetstream().consumers.get(stream, { filter_subjects: filter, deliver_policy: DeliverPolicy.LastPerSubject });
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
}
