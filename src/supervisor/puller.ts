/**
 * Pulls jobs from one durable JetStream pull consumer with credits: it asks
 * the server for exactly as many messages as the caller has free execution
 * processes, so a busy supervisor never hoards work another could run.
 *
 * nats.js's fetch() opens a subscription per call and consume() refills on
 * delivery rather than on completion (it hoards), so this speaks the pull
 * protocol directly over one long-lived inbox subscription.
 */
import { createInbox, type Msg, type NatsConnection, type Subscription } from "@nats-io/nats-core";
import type { Logger } from "pino";
import { guard, onMessage } from "../platform/guard.js";

const ACK = new TextEncoder().encode("+ACK");
const WORKING = new TextEncoder().encode("+WPI");
const TERM = new TextEncoder().encode("+TERM");

/** One delivered job message and the acks JetStream understands for it. */
export class JobMessage {
  readonly deliveryCount: number;
  readonly streamSeq: number;
  constructor(private readonly msg: Msg) {
    // $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.… (v1) or with domain + account hash first (v2).
    const tokens = (msg.reply ?? "").split(".");
    const offset = tokens.length >= 12 ? 4 : 2;
    this.deliveryCount = Number(tokens[offset + 2]);
    this.streamSeq = Number(tokens[offset + 3]);
  }
  /** The job's subject: bosun.jobs.<lane>.<job_id>. */
  get subject(): string {
    return this.msg.subject;
  }
  get data(): Uint8Array {
    return this.msg.data;
  }
  header(name: string): string | undefined {
    return this.msg.headers?.get(name) || undefined;
  }
  ack(): void {
    this.msg.respond(ACK);
  }
  /** Redeliver after delayMs (counts as a delivery). */
  nak(delayMs = 0): void {
    this.msg.respond(delayMs > 0 ? `-NAK ${JSON.stringify({ delay: delayMs * 1_000_000 })}` : "-NAK");
  }
  /** Resets the ack deadline while a long job runs. */
  working(): void {
    this.msg.respond(WORKING);
  }
  /** Never redeliver. No reason text: nats-server 2.9 ignores a term that has one. */
  term(): void {
    this.msg.respond(TERM);
  }
}

interface PullRequest {
  remaining: number;
  timer: NodeJS.Timeout;
}

export interface PullerOptions {
  stream: string;
  consumer: string;
  /** How long one pull request waits on the server for messages (a pull may say otherwise). */
  expiresMs: number;
  log: Logger;
  onJob(job: JobMessage): void;
  /** A pull request ended unfilled (expired, or the server dropped it): its credits are free again. */
  onCreditsReturned(): void;
}

export class Puller {
  readonly #inbox = createInbox();
  readonly #requests = new Map<string, PullRequest>();
  readonly #nextSubject: string;
  #sub: Subscription;
  #seq = 0;

  constructor(
    private readonly nc: NatsConnection,
    private readonly opts: PullerOptions,
  ) {
    this.#nextSubject = `$JS.API.CONSUMER.MSG.NEXT.${opts.stream}.${opts.consumer}`;
    this.#sub = nc.subscribe(`${this.#inbox}.*`, { callback: onMessage(opts.log, "pull subscription", (msg) => this.#onMsg(msg)) });
  }

  /** Messages asked for and not yet delivered. */
  get outstanding(): number {
    let n = 0;
    for (const r of this.#requests.values()) n += r.remaining;
    return n;
  }

  pull(batch: number, expiresMs = this.opts.expiresMs): void {
    if (batch <= 0 || this.#sub.isClosed()) return;
    const reply = `${this.#inbox}.${++this.#seq}`;
    // Reclaim the credits ourselves if the server's 408 never comes (e.g. it restarted).
    const timer = setTimeout(guard(this.opts.log, "pull expiry", () => this.#end(reply)), expiresMs + 5000);
    this.#requests.set(reply, { remaining: batch, timer });
    this.nc.publish(this.#nextSubject, JSON.stringify({ batch, expires: expiresMs * 1_000_000 }), { reply });
  }

  /** Forgets every open request: after a reconnect the server may have lost them. */
  reset(): void {
    for (const r of this.#requests.values()) clearTimeout(r.timer);
    this.#requests.clear();
  }

  async close(): Promise<void> {
    this.reset();
    await this.#sub.drain().catch(() => undefined);
  }

  #end(reply: string): void {
    const request = this.#requests.get(reply);
    if (!request) return;
    clearTimeout(request.timer);
    this.#requests.delete(reply);
    this.opts.onCreditsReturned();
  }

  #onMsg(msg: Msg): void {
    const code = msg.headers?.code ?? 0;
    if (code >= 100 && msg.data.length === 0 && !msg.reply) {
      // Status for one pull request: 408 expired, 409 ended (max waiting, consumer deleted, ...).
      if (code === 409) this.opts.log.warn({ consumer: this.opts.consumer, status: msg.headers?.description }, "pull request ended");
      this.#end(msg.subject);
      return;
    }
    // The server fills pull requests first come first served.
    for (const [reply, request] of this.#requests) {
      request.remaining--;
      if (request.remaining <= 0) {
        clearTimeout(request.timer);
        this.#requests.delete(reply);
      }
      break;
    }
    this.opts.onJob(new JobMessage(msg));
  }
}
