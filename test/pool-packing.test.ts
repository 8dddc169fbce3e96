/**
 * The execution pool on its own (no NATS): runs a caller packs go to one
 * busy actor before idle ones, unpacked ones spread over the idle actors,
 * an actor holds no more runs than its caller's runsPerActor (4 unless
 * said, 8 at most), and a packed run never queues behind a run that has
 * been going a while.
 */
import { pino } from "pino";
import t, { type Test } from "tap";
import { Pool, type ExecutionHandle } from "../src/actors/pool/pool.js";

const pool = new Pool({
  isolation: "process",
  min: 3,
  max: 3,
  maxExecutions: 1000,
  maxMemoryMb: 512,
  idleTimeoutMs: 60_000,
  killGraceMs: 200,
  builtins: true,
  env: {},
  maxRestarts: 5,
  restartWindowMs: 60_000,
  log: pino({ level: "silent" }),
  onChange: () => undefined,
});
pool.start();
t.teardown(() => pool.drain(0));

let n = 0;
const spec = (type: string, payload: unknown = {}) => ({ job_id: `J${++n}`, type, payload, attempt: 1, fencing_token: 1, correlation_id: `c${n}` });
const allIdle = async () => {
  for (let tries = 0; pool.snapshot().filter((p) => p.state === "idle").length < 3; tries++) {
    if (tries > 200) throw new Error("the pool's actors did not all come idle");
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
};
const pidsOf = async (t: Test, handles: Promise<ExecutionHandle>[]) => {
  const started = await Promise.all(handles);
  const outcomes = await Promise.all(started.map((h) => h.outcome));
  t.ok(outcomes.every((o) => o.ok), "every run succeeded");
  return new Set(started.map((h) => h.pid));
};

t.test("runs packed in one turn go to one actor; unpacked ones spread over the idle actors", async (t) => {
  await allIdle();
  t.equal((await pidsOf(t, [1, 2, 3].map(() => pool.execute(spec("noop"), 5000, { maxWaitMs: 1000, pack: true })))).size, 1, "packed: one actor");
  await allIdle();
  t.equal((await pidsOf(t, [1, 2, 3].map(() => pool.execute(spec("noop"), 5000, { maxWaitMs: 1000 })))).size, 3, "unpacked: one actor each");
});

t.test("an actor holds at most the caller's runsPerActor runs: 4 unless said, never more than 8", async (t) => {
  const runsByActor = async (runsPerActor?: number) => {
    await allIdle();
    const started = await Promise.all(Array.from({ length: 9 }, () => pool.execute(spec("noop"), 5000, { maxWaitMs: 1000, pack: true, runsPerActor })));
    t.ok((await Promise.all(started.map((h) => h.outcome))).every((o) => o.ok), "every run succeeded");
    const counts = new Map<number, number>();
    for (const h of started) counts.set(h.pid, (counts.get(h.pid) ?? 0) + 1);
    return [...counts.values()].sort((a, b) => b - a);
  };
  t.same(await runsByActor(3), [3, 3, 3], "3 each");
  t.same(await runsByActor(), [4, 4, 1], "4 each by default");
  t.same(await runsByActor(8), [8, 1], "8 on one");
  t.same(await runsByActor(50), [8, 1], "never more than 8");
});

t.test("a packed run does not queue behind a run that has been going a while", async (t) => {
  await allIdle();
  const long = await pool.execute(spec("sleep", { ms: 1500 }), 5000, { maxWaitMs: 1000, pack: true });
  await new Promise((resolve) => setTimeout(resolve, 50));
  const packed = await pool.execute(spec("noop"), 5000, { maxWaitMs: 1000, pack: true });
  t.not(packed.pid, long.pid, "it took an idle actor");
  t.match(await packed.outcome, { ok: true });
  t.match(await long.outcome, { ok: true });
});
