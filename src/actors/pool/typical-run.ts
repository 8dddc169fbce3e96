/**
 * How long a pool's runs take lately: a moving average of their durations,
 * unknown (infinite) until one has run. Callers lease or pull ahead of
 * their actors only while runs are short.
 */
const WEIGHT = 0.2;

export class TypicalRun {
  #ms = Number.POSITIVE_INFINITY;

  get ms(): number {
    return this.#ms;
  }

  observe(durationMs: number): void {
    this.#ms = Number.isFinite(this.#ms) ? this.#ms + WEIGHT * (durationMs - this.#ms) : durationMs;
  }
}
