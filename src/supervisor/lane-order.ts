/**
 * Which lanes a supervisor's free slots are offered to, in what shares.
 * Issue 10 ships a plain rotation; issue 15 replaces this module (strict
 * band order, tenant turns, global limits) without touching the runner.
 */
export interface LaneOrder {
  /** Splits `credits` pull credits over `lanes` (codes); lanes left out get none this time. */
  share(credits: number, lanes: readonly string[]): [lane: string, credits: number][];
}

/** Even shares, starting one lane further each time, so no lane is always last. */
export class Rotation implements LaneOrder {
  #next = 0;

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
