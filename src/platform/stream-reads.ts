/**
 * Every read of a stored message by subject or sequence goes through here
 * (the job store, the listing, retention), so how a miss is confirmed is
 * decided in one place.
 */
import type { JetStreamManager } from "@nats-io/jetstream";
import { createInbox, type Msg, type NatsConnection, type Subscription } from "@nats-io/nats-core";

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
}

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

  constructor(private readonly nc: NatsConnection) {
    this.#sub = nc.subscribe(`${this.#inbox}.*`, { callback: (_err, msg) => this.#onReply(msg) });
    void this.#sub.closed.then(() => this.#failAll("connection closed"));
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
      return waiter.reject(new ReadError(`direct get failed: ${h?.code ?? ""} ${h?.description ?? "no headers"}`));
    }
    waiter.resolve({ seq, subject: h.get("Nats-Subject"), time: new Date(h.get("Nats-Time-Stamp")), data: msg.data, headers: h });
  }

  #sweep(): void {
    const now = Date.now();
    for (const [id, waiter] of this.#waiters) {
      if (waiter.deadline > now) break;
      this.#waiters.delete(id);
      waiter.reject(new ReadError(`no direct get reply within ${READ_TIMEOUT_MS} ms`));
    }
  }

  #failAll(why: string): void {
    clearInterval(this.#sweeper);
    for (const w of this.#waiters.values()) w.reject(new ReadError(why));
    this.#waiters.clear();
  }
}

const readers = new WeakMap<NatsConnection, DirectReader>();
function readerOf(jsm: JetStreamManager): DirectReader {
  const nc = (jsm as unknown as { nc: NatsConnection }).nc;
  let reader = readers.get(nc);
  if (!reader) readers.set(nc, (reader = new DirectReader(nc)));
  return reader;
}

/**
 * The last message on a LITERAL subject, or null. Every read of a job's
 * message by its subject goes through here (never a wildcard: that is
 * linear in the subjects stored).
 */
export function readLast(jsm: JetStreamManager, stream: string, subject: string): Promise<StoredMessage | null> {
  return readerOf(jsm).get(stream, { last_by_subj: subject });
}

/** The message at a sequence, or null when it is gone. */
export function readSeq(jsm: JetStreamManager, stream: string, seq: number): Promise<StoredMessage | null> {
  return readerOf(jsm).get(stream, { seq });
}

/** The first message at or after a sequence (any subject), or null: the server skips deleted ones. */
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
