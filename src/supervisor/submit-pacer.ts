/**
 * Intake must not starve execution (issue 17). A supervisor's submits and
 * its own runs share one event loop (and, on a small machine, the cores),
 * and accepting a job is cheaper than running one: under 64 submits in
 * flight the backlog grew without bound while completions fell to 0.57 of
 * the drain rate. So while this supervisor holds every job it may (all its
 * processes busy, and with short jobs their queue places too), single
 * submits take turns: a busy spell starts with WINDOW of them (so the
 * queue keeps enough ahead of the runs that the pool never waits for a
 * submit on its way), each run that ends grants one more (at most WINDOW
 * banked), and a submit with no turn waits for one, at most MAX_HOLD_MS,
 * then goes ahead. A submit is delayed, never refused (refusing is
 * max_pending's job), and the hold stays inside the gateway's request
 * timeout with the submit's own retries. With room for jobs (for longer
 * than BUSY_LINGER_MS) nothing waits.
 */
export const MAX_HOLD_MS = 500;
/** Submits a busy spell lets through ahead of the runs that end in it: the backlog it can add. */
export const WINDOW = 64;
/**
 * A busy pool has room for a moment after each run, until its next job is
 * pulled: a spell lasts this long past the last submit that found it full,
 * or those moments would start a new spell (and a new window) after every
 * run. Submits further apart than this each find a spell of their own:
 * they are no load to pace.
 */
const BUSY_LINGER_MS = 50;

export class SubmitPacer {
  #turns = WINDOW;
  #busyAt = Number.NEGATIVE_INFINITY;
  /** Held submits, first come first released (a Set keeps insertion order). */
  readonly #held = new Set<() => void>();

  /** saturated: this supervisor holds every job it may; onHeld: a submit waited (metrics). */
  constructor(
    private readonly saturated: () => boolean,
    private readonly onHeld: () => void = () => undefined,
  ) {}

  /** Resolves when the submit may go on: at once outside a busy spell or with a turn, else on the next run's end or after MAX_HOLD_MS. */
  turn(): Promise<void> | undefined {
    const now = Date.now();
    if (this.saturated()) {
      if (now - this.#busyAt > BUSY_LINGER_MS) this.#turns = WINDOW;
      this.#busyAt = now;
    } else if (now - this.#busyAt > BUSY_LINGER_MS) return undefined;
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
    else this.#turns = Math.min(WINDOW, this.#turns + 1);
  }
}
