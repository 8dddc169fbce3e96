/**
 * The runner's pull credits on their own (supervisor/lane-pulls.ts,
 * lane-order.ts): which lanes are asked for how many jobs, from what their
 * deliveries said was waiting. The same in a running supervisor:
 * priorities.test.ts (strict bands, tenant turns) and limits.test.ts.
 */
import t from "tap";
import type { Band } from "../src/contract/index.js";
import { LanePulls, WATCH_EXPIRES_MS, type LanePuller } from "../src/supervisor/lane-pulls.js";
import { BandsThenTurns, MIN_SHARE } from "../src/supervisor/lane-order.js";

/** Records its pulls; `outstanding` is what was asked and not yet delivered (`deliver` takes one). */
class FakePuller implements LanePuller {
  outstanding = 0;
  readonly pulls: { batch: number; expiresMs: number | undefined }[] = [];
  pull(batch: number, expiresMs?: number): void {
    if (batch <= 0) return;
    this.outstanding += batch;
    this.pulls.push({ batch, expiresMs });
  }
  reset(): void {
    this.outstanding = 0;
  }
  async close(): Promise<void> {}
  /** Credits asked since the last call. */
  asked(): number {
    const n = this.pulls.reduce((sum, p) => sum + p.batch, 0);
    this.pulls.length = 0;
    return n;
  }
}

const unlimited = { caps: () => ({ cap: (_q: string, n: number) => n, take: (_q: string, n: number) => n }) };

/** Lanes named by their band's letter first ("h1", "l"); one queue, no limits. */
function setup(lanes: string[]) {
  const pulls = new LanePulls({ laneOrder: new BandsThenTurns((lane) => lane[0] as Band), limits: unlimited, queueOf: () => "q" });
  const pullers = new Map(lanes.map((lane) => [lane, new FakePuller()]));
  for (const [lane, p] of pullers) pulls.add(lane, p);
  /** One job of the lane arrives (on one of its open requests) with `pending` more behind it. */
  const deliver = (lane: string, pending: number) => {
    const p = pullers.get(lane)!;
    p.outstanding = Math.max(0, p.outstanding - 1);
    return pulls.delivered(lane, pending);
  };
  return { pulls, pullers, deliver };
}

t.test("a lane is asked for no more than it has waiting; a dry lane only for a watch of one, while there is room", async (t) => {
  const { pulls, pullers, deliver } = setup(["n"]);
  const n = pullers.get("n")!;
  pulls.refill(0, 0);
  t.equal(n.asked(), 0, "no room: not even a watch");
  pulls.refill(16, 0);
  t.same(n.pulls, [{ batch: 1, expiresMs: WATCH_EXPIRES_MS }], "never heard from: one watch");
  n.asked();
  t.ok(deliver("n", 0), "its watch delivered with nothing behind: share again, to renew the watch");
  pulls.refill(16, 0);
  t.equal(n.asked(), 1, "a new watch");
  t.ok(deliver("n", 5), "its job said 5 more wait: the credits should follow");
  pulls.refill(15, 0);
  t.equal(n.asked(), 5, "asked for the 5 waiting, not the 15 it has room for");
  pulls.refill(15, 0);
  t.equal(n.asked(), 0, "and not again while they are on their way");
  for (let left = 4; left >= 0; left--) deliver("n", left);
  pulls.refill(10, 0);
  t.equal(n.asked(), 1, "the last said none wait: dry again, a watch");
  deliver("n", 7);
  pulls.refill(10, 0);
  t.equal(n.asked(), 7, "its watch delivered with 7 behind: it has work again");
  pulls.ranDry("n");
  n.reset();
  pulls.refill(10, 0);
  t.equal(n.asked(), 1, "a request that ended unfilled: dry, a watch");
});

t.test("a higher band holds lower bands back while it has jobs not asked for, and not once it is dry", async (t) => {
  const { pulls, pullers, deliver } = setup(["h", "l"]);
  const [h, l] = [pullers.get("h")!, pullers.get("l")!];
  deliver("l", 300);
  deliver("h", 10);
  pulls.refill(4, 0);
  t.equal(h.asked(), 4, "the high lane gets all the room");
  t.equal(l.asked(), 0, "the low lane nothing, not even a watch");
  pulls.refill(8, 0);
  t.equal(h.asked(), 4, "more room: the high lane again, its credits in hand counted");
  t.equal(l.asked(), 0, "the low lane still nothing");
  t.ok(h.pulls.length === 0 && h.outstanding === 8, "8 of the high lane's jobs on their way");
  deliver("h", 9);
  deliver("h", 8);
  pulls.refill(8, 0);
  t.equal(h.asked(), 2, "8 wait and 6 are asked for: 2 more for the high lane");
  t.equal(l.asked(), 0, "all the rest of its room held for the high band");
  deliver("h", 0);
  pulls.refill(12, 0);
  t.equal(l.asked(), 12, "the high lane's last job said none wait: its open requests hold no credits, and the low lane gets them");
  t.equal(h.asked(), 0, "a dry lane with requests open gets no watch beside them");
});

t.test("lanes of one band take turns, the one served longest ago first, in shares of at least MIN_SHARE", async (t) => {
  const { pulls, pullers, deliver } = setup(["n1", "n2", "n3"]);
  for (const lane of pullers.keys()) deliver(lane, 1000);
  pulls.refill(2 * MIN_SHARE, 0);
  const first = [...pullers.values()].map((p) => p.asked());
  t.same(first.filter((n) => n > 0), [MIN_SHARE, MIN_SHARE], `8 credits over 3 lanes: two of ${MIN_SHARE}, not 3/3/2 (${first.join("/")})`);
  for (const p of pullers.values()) p.reset();
  const served = new Map([...pullers.keys()].map((lane) => [lane, 0]));
  // A busy pool: one or two runs end at a time, and each lane's jobs come with plenty behind them.
  for (let i = 0; i < 150; i++) {
    pulls.refill(1 + (i % 2), 0);
    for (const [lane, p] of pullers) {
      const n = p.asked();
      served.set(lane, served.get(lane)! + n);
      for (let k = 0; k < n; k++) deliver(lane, 1000);
    }
  }
  const counts = [...served.values()];
  t.ok(Math.max(...counts) - Math.min(...counts) <= 2, `225 credits in 150 refills, per lane: ${counts.join("/")}`);
});

t.test("while jobs may be taken beyond the room, dry lanes stand open for the room (at least a share) each, as far as those jobs and the room left cover", async (t) => {
  const { pulls, pullers, deliver } = setup(["n1", "n2", "n3", "n4"]);
  pulls.refill(2, 4);
  t.same(
    [...pullers.values()].map((p) => p.asked()),
    [MIN_SHARE, 1, 1, 1],
    "6 jobs to stand for: one lane a share, the others a watch of one",
  );
  for (const p of pullers.values()) p.reset();
  pulls.refill(4, 100);
  t.same(
    [...pullers.values()].map((p) => p.asked()),
    [MIN_SHARE, MIN_SHARE, MIN_SHARE, MIN_SHARE],
    "room for them all: a share each",
  );
  for (const p of pullers.values()) p.reset();
  pulls.refill(16, 100);
  t.same(
    [...pullers.values()].map((p) => p.asked()),
    [16, 16, 16, 16],
    "more room: as many each as the room",
  );
  for (const p of pullers.values()) p.reset();
  pulls.refill(4, 100);
  for (const p of pullers.values()) p.asked();
  deliver("n1", 0);
  pulls.refill(4, 100);
  t.same(
    [...pullers.values()].map((p) => p.asked()),
    [0, 0, 0, 0],
    "a lane with part of its request still open is not asked again",
  );
  for (let k = 0; k < MIN_SHARE; k++) deliver("n2", 6);
  pulls.refill(4, 100);
  t.equal(pullers.get("n2")!.asked(), 4, "a lane with work gets the room, what dry lanes hold open not counted");
});
