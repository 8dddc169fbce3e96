/**
 * Open event streams end when their key is revoked. The supervisors refuse
 * a revoked key at once, but a stream admitted before the revoke would go
 * on: the gateway follows the key bucket's subjects (a core subscription;
 * a revoke is a purge of the key) and aborts the streams opened with it.
 * It subscribes with the first stream that has a key: the gateway may start
 * before NATS is reachable, and no stream opens until it is.
 */
import type { NatsConnection, Subscription } from "@nats-io/nats-core";
import type { Logger } from "pino";
import { buckets } from "../contract/index.js";
import { API_KEY_PREFIX, bearerOf } from "../auth/index.js";
import { onMessage } from "../platform/guard.js";
import { parseSecret } from "../platform/secrets.js";

export class Revocations {
  readonly #streams = new Map<string, Set<AbortController>>();
  #sub: { nc: NatsConnection; sub: Subscription } | undefined;

  constructor(private readonly log: Logger) {}

  #followBucket(nc: NatsConnection): void {
    if (this.#sub?.nc === nc) return;
    this.#sub?.sub.unsubscribe();
    const sub = nc.subscribe(`$KV.${buckets.keys}.>`, {
      callback: onMessage(this.log, "key revocations", (msg) => {
        const op = msg.headers?.get("KV-Operation");
        if (op !== "DEL" && op !== "PURGE") return;
        const keyId = msg.subject.slice(msg.subject.lastIndexOf(".") + 1);
        for (const stream of this.#streams.get(keyId) ?? []) stream.abort();
        this.#streams.delete(keyId);
      }),
    });
    this.#sub = { nc, sub };
  }

  /**
   * A signal that aborts when `closed` does or when the key in this
   * Authorization header is revoked (the bootstrap key is revoked by a
   * restart, which ends every stream anyway).
   */
  follow(nc: NatsConnection, authorization: string | undefined, closed: AbortSignal): AbortSignal {
    let keyId: string | undefined;
    try {
      const key = bearerOf(authorization);
      keyId = key === undefined ? undefined : parseSecret(API_KEY_PREFIX, key)?.id;
    } catch {
      keyId = undefined;
    }
    if (keyId === undefined) return closed;
    this.#followBucket(nc);
    const id = keyId;
    const stream = new AbortController();
    const streams = this.#streams.get(id) ?? new Set<AbortController>();
    this.#streams.set(id, streams);
    streams.add(stream);
    const forget = () => {
      streams.delete(stream);
      if (streams.size === 0 && this.#streams.get(id) === streams) this.#streams.delete(id);
    };
    closed.addEventListener("abort", () => {
      forget();
      stream.abort();
    });
    stream.signal.addEventListener("abort", forget);
    return stream.signal;
  }

  stop(): void {
    this.#sub?.sub.unsubscribe();
  }
}
