/**
 * Reads shared by the supervisor's store and the maintenance tasks (which
 * load this module only when they run, to keep execution processes lean).
 */
import type { JetStreamManager } from "@nats-io/jetstream";
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

/** Deletes the last message on a subject; false when there was none. */
export async function dropLastMessage(jsm: JetStreamManager, stream: string, subject: string): Promise<boolean> {
  const msg = await jsm.direct.getMessage(stream, { last_by_subj: subject });
  return msg ? jsm.streams.deleteMessage(stream, msg.seq, false) : false;
}
