/**
 * Every read of a stored message by subject or sequence goes through here
 * (the job store, the listing, retention), so how a miss is confirmed is
 * decided in one place.
 *
 * A direct get is answered by any replica of a stream: cheap, and spread
 * over the nodes. A replica that lags (right after a partition heals, a node
 * that rejoined with an empty disk) may lack a message the leader has, so
 * when the server is in a cluster and the stream has more than one replica,
 * a miss of `readLast`/`readSeq` is asked again of the stream leader (a
 * JetStream API get, answered by the leader only) before it counts: a miss
 * never says "not there" for something accepted. A hit may still be a
 * lagging replica's older message on that subject; `readLastFromLeader` is
 * for the read that must be the newest.
 */
import type { JetStreamManager } from "@nats-io/jetstream";
import { createInbox, type Msg, type NatsConnection, type Subscription } from "@nats-io/nats-core";
import { kvStream } from "./topology.js";

/** A message as a direct get returns it. */
export interface StoredMessage {
  seq: number;
  subject: string;
  time: Date;
  data: Uint8Array;
  headers: { get(name: string): string };
}

const READ_TIMEOUT_MS = 5000;
const SWEEP_MS = 250;

interface Waiter {
  deadline: number;
  resolve(m: StoredMessage | null): void;
  reject(e: Error): void;
}

class ReadError extends Error {
  override readonly name = "ReadError";
  constructor(
    message: string,
    /** A timeout or a 503 (no responders, an election): unavailableOf() maps it to 503 `unavailable`. */
    readonly transient = false,
  ) {
    super(message);
  }
}

/** How long a stream's replica count is trusted (an explicit --replicas may scale it). */
const REPLICAS_TTL_MS = 30_000;

type LeaderQuery = { last_by_subj: string } | { seq: number };

/**
 * Direct gets over one long-lived inbox subscription: nats.js's
 * jsm.direct.getMessage() is a full request each (a timer and an Error
 * object), which a listing page doing dozens of them paid for.
 */
class DirectReader {
  readonly #inbox = createInbox();
  readonly #waiters = new Map<number, Waiter>();
  readonly #sub: Subscription;
  #seq = 0;
  #sweeper: NodeJS.Timeout | undefined;

  readonly #replicated = new Map<string, { replicated: Promise<boolean>; until: number }>();

  constructor(
    private readonly nc: NatsConnection,
    private readonly jsm: JetStreamManager,
  ) {
    this.#sub = nc.subscribe(`${this.#inbox}.*`, { callback: (_err, msg) => this.#onReply(msg) });
    void this.#sub.closed.then(() => this.#failAll("connection closed"));
  }

  /** A direct get whose miss is confirmed at the stream leader when the stream is replicated. */
  async confirmed(stream: string, query: LeaderQuery): Promise<StoredMessage | null> {
    const msg = await this.get(stream, query);
    if (msg || !(await this.#isReplicated(stream))) return msg;
    return this.fromLeader(stream, query);
  }

  /** Asks the stream leader, whatever the replicas hold. */
  async fromLeader(stream: string, query: LeaderQuery): Promise<StoredMessage | null> {
    const m = await this.jsm.streams.getMessage(stream, query);
    return m ? { seq: m.seq, subject: m.subject, time: m.time, data: m.data, headers: m.header } : null;
  }

  /** Only a clustered server can hold lagging replicas; the replica count is looked up once per stream (for a while). */
  #isReplicated(stream: string): Promise<boolean> {
    if (!this.nc.info?.cluster) return Promise.resolve(false);
    const now = Date.now();
    const known = this.#replicated.get(stream);
    if (known && known.until > now) return known.replicated;
    const replicated = this.jsm.streams.info(stream).then(
      (info) => (info.config.num_replicas ?? 1) > 1,
      // Unknown: confirming costs one read, trusting a miss may lose a job.
      () => true,
    );
    this.#replicated.set(stream, { replicated, until: now + REPLICAS_TTL_MS });
    return replicated;
  }

  get(stream: string, request: Record<string, unknown>): Promise<StoredMessage | null> {
    const id = ++this.#seq;
    this.#sweeper ??= setInterval(() => this.#sweep(), SWEEP_MS).unref();
    return new Promise((resolve, reject) => {
      this.#waiters.set(id, { deadline: Date.now() + READ_TIMEOUT_MS, resolve, reject });
      try {
        this.nc.publish(`$JS.API.DIRECT.GET.${stream}`, JSON.stringify(request), { reply: `${this.#inbox}.${id}` });
      } catch (err) {
        this.#waiters.delete(id);
        reject(err as Error);
      }
    });
  }

  /** A nats.js callback: nothing may escape it (it would end the connection's reader loop). */
  #onReply(msg: Msg): void {
    const id = Number(msg.subject.slice(this.#inbox.length + 1));
    const waiter = this.#waiters.get(id);
    if (!waiter) return;
    this.#waiters.delete(id);
    try {
      this.#settle(waiter, msg);
    } catch (err) {
      waiter.reject(new ReadError(`unreadable direct get reply: ${String(err)}`));
    }
  }

  #settle(waiter: Waiter, msg: Msg): void {
    const h = msg.headers;
    if (h?.code === 404) return waiter.resolve(null);
    const seq = Number(h?.get("Nats-Sequence"));
    if (!h || (h.code && h.code >= 300) || !Number.isSafeInteger(seq)) {
      return waiter.reject(new ReadError(`direct get failed: ${h?.code ?? ""} ${h?.description ?? "no headers"}`, h?.code === 503 || h?.code === 408));
    }
    waiter.resolve({ seq, subject: h.get("Nats-Subject"), time: new Date(h.get("Nats-Time-Stamp")), data: msg.data, headers: h });
  }

  #sweep(): void {
    const now = Date.now();
    for (const [id, waiter] of this.#waiters) {
      if (waiter.deadline > now) break;
      this.#waiters.delete(id);
      waiter.reject(new ReadError(`no direct get reply within ${READ_TIMEOUT_MS} ms`, true));
    }
  }

  #failAll(why: string): void {
    clearInterval(this.#sweeper);
    for (const w of this.#waiters.values()) w.reject(new ReadError(why, true));
    this.#waiters.clear();
  }
}

const readers = new WeakMap<NatsConnection, DirectReader>();
function readerOf(jsm: JetStreamManager): DirectReader {
  const nc = (jsm as unknown as { nc: NatsConnection }).nc;
  let reader = readers.get(nc);
  if (!reader) readers.set(nc, (reader = new DirectReader(nc, jsm)));
  return reader;
}

/**
 * The last message on a LITERAL subject, or null. Every read of a job's
 * message by its subject goes through here (never a wildcard: that is
 * linear in the subjects stored).
 */
export function readLast(jsm: JetStreamManager, stream: string, subject: string): Promise<StoredMessage | null> {
  return readerOf(jsm).confirmed(stream, { last_by_subj: subject });
}

/** The message at a sequence, or null when it is gone (a miss confirmed like readLast's). */
export function readSeq(jsm: JetStreamManager, stream: string, seq: number): Promise<StoredMessage | null> {
  return readerOf(jsm).confirmed(stream, { seq });
}

/** The last message on a literal subject as the stream leader has it: for a read that must be the newest. */
export function readLastFromLeader(jsm: JetStreamManager, stream: string, subject: string): Promise<StoredMessage | null> {
  return readerOf(jsm).fromLeader(stream, { last_by_subj: subject });
}

/**
 * A KV key's value as stored now, read like readLast (a miss confirmed at the
 * stream leader, so a lagging replica never makes a key look absent); null
 * when it is absent, deleted or purged. Not through the KV client, whose get
 * takes any replica's word for a miss.
 */
export async function readKvValue(jsm: JetStreamManager, bucket: string, key: string): Promise<StoredMessage | null> {
  const msg = await readLast(jsm, kvStream(bucket), `$KV.${bucket}.${key}`);
  return msg && !msg.headers.get("KV-Operation") ? msg : null;
}

/**
 * The first message at or after a sequence (any subject), or null: the server
 * skips deleted ones. Listing pages walk with it; a miss there is the end of
 * a page, not a job's absence, so it is not confirmed.
 */
export function readFirstFrom(jsm: JetStreamManager, stream: string, seq: number): Promise<StoredMessage | null> {
  return readerOf(jsm).get(stream, { seq, next_by_subj: ">" });
}

/** Deletes one stored message; one already gone (replaced, purged) is no error. */
export async function dropMessage(jsm: JetStreamManager, stream: string, seq: number): Promise<void> {
  await jsm.streams.deleteMessage(stream, seq, false).catch((err: unknown) => {
    // nats-server says "no message found" or "sequence N not found", depending on why it is gone.
    if (!(err instanceof Error && /no message found|sequence \d+ not found/i.test(err.message))) throw err;
  });
}
