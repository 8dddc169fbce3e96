/**
 * Publishes to JetStream and waits for the PubAck, over one long-lived
 * inbox subscription. nats.js's js.publish() is a full nc.request() per
 * message (a timer and an Error object each, about a sixth of a supervisor's
 * CPU when profiled); this keeps one map of waiters and one sweeper timer.
 *
 * A write that fails because the stream cannot take it right now (no
 * leader during an election, no responders, no PubAck in time) rejects
 * with BosunError("unavailable"), after retrying for `retryForMs` when the
 * caller made a retry safe (a message id, or a create-once header with one).
 */
import { createInbox, headers as natsHeaders, type Msg, type MsgHdrs, type NatsConnection, type Subscription } from "@nats-io/nats-core";
import { unavailableOf } from "./nats-errors.js";

export interface PubAck {
  stream: string;
  seq: number;
  duplicate: boolean;
}

export interface WriteOptions {
  /** Nats-Msg-Id: a second publish with the same id within the duplicate window is a no-op. */
  msgId?: string;
  /** Nats-Expected-Last-Subject-Sequence: 0 means "only if the subject is empty" (create-once). */
  expectLastSubjectSeq?: number;
  headers?: Record<string, string>;
  /**
   * Retry a write the stream could not take (an election, a node gone) for
   * up to this long, each try's PubAck wait included. Only with `msgId`: the
   * dedup window makes a retry of a write that did land a no-op.
   */
  retryForMs?: number;
}

/** JetStream's err_codes for a stream with no leader right now (see nats-errors.ts). */
const NO_LEADER_ERR_CODES = new Set([10008, 10009, 10118]);
const RETRY_GAP_MS = 250;
const MIN_TRY_MS = 500;

export class StreamWriteError extends Error {
  override readonly name = "StreamWriteError";
  /** JetStream's err_code (10071: wrong last sequence), or 503 when no stream took the subject. */
  constructor(
    message: string,
    readonly errCode: number | undefined,
    /** The stream could not take it now (no leader, no responders, no PubAck in time): worth a retry. */
    readonly transient = false,
  ) {
    super(message);
  }
}

/**
 * Whether a write that failed may be stored all the same: no PubAck came in
 * time, or the writer closed while waiting for one (a refusal, no
 * responders or no leader stores nothing). Looks through `cause`s.
 */
export function mayHaveLanded(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    if (e instanceof StreamWriteError) return e.errCode === undefined;
  }
  return false;
}

interface Waiter {
  deadline: number;
  timeoutMs: number;
  resolve(ack: PubAck): void;
  reject(err: Error): void;
}

const decoder = new TextDecoder();
const SWEEP_MS = 100;

export class StreamWriter {
  readonly #prefix = createInbox();
  readonly #waiters = new Map<number, Waiter>();
  readonly #sub: Subscription;
  readonly #sweeper: NodeJS.Timeout;
  #seq = 0;

  constructor(
    private readonly nc: NatsConnection,
    private readonly timeoutMs = 5000,
  ) {
    // An error here (the inbox refused by permissions) comes with no message: the waiters' sweep answers them.
    this.#sub = nc.subscribe(`${this.#prefix}.*`, {
      callback: (err, msg) => {
        if (!err) this.#onAck(msg);
      },
    });
    this.#sweeper = setInterval(() => this.#sweep(), SWEEP_MS).unref();
  }

  async publish(subject: string, data: Uint8Array | string, opts: WriteOptions = {}): Promise<PubAck> {
    const deadline = Date.now() + (opts.retryForMs ?? 0);
    for (;;) {
      const remaining = deadline - Date.now();
      try {
        return await this.#publishOnce(subject, data, opts, opts.retryForMs ? Math.max(MIN_TRY_MS, Math.min(this.timeoutMs, remaining)) : this.timeoutMs);
      } catch (err) {
        const unavailable = unavailableOf(err);
        if (!unavailable) throw err;
        if (deadline - Date.now() < RETRY_GAP_MS + MIN_TRY_MS) throw unavailable;
        await new Promise((resolve) => setTimeout(resolve, RETRY_GAP_MS));
      }
    }
  }

  #publishOnce(subject: string, data: Uint8Array | string, opts: WriteOptions, timeoutMs: number): Promise<PubAck> {
    const id = ++this.#seq;
    return new Promise<PubAck>((resolve, reject) => {
      this.#waiters.set(id, { deadline: Date.now() + timeoutMs, timeoutMs, resolve, reject });
      try {
        this.nc.publish(subject, data, { reply: `${this.#prefix}.${id}`, headers: toHeaders(opts) });
      } catch (err) {
        this.#waiters.delete(id);
        reject(err as Error);
      }
    });
  }

  /** Stored by JetStream, but nobody waits to hear so: for writes a later acked write supersedes. */
  publishUnacked(subject: string, data: Uint8Array | string): void {
    this.nc.publish(subject, data);
  }

  close(): void {
    clearInterval(this.#sweeper);
    this.#sub.unsubscribe();
    for (const w of this.#waiters.values()) w.reject(new StreamWriteError("writer closed", undefined));
    this.#waiters.clear();
  }

  #onAck(msg: Msg): void {
    const id = Number(msg.subject.slice(this.#prefix.length + 1));
    const waiter = this.#waiters.get(id);
    if (!waiter) return;
    this.#waiters.delete(id);
    if (msg.headers?.code === 503) {
      // No responders: no stream has the subject, or (in a cluster) its leader is being elected.
      waiter.reject(new StreamWriteError("no stream accepts this subject right now", 503, true));
      return;
    }
    try {
      const reply = JSON.parse(decoder.decode(msg.data)) as PubAck & { error?: { code?: number; err_code?: number; description?: string } };
      const error = reply.error;
      if (error) {
        const transient = error.code === 503 || (error.err_code !== undefined && NO_LEADER_ERR_CODES.has(error.err_code));
        waiter.reject(new StreamWriteError(error.description ?? "publish rejected", error.err_code, transient));
      } else waiter.resolve(reply);
    } catch {
      waiter.reject(new StreamWriteError("unreadable publish ack", undefined));
    }
  }

  #sweep(): void {
    const now = Date.now();
    for (const [id, waiter] of this.#waiters) {
      if (waiter.deadline > now) continue;
      this.#waiters.delete(id);
      // The write may have landed: only a retry with the same message id is safe.
      waiter.reject(new StreamWriteError(`no publish ack within ${waiter.timeoutMs} ms`, undefined, true));
    }
  }
}

function toHeaders(opts: WriteOptions): MsgHdrs | undefined {
  if (opts.msgId === undefined && opts.expectLastSubjectSeq === undefined && !opts.headers) return undefined;
  const h = natsHeaders();
  if (opts.msgId !== undefined) h.set("Nats-Msg-Id", opts.msgId);
  if (opts.expectLastSubjectSeq !== undefined) h.set("Nats-Expected-Last-Subject-Sequence", String(opts.expectLastSubjectSeq));
  for (const [k, v] of Object.entries(opts.headers ?? {})) h.set(k, v);
  return h;
}
