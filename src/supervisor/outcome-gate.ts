/**
 * Whether this supervisor can store job outcomes right now. A supervisor
 * whose node is cut off from the cluster (or whose results stream is
 * electing a leader) still gets jobs for a while, from pull requests it made
 * before and from a consumer leader stranded on its side: every job it runs
 * then is a job it cannot report on, which runs again elsewhere. So while an
 * outcome write fails or hangs, the gate is closed and the runner takes no
 * jobs; it opens on the next outcome stored, or, once nothing is left to
 * store, when a probe (an acknowledged write) gets through again.
 */
import type { Logger } from "pino";
import { guard } from "../platform/guard.js";
import { unavailableOf } from "../platform/nats-errors.js";

/** An outcome write unacknowledged this long (a healthy one takes milliseconds) closes the gate. */
const STUCK_MS = 500;
const RETRY_MS = 500;
const PROBE_MS = 1000;

export class OutcomeGate {
  /** Outcome writes failing or hanging now. */
  #failing = 0;
  #probing = false;
  #stopped = false;

  constructor(
    private readonly opts: {
      log: Logger;
      /** Resolves when an outcome could be stored: an acknowledged write got through. */
      probe(): Promise<unknown>;
      /** Called when the gate opens again. */
      onOpen(): void;
    },
  ) {}

  get closed(): boolean {
    return this.#failing > 0 || this.#probing;
  }

  /**
   * Runs `store` until it succeeds, retrying failures until `deadlineMs`
   * (epoch ms) passes or `abandon()` says so; then the last error is thrown
   * and the gate stays closed until the probe answers.
   */
  async store<T>(store: () => Promise<T>, deadlineMs: number, abandon: () => boolean, onRetry: (err: unknown) => void): Promise<T> {
    let counted = false;
    const close = (err?: unknown) => {
      if (counted) return;
      counted = true;
      if (!this.closed) this.opts.log.warn({ err }, "job outcomes cannot be stored now; taking no new jobs until they can");
      this.#failing++;
    };
    const stuck = setTimeout(close, STUCK_MS);
    let stored = false;
    try {
      for (;;) {
        try {
          const value = await store();
          stored = true;
          return value;
        } catch (err) {
          if (Date.now() >= deadlineMs || abandon()) throw err;
          close(err);
          onRetry(err);
          await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
        }
      }
    } finally {
      clearTimeout(stuck);
      if (counted) {
        this.#failing--;
        if (stored) this.#openIfClear();
        else this.#probe();
      }
    }
  }

  /**
   * Any other acknowledged write (the heartbeat, every few seconds) tells the
   * same: an idle supervisor cut off from the cluster learns it from this
   * before a consumer leader stranded on its side hands it a job, instead of
   * from that job's outcome after the run.
   */
  watch(write: Promise<unknown>): void {
    this.store(() => write, 0, () => true, () => undefined).catch((err: unknown) => {
      // A permanent refusal (an oversized heartbeat) says nothing about outcomes.
      if (unavailableOf(err)) this.#probe();
    });
  }

  stop(): void {
    this.#stopped = true;
  }

  #openIfClear(): void {
    if (this.#failing > 0 || this.#probing) return;
    this.opts.log.info("job outcomes stored again; taking jobs");
    this.opts.onOpen();
  }

  /** Nothing left to retry, but the last write failed: probe until a write gets through. */
  #probe(): void {
    if (this.#probing) return;
    this.#probing = true;
    const attempt = () => {
      if (this.#stopped) return;
      this.opts.probe().then(
        () => {
          this.#probing = false;
          this.#openIfClear();
        },
        () => setTimeout(guard(this.opts.log, "outcome gate probe", attempt), PROBE_MS).unref(),
      );
    };
    attempt();
  }
}
