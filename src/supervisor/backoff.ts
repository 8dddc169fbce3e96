import type { Backoff } from "../contract/index.js";

const DEFAULT_JITTER = { exponential: 0.2, fixed: 0 } as const;

/**
 * Delay before the attempt after `failedAttempt` (1-based): `delay_ms` for
 * fixed, `delay_ms * 2^(failedAttempt-1)` for exponential, capped at
 * `max_delay_ms`, then spread by ±jitter so failing jobs do not retry in step.
 */
export function backoffDelay(backoff: Backoff, failedAttempt: number, random: () => number = Math.random): number {
  const base = backoff.type === "fixed" ? backoff.delay_ms : backoff.delay_ms * 2 ** Math.max(0, failedAttempt - 1);
  const capped = Math.min(base, backoff.max_delay_ms ?? Number.MAX_SAFE_INTEGER);
  const jitter = backoff.jitter ?? DEFAULT_JITTER[backoff.type];
  return Math.max(0, Math.round(capped * (1 + jitter * (2 * random() - 1))));
}
