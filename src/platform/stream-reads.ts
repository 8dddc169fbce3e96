/**
 * Reads shared by the supervisor's store and the maintenance tasks (which
 * load this module only when they run, to keep execution processes lean).
 * Every read of one stored message goes through StreamReader.
 */
import { DeliverPolicy, type DirectMsgRequest, type JetStreamManager, type JsMsg, type StoredMsg } from "@nats-io/jetstream";
import { KvWatchInclude, type KV, type KvEntry } from "@nats-io/kv";

/**
 * Reads one stored message by literal subject or sequence with a direct
 * get, which any replica of the stream answers: cheap, and spread over the
 * nodes. A replica that lags (right after a partition heals, a node that
 * rejoined) may lack a message the leader has, so when streams are
 * replicated a miss is asked again of the stream leader (a JetStream API
 * get, answered by the leader only) before it counts: a miss never says
 * "not there" for something accepted. A hit may still be a lagging
 * replica's older message on that subject; `fromLeader` is for the read
 * that must be the newest.
 */
export class StreamReader {
  readonly #confirmMisses: boolean;

  constructor(
    readonly jsm: JetStreamManager,
    opts: { confirmMisses: boolean },
  ) {
    this.#confirmMisses = opts.confirmMisses;
  }

  /** The last message on a literal subject (never a wildcard: see D1 on BOARD.md), or null. */
  last(stream: string, subject: string): Promise<StoredMsg | null> {
    return this.#read(stream, { last_by_subj: subject });
  }

  bySeq(stream: string, seq: number): Promise<StoredMsg | null> {
    return this.#read(stream, { seq });
  }

  /** Asks the stream leader, whatever the replicas hold. */
  async fromLeader(stream: string, query: { last_by_subj: string } | { seq: number }): Promise<StoredMsg | null> {
    return (await this.jsm.streams.getMessage(stream, query)) ?? null;
  }

  async #read(stream: string, query: { last_by_subj: string } | { seq: number }): Promise<StoredMsg | null> {
    const msg = await this.jsm.direct.getMessage(stream, query as DirectMsgRequest);
    if (msg || !this.#confirmMisses) return msg;
    return this.fromLeader(stream, query);
  }
}

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
export async function dropLastMessage(reader: StreamReader, stream: string, subject: string): Promise<boolean> {
  const msg = await reader.last(stream, subject);
  if (!msg) return false;
  await dropMessage(reader.jsm, stream, msg.seq);
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
