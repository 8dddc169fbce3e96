/**
 * Intake must not starve execution (issue 17). A supervisor's submits and
 * its own runs share one event loop (and, on a small machine, the cores),
 * and accepting a job is cheaper than running one: under 64 submits in
 * flight the backlog grew without bound while completions fell to 0.57 of
 * the drain rate. So while every execution slot here is busy, a single
 * submit takes a turn: each run that ends grants one, and a submit with no
 * turn waits for one, at most MAX_HOLD_MS, then goes ahead. A submit is
 * delayed, never refused (refusing is max_pending's job, and the hold stays
 * inside the gateway's request timeout with the submit's own retries). With
 * slots free (for longer than BUSY_LINGER_MS) nothing waits, and turns left
 * over within a busy spell are banked up to MAX_BANKED, so submits that come
 * slower than runs end are not held either.
 */
export const MAX_HOLD_MS = 500;
const MAX_BANKED = 256;
/**
 * A busy pool has a free slot for a moment after each run, until its next
 * job is pulled: pacing lasts this long past the last time all were taken,
 * or those moments let most submits through unpaced.
 */
const BUSY_LINGER_MS = 50;

export class SubmitPacer {
  #turns = 0;
  #busyAt = 0;
  /** Held submits, first come first released (a Set keeps insertion order). */
  readonly #held = new Set<() => void>();

  /** saturated: every execution slot of this supervisor is taken; onHeld: a submit waited (metrics). */
  constructor(
    private readonly saturated: () => boolean,
    private readonly onHeld: () => void = () => undefined,
  ) {}

  /** Resolves when the submit may go on: at once with a free slot or a banked turn, else on the next run's end or after MAX_HOLD_MS. */
  turn(): Promise<void> | undefined {
    const now = Date.now();
    if (this.saturated()) this.#busyAt = now;
    else if (now - this.#busyAt > BUSY_LINGER_MS) {
      // Turns are banked within one busy spell: runs that ended long before it give the next none.
      this.#turns = 0;
      return undefined;
    }
    if (this.#turns > 0) {
      this.#turns--;
      return undefined;
    }
    this.onHeld();
    return new Promise<void>((resolve) => {
      const release = () => {
        clearTimeout(timer);
        this.#held.delete(release);
        resolve();
      };
      const timer = setTimeout(release, MAX_HOLD_MS);
      this.#held.add(release);
    });
  }

  /** A run ended here: the longest-held submit goes on, or a turn is banked. */
  ran(): void {
    const first = this.#held.values().next();
    if (!first.done) first.value();
    else this.#turns = Math.min(MAX_BANKED, this.#turns + 1);
  }
}
