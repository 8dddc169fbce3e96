/**
 * The gateway's NATS connection, which may not exist yet: the gateway
 * listens at once and answers 503 (with Retry-After) until NATS is
 * reachable, and again at once while a lost connection is being
 * re-established, rather than letting each call wait out its timeout.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import type { Logger } from "pino";
import { BosunError } from "../contract/index.js";
import { forEachGuarded } from "../platform/guard.js";
import { natsOptions } from "../platform/nats-options.js";
import { openConnection } from "../platform/nats.js";

/** Said once when NATS still has not answered this long after start. */
const SLOW_FIRST_CONNECT_MS = 1000;

export class NatsLink {
  #nc: NatsConnection | undefined;
  #up = false;
  #closed = false;
  #ready: Promise<NatsConnection> | undefined;

  constructor(
    readonly url: string,
    private readonly log: Logger,
  ) {}

  /** Begins connecting (for ever, every 250 ms); call once the gateway listens. */
  connect(): Promise<NatsConnection> {
    if (this.#ready) return this.#ready;
    const { url, log } = this;
    const slow = setTimeout(() => log.warn({ nats_url: url }, "NATS is not reachable yet; answering 503 until it is"), SLOW_FIRST_CONNECT_MS);
    this.#ready = openConnection({ ...natsOptions(url, "bosun-gateway"), waitOnFirstConnect: true }, log).then((nc) => {
      clearTimeout(slow);
      this.#nc = nc;
      this.#up = true;
      log.info({ nats_url: url, server: nc.info?.server_name }, "NATS connected");
      void this.#follow(nc);
      return nc;
    });
    this.#ready.catch((err: unknown) => {
      clearTimeout(slow);
      if (!this.#closed) log.error({ err, nats_url: url }, "NATS connection failed for good");
    });
    return this.#ready;
  }

  get connected(): boolean {
    return this.#up;
  }

  /** The connection, or a 503 `unavailable` when NATS is not reachable now. */
  get(): NatsConnection {
    if (this.#nc && this.#up) return this.#nc;
    throw new BosunError("unavailable", this.#nc ? `lost the connection to NATS at ${this.url}; reconnecting` : `NATS at ${this.url} is not reachable yet`);
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#nc?.drain().catch(() => undefined);
  }

  async #follow(nc: NatsConnection): Promise<void> {
    await forEachGuarded(nc.status(), this.log, "NATS status", (s) => {
      if (s.type === "disconnect") {
        this.#up = false;
        this.log.warn({ nats_url: this.url }, "NATS disconnected; answering 503 until it is back");
      } else if (s.type === "reconnect") {
        this.#up = true;
        this.log.info({ nats_url: this.url, server: nc.info?.server_name }, "NATS reconnected");
      } else if (s.type === "error") {
        this.log.warn({ err: s.error }, "NATS connection error");
      }
    });
  }
}
