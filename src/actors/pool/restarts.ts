/**
 * Restart intensity, as in OTP: up to max_restarts crashes per window are
 * restarted one for one; past that, spawning backs off (1 s, doubling to
 * 30 s) instead of spinning on a handler that kills every actor.
 */
import type { Logger } from "pino";
import type { Supervision } from "../../contract/index.js";

const MIN_SPAWN_BACKOFF_MS = 1000;
const MAX_SPAWN_BACKOFF_MS = 30_000;

export class RestartIntensity {
  #crashes: number[] = [];
  #backoffMs = 0;
  #spawnNotBefore = 0;
  #decision: Supervision["decision"] = "restart";

  constructor(private readonly opts: { maxRestarts: number; windowMs: number; log: Logger; plural: string }) {}

  /** Epoch ms before which nothing may be spawned (0 or past: spawn now). */
  get spawnNotBefore(): number {
    return this.#spawnNotBefore;
  }

  backingOff(): boolean {
    return this.#spawnNotBefore > Date.now();
  }

  crashed(): void {
    const now = Date.now();
    this.#crashes = this.#crashes.filter((t) => now - t < this.opts.windowMs);
    this.#crashes.push(now);
    if (this.#crashes.length <= this.opts.maxRestarts) {
      this.#backoffMs = 0;
      this.#decision = "restart";
      return;
    }
    this.#backoffMs = Math.min(MAX_SPAWN_BACKOFF_MS, Math.max(MIN_SPAWN_BACKOFF_MS, this.#backoffMs * 2));
    this.#spawnNotBefore = now + this.#backoffMs;
    this.#decision = "backoff";
    this.opts.log.error(
      { decision: "backoff", crashes_in_window: this.#crashes.length, window_ms: this.opts.windowMs, backoff_ms: this.#backoffMs },
      `execution ${this.opts.plural} keep crashing; spawning backs off`,
    );
  }

  supervision(): Supervision {
    const now = Date.now();
    const crashes = this.#crashes.filter((t) => now - t < this.opts.windowMs).length;
    const pausedMs = Math.max(0, this.#spawnNotBefore - now);
    return { decision: pausedMs > 0 ? "backoff" : this.#decision, crashes_in_window: crashes, spawn_paused_ms: pausedMs };
  }
}
