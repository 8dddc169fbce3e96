/**
 * The intake pacer on its own (supervisor/submit-pacer.ts): which submits
 * wait, in what order they go on, and that a hold is bounded. The same
 * pacer in a running supervisor is tested in limits.test.ts.
 */
import t from "tap";
import { MAX_HOLD_MS, SubmitPacer, WINDOW } from "../src/supervisor/submit-pacer.js";

t.test("with room nothing waits; a busy spell lets WINDOW submits through, then each run's end lets the longest-held one go on", async (t) => {
  let busy = false;
  let heldCount = 0;
  const pacer = new SubmitPacer(() => busy, () => heldCount++);
  t.equal(pacer.turn(), undefined, "room for jobs: no wait");
  busy = true;
  for (let i = 0; i < WINDOW; i++) if (pacer.turn() !== undefined) t.fail(`submit ${i} of the window was held`);
  t.equal(heldCount, 0, `the spell's first ${WINDOW} submits went on at once`);
  const order: number[] = [];
  const waits = [1, 2, 3].map((i) => pacer.turn()!.then(() => order.push(i)));
  t.equal(heldCount, 3, "three submits held");
  pacer.ran();
  await waits[0];
  t.same(order, [1], "the first run's end released the first held submit only");
  pacer.ran();
  pacer.ran();
  await Promise.all(waits);
  t.same(order, [1, 2, 3], "then the others, in the order they came");
  pacer.ran();
  t.equal(pacer.turn(), undefined, "a run that ended with nobody held left a turn for the next submit");
  t.not(pacer.turn(), undefined, "and only one");
});

t.test("a held submit goes on after MAX_HOLD_MS even if no run ends", async (t) => {
  const pacer = new SubmitPacer(() => true);
  for (let i = 0; i < WINDOW; i++) void pacer.turn();
  const t0 = performance.now();
  await pacer.turn();
  const waited = performance.now() - t0;
  t.ok(waited >= MAX_HOLD_MS - 5, `it waited the hold out (${waited.toFixed(0)} ms)`);
  t.ok(waited < MAX_HOLD_MS * 4, `and no longer (${waited.toFixed(0)} ms)`);
});
