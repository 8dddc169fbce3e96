/**
 * Pulls jobs from one durable JetStream pull consumer with credits: it asks
 * the server for exactly as many messages as the caller has free execution
 * processes, so a busy supervisor never hoards work another could run.
 *
 * nats.js's fetch() opens a subscription per call and consume() refills on
 * delivery rather than on completion (it hoards), so this speaks the pull
 * protocol directly over one long-lived inbox subscription.
 *
 * Every pull request asks for idle heartbeats. A consumer leader that dies
 * or is cut off ends its pull requests without a word (no 408, no 409), so
 * a request that hears nothing for a few heartbeats is counted as gone and
 * its credits go back to the caller, who pulls again: from the new leader,
 * once elected. That is all re-pulling needs after an election, a
 * partition or a reconnect.
 */
import { createInbox, type Msg, type NatsConnection, type Subscription } from "@nats-io/nats-core";
import type { Logger } from "pino";
import { guard, onMessage } from "./guard.js";

export const ACK = new TextEncoder().encode("+ACK");
export const WORKING = new TextEncoder().encode("+WPI");
const TERM = new TextEncoder().encode("+TERM");
/** Redeliver at once (counts as a delivery). */
export const NAK = new TextEncoder().encode("-NAK");

let receipts = 0;

/** One delivered job message and the acks JetStream understands for it. */
export class JobMessage {
  readonly deliveryCount: number;
  readonly streamSeq: number;
  /** Messages its consumer still had to deliver when it sent this one (the lane's backlog then). */
  readonly pending: number;
  /** Unique in this process for every message received: names the run it starts. */
  readonly receipt = ++receipts;
  constructor(private readonly msg: Msg) {
    // $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<timestamp>.<pending> (v1) or with domain + account hash first (v2).
    const tokens = (msg.reply ?? "").split(".");
    const offset = tokens.length >= 12 ? 4 : 2;
    this.deliveryCount = Number(tokens[offset + 2]);
    this.streamSeq = Number(tokens[offset + 3]);
    // Anyone who may publish to our inbox can send a reply subject: a count that is no count reads as none waiting.
    const pending = Number(tokens[offset + 6]);
    this.pending = Number.isSafeInteger(pending) && pending > 0 ? pending : 0;
  }
  /**
   * Where its acks go: any process may send them, so a remote compute lease
   * keeps it in KV and whichever supervisor serves the lease's next call acks.
   */
  get ackSubject(): string {
    return this.msg.reply ?? "";
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
    this.msg.respond(delayMs > 0 ? `-NAK ${JSON.stringify({ delay: delayMs * 1_000_000 })}` : NAK);
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
  /** Last time the server showed this request alive (sent, a heartbeat, a message). */
  heardAt: number;
  /** Silence this long (a few of its idle heartbeats missed) ends it. */
  silentAfterMs: number;
  expiresAt: number;
}

/** The server sends a heartbeat on an idle pull request this often (at most half its expiry); SILENT_BEATS missed end it. */
export const PULL_HEARTBEAT_MS = 1000;
const SILENT_BEATS = 3;
const SWEEP_MS = 500;
const IDLE_HEARTBEAT = 100;

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
  readonly #sweeper: NodeJS.Timeout;
  #sub: Subscription;
  #seq = 0;
  #silentSince = 0;

  constructor(
    private readonly nc: NatsConnection,
    private readonly opts: PullerOptions,
  ) {
    this.#nextSubject = `$JS.API.CONSUMER.MSG.NEXT.${opts.stream}.${opts.consumer}`;
    this.#sub = nc.subscribe(`${this.#inbox}.*`, { callback: onMessage(opts.log, "pull subscription", (msg) => this.#onMsg(msg)) });
    this.#sweeper = setInterval(guard(opts.log, "pull sweep", () => this.#sweep()), SWEEP_MS);
    this.#sweeper.unref();
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
    const now = Date.now();
    // The server wants a heartbeat at most half the expiry; silence is judged against the request's own.
    const heartbeatMs = Math.max(50, Math.min(PULL_HEARTBEAT_MS, Math.floor(expiresMs / 2)));
    // Reclaim the credits ourselves if the server's 408 never comes (e.g. it restarted), or it goes silent.
    this.#requests.set(reply, { remaining: batch, heardAt: now, silentAfterMs: SILENT_BEATS * heartbeatMs, expiresAt: now + expiresMs + 5000 });
    this.nc.publish(this.#nextSubject, JSON.stringify({ batch, expires: expiresMs * 1_000_000, idle_heartbeat: heartbeatMs * 1_000_000 }), { reply });
  }

  /** Forgets every open request: after a reconnect the server may have lost them. */
  reset(): void {
    this.#requests.clear();
  }

  async close(): Promise<void> {
    clearInterval(this.#sweeper);
    this.reset();
    await this.#sub.drain().catch(() => undefined);
  }

  #end(reply: string): void {
    if (!this.#requests.delete(reply)) return;
    this.opts.onCreditsReturned();
  }

  /** Ends requests the server stopped answering for (a leader gone) or kept past their expiry. */
  #sweep(): void {
    const now = Date.now();
    let silent = 0;
    for (const [reply, request] of this.#requests) {
      const quiet = now - request.heardAt > request.silentAfterMs;
      if (!quiet && now < request.expiresAt) continue;
      if (quiet) silent++;
      this.#requests.delete(reply);
    }
    if (silent > 0) {
      // Once per silent spell, not every sweep while the consumer has no leader.
      if (!this.#silentSince) this.opts.log.warn({ consumer: this.opts.consumer, requests: silent }, "pull requests went silent (consumer leader lost?); pulling again");
      this.#silentSince ||= now;
      this.opts.onCreditsReturned();
    }
  }

  #onMsg(msg: Msg): void {
    const code = msg.headers?.code ?? 0;
    if (code >= 100 && msg.data.length === 0 && !msg.reply) {
      if (code === IDLE_HEARTBEAT) {
        this.#heard(msg.subject);
        return;
      }
      // Status for one pull request: 408 expired, 409 ended (max waiting, leadership change, consumer deleted, ...).
      if (code === 409) this.opts.log.warn({ consumer: this.opts.consumer, status: msg.headers?.description }, "pull request ended");
      this.#end(msg.subject);
      return;
    }
    // A message carries its stream subject, not the request's: the server fills requests first come first served.
    for (const [reply, request] of this.#requests) {
      request.remaining--;
      request.heardAt = Date.now();
      if (request.remaining <= 0) this.#requests.delete(reply);
      break;
    }
    this.opts.onJob(new JobMessage(msg));
  }

  #heard(reply: string): void {
    const request = this.#requests.get(reply);
    if (!request) return;
    request.heardAt = Date.now();
    if (this.#silentSince) {
      this.opts.log.info({ consumer: this.opts.consumer, silent_ms: request.heardAt - this.#silentSince }, "pull requests answered again");
      this.#silentSince = 0;
    }
  }
}
