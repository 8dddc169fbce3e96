/**
 * Which lanes have work, as far as one runner can tell without asking the
 * server (issue 15). Every delivered job carries its consumer's pending
 * count (the last token of its ack subject): the jobs still waiting in that
 * lane. A lane whose last delivery, within BUSY_LANE_MS, left jobs waiting
 * has work. Any other lane is dry: its last delivery left nothing behind,
 * its last pull ended unfilled, or it has been silent for a while (other
 * supervisors may have taken what it had). A dry lane gets a watch, no
 * credits, and holds no lower band back, until a delivery shows jobs
 * waiting in it again: held by a dry lane's open request, the credits a
 * lane with work needed waited out the request (issue 15's bench: 3 bands
 * × 3 tenants at 0.51× one band).
 */

/** Past this without a delivery, a lane's last count is too old to hold credits or lower bands on. */
const BUSY_LANE_MS = 1000;

interface Seen {
  waiting: number;
  at: number;
}

export class LaneActivity {
  readonly #seen = new Map<string, Seen>();

  /** Jobs known to wait in the lane beyond those delivered; 0 for a dry lane. */
  waiting(lane: string, now: number): number {
    const seen = this.#seen.get(lane);
    return seen && now - seen.at < BUSY_LANE_MS ? seen.waiting : 0;
  }

  /** A job came from the lane with `pending` more behind it: true when the lane woke up or ran dry (the credits should follow at once). */
  delivered(lane: string, pending: number, now: number): boolean {
    const was = this.waiting(lane, now);
    this.#seen.set(lane, { waiting: pending, at: now });
    return (was > 0) !== (pending > 0);
  }

  /** A pull request on the lane ended unfilled: it had nothing more then. */
  ranDry(lane: string): void {
    this.#seen.delete(lane);
  }
}
