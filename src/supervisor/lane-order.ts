/**
 * Which lanes a supervisor's free slots are offered to, in what shares
 * (issue 15): bands strictly ordered (h > n > l: while a lane of a higher
 * band has work, no lane of a lower band is pulled from), and within the
 * band the lanes with work (one per tenant) take turns. The runner knows
 * nothing of bands or tenants: it asks `rank` and `share`.
 */
import type { Band } from "../contract/index.js";

export interface LaneOrder {
  /** Higher ranks are served first; a lane ranked below the best lane with work gets nothing. */
  rank(lane: string): number;
  /** Splits `credits` pull credits over `lanes` (codes, all of the best rank); lanes left out get none this time. */
  share(credits: number, lanes: readonly string[]): [lane: string, credits: number][];
}

const BAND_RANK: Record<Band, number> = { h: 2, n: 1, l: 0 };

/** Strict band order, and even shares rotating one lane further each time, so no lane (tenant) is always last. */
export class BandsThenTurns implements LaneOrder {
  #next = 0;

  /** `bandOf` knows every lane the runner pulls (the lane registry); an unknown one ranks normal. */
  constructor(private readonly bandOf: (lane: string) => Band | undefined) {}

  rank(lane: string): number {
    return BAND_RANK[this.bandOf(lane) ?? "n"];
  }

  share(credits: number, lanes: readonly string[]): [string, number][] {
    const out: [string, number][] = [];
    if (lanes.length === 0) return out;
    const start = this.#next++ % lanes.length;
    for (let i = 0; credits > 0 && i < lanes.length; i++) {
      const n = Math.ceil(credits / (lanes.length - i));
      out.push([lanes[(start + i) % lanes.length]!, n]);
      credits -= n;
    }
    return out;
  }
}
