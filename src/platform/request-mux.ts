/**
 * NATS request/reply over one long-lived inbox subscription: one map of
 * waiters and one sweeper timer for every request in flight. nats.js's
 * nc.request() subscribes (or registers with its own muxer), arms a timer
 * and builds an Error for every call, answered or not; here a request costs
 * one publish and one map entry, and an Error only when it fails.
 */
import { createInbox, type Msg, type MsgHdrs, type NatsConnection, type Subscription } from "@nats-io/nats-core";
import type { Logger } from "pino";
import { guard, onMessage } from "./guard.js";

/** No subscriber on the subject: the server said so at once (a 503 status on the reply subject). */
export class NoRespondersError extends Error {
  override readonly name = "NoRespondersError";
}

/** No reply within the request's timeout. */
export class RequestTimeoutError extends Error {
  override readonly name = "RequestTimeoutError";
}

interface Waiter {
  deadline: number;
  timeoutMs: number;
  resolve(msg: Msg): void;
  reject(err: Error): void;
}

/** Timeouts are noticed within this (a request may outlive its timeout by up to this much). */
const SWEEP_MS = 25;

export class RequestMux {
  readonly #prefix = createInbox();
  readonly #waiters = new Map<number, Waiter>();
  readonly #sub: Subscription;
  #sweeper: NodeJS.Timeout | undefined;
  #seq = 0;

  constructor(
    private readonly nc: NatsConnection,
    private readonly log: Logger,
  ) {
    this.#sub = nc.subscribe(`${this.#prefix}.*`, { callback: onMessage(log, "request replies", (msg) => this.#onReply(msg)) });
  }

  request(subject: string, data: Uint8Array, opts: { timeoutMs: number; headers?: MsgHdrs }): Promise<Msg> {
    const id = ++this.#seq;
    return new Promise<Msg>((resolve, reject) => {
      try {
        this.nc.publish(subject, data, { reply: `${this.#prefix}.${id}`, headers: opts.headers });
      } catch (err) {
        reject(err as Error);
        return;
      }
      this.#waiters.set(id, { deadline: Date.now() + opts.timeoutMs, timeoutMs: opts.timeoutMs, resolve, reject });
      // The sweeper runs only while something waits, so an idle process has no timer firing.
      this.#sweeper ??= setInterval(guard(this.log, "request timeouts", () => this.#sweep()), SWEEP_MS);
    });
  }

  close(): void {
    clearInterval(this.#sweeper);
    this.#sub.unsubscribe();
    for (const w of this.#waiters.values()) w.reject(new RequestTimeoutError("the connection is closing"));
    this.#waiters.clear();
  }

  #onReply(msg: Msg): void {
    const id = Number(msg.subject.slice(this.#prefix.length + 1));
    const waiter = this.#waiters.get(id);
    if (!waiter) return;
    this.#waiters.delete(id);
    if (msg.headers?.code === 503 && msg.data.length === 0) waiter.reject(new NoRespondersError(`no responders`));
    else waiter.resolve(msg);
  }

  #sweep(): void {
    const now = Date.now();
    // Timeouts differ per request (wait_ms extends some), so every waiter is looked at; there are few.
    for (const [id, waiter] of this.#waiters) {
      if (waiter.deadline > now) continue;
      this.#waiters.delete(id);
      waiter.reject(new RequestTimeoutError(`no reply within ${waiter.timeoutMs} ms`));
    }
    if (this.#waiters.size === 0) {
      clearInterval(this.#sweeper);
      this.#sweeper = undefined;
    }
  }
}
