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
  /** Splits `credits` pull credits over lanes (all of the best rank), each wanting at most `want`; lanes left out get none this time. */
  share(credits: number, wants: readonly (readonly [lane: string, want: number])[]): [lane: string, credits: number][];
}

const BAND_RANK: Record<Band, number> = { h: 2, n: 1, l: 0 };
/**
 * The fewest credits a lane is offered at once (unless it wants fewer):
 * split evenly over nine lanes, a few free slots went out as many requests
 * of one job, a round trip and a pull to process each.
 */
export const MIN_SHARE = 4;

/** Strict band order, and shares in turns: the lane served longest ago first, so no lane (tenant) is always last. */
export class BandsThenTurns implements LaneOrder {
  /** When each lane was last given credits, in turns counted here. */
  readonly #servedAt = new Map<string, number>();
  #turn = 0;

  /** `bandOf` knows every lane the runner pulls (the lane registry); an unknown one ranks normal. */
  constructor(private readonly bandOf: (lane: string) => Band | undefined) {}

  rank(lane: string): number {
    return BAND_RANK[this.bandOf(lane) ?? "n"];
  }

  share(credits: number, wants: readonly (readonly [string, number])[]): [string, number][] {
    const turns = [...wants].sort(([a], [b]) => (this.#servedAt.get(a) ?? 0) - (this.#servedAt.get(b) ?? 0));
    const out: [string, number][] = [];
    for (let i = 0; credits > 0 && i < turns.length; i++) {
      const [lane, want] = turns[i]!;
      const n = Math.min(want, credits, Math.max(MIN_SHARE, Math.ceil(credits / (turns.length - i))));
      out.push([lane, n]);
      this.#servedAt.set(lane, ++this.#turn);
      credits -= n;
    }
    return out;
  }
}
