/**
 * Listing from the record streams: 50,000 jobs (batch submit) in several
 * states, queues, tenants and types; pages of 20 walked with the cursor give
 * every job exactly once, newest first; each filter gives exactly its jobs.
 * Page times with 1,000 and 50,000 kept are printed (the bench measures them).
 */
import t from "tap";
import { jetstreamManager } from "@nats-io/jetstream";
import { startSupervisor } from "./helpers/bosun.js";
import type { JobStatus, SubmitReply } from "./helpers/http.js";
import { connectClient, requestJson } from "./helpers/nats-client.js";
import { NatsServer } from "./helpers/nats-server.js";
import { uniqueName, waitFor } from "./helpers/wait.js";

interface Listed extends JobStatus {
  finished_at: string | null;
  created_at: string;
  tenant: string | null;
}
interface Page {
  jobs: Listed[];
  next_cursor: string | null;
}

const server = await NatsServer.start(t);
const nc = await connectClient(t, server.url);
const [qa, qb] = [uniqueName("la"), uniqueName("lb")];
await startSupervisor(t, server.url, { queues: [qa, qb], args: ["--min", "4", "--max", "4"] });

const list = async (query: Record<string, unknown>): Promise<Page> => {
  const reply = await requestJson<Page>(nc, "bosun.api.jobs.list", query, { timeoutMs: 30_000 });
  if (reply.errorCode) throw new Error(`list ${JSON.stringify(query)}: ${reply.errorCode} ${JSON.stringify(reply.body)}`);
  return reply.body;
};

/** Every page of a listing, following next_cursor. */
async function walk(query: Record<string, unknown>): Promise<{ jobs: Listed[]; pages: number }> {
  const jobs: Listed[] = [];
  let cursor: string | undefined;
  let pages = 0;
  do {
    const page = await list(cursor ? { ...query, cursor } : query);
    jobs.push(...page.jobs);
    pages++;
    cursor = page.next_cursor ?? undefined;
  } while (cursor);
  return { jobs, pages };
}

async function batch(entries: Record<string, unknown>[]): Promise<string[]> {
  const reply = await requestJson<{ jobs: (SubmitReply | { error: unknown })[] }>(nc, "bosun.api.jobs.submit_batch", { jobs: entries }, { timeoutMs: 60_000 });
  if (reply.errorCode) throw new Error(`batch: ${reply.errorCode}`);
  return reply.body.jobs.map((r) => {
    if (!("job_id" in r)) throw new Error(`batch entry refused: ${JSON.stringify(r)}`);
    return r.job_id;
  });
}

/** Until nothing is pending or running on either queue. */
async function idle(): Promise<void> {
  await waitFor(
    async () => {
      const reply = await requestJson<{ queues: { queue: string; pending: number; running: number }[] }>(nc, "bosun.api.queue.status", {});
      const mine = reply.body.queues.filter((q) => q.queue === qa || q.queue === qb);
      return mine.length === 2 && mine.every((q) => q.pending === 0 && q.running === 0);
    },
    { timeoutMs: 120_000, intervalMs: 250, what: "both queues to drain" },
  );
}

async function pageMs(query: Record<string, unknown>): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < 7; i++) {
    const t0 = performance.now();
    await list(query);
    times.push(performance.now() - t0);
  }
  return times.sort((a, b) => a - b)[3]!;
}

t.test("50,000 jobs: every page walk gives each job once, newest first; filters give exactly their jobs", async (t) => {
  const started = Date.now();
  // 5,000 finished (noop on qa, echo on qb for tenant "tb"), 20 dead, 20 cancelled, 44,960 scheduled.
  const runNow: Record<string, unknown>[] = Array.from({ length: 5000 }, (_, i) =>
    i % 2 === 0 ? { type: "noop", queue: qa } : { type: "echo", queue: qb, tenant: "tb", payload: { i } },
  );
  const finishedIds: string[] = [];
  for (let i = 0; i < runNow.length; i += 1000) finishedIds.push(...(await batch(runNow.slice(i, i + 1000))));
  const deadIds = await batch(Array.from({ length: 20 }, () => ({ type: "fail", queue: qa, tenant: "ta", max_attempts: 1 })));
  const cancelIds = await batch(Array.from({ length: 20 }, () => ({ type: "noop", queue: qb, delay_ms: 3_600_000 })));
  for (const id of cancelIds) await requestJson(nc, "bosun.api.jobs.cancel", { job_id: id });
  await idle();
  const onePage1k = await pageMs({ limit: 20 });
  const scheduledIds: string[] = [];
  const later = 44_960;
  for (let i = 0; i < later; i += 1000) {
    const n = Math.min(1000, later - i);
    scheduledIds.push(
      ...(await batch(Array.from({ length: n }, (_, j) => ((i + j) % 4 === 0 ? { type: "echo", queue: qb, tenant: "tb", delay_ms: 3_600_000 } : { type: "noop", queue: qa, delay_ms: 3_600_000 })))),
    );
  }
  // Every runnable job has ended before the walks.
  await idle();
  const all = new Set([...finishedIds, ...deadIds, ...cancelIds, ...scheduledIds]);
  t.equal(all.size, 50_000, "50,000 jobs accepted");
  // The scheduler parks what was just submitted (a pass over every new delayed job): after it.
  const jsm = await jetstreamManager(nc);
  await waitFor(async () => (await jsm.consumers.info("BOSUN_SCHEDULED", "bosun_scheduler")).num_pending === 0, { timeoutMs: 60_000, intervalMs: 250, what: "the scheduler to park the delayed jobs" });
  const onePage50k = await pageMs({ limit: 20 });
  t.comment(`a page of 20: ${onePage1k.toFixed(1)} ms with 5,040 kept, ${onePage50k.toFixed(1)} ms with 50,000 kept (median of 7; the bench has the real figures); setup ${((Date.now() - started) / 1000).toFixed(1)} s`);

  const walked0 = Date.now();
  const { jobs, pages } = await walk({ limit: 20 });
  t.comment(`walked ${pages} pages of 20 in ${((Date.now() - walked0) / 1000).toFixed(1)} s`);
  const ids = jobs.map((j) => j.job_id);
  t.equal(ids.length, 50_000, "the walk returned 50,000 entries");
  t.equal(new Set(ids).size, 50_000, "each job exactly once");
  t.ok(ids.every((id) => all.has(id)), "and only these jobs");
  // Newest first: by the time of each job's latest change (its end, else its submit). The
  // store time orders them; the record's own times come from the supervisor's clock a moment
  // earlier, so across the two kinds allow for that; within a kind, they must not go up.
  const changed = (j: Listed) => Date.parse(j.finished_at ?? j.created_at);
  const disorder = (list: Listed[], slackMs: number) => list.filter((j, i) => i > 0 && changed(j) > changed(list[i - 1]!) + slackMs).length;
  t.equal(disorder(jobs.filter((j) => j.finished_at !== null), 500), 0, "finished jobs newest first, page after page");
  t.equal(disorder(jobs.filter((j) => j.finished_at === null), 500), 0, "waiting jobs newest first, page after page");
  t.equal(disorder(jobs, 1000), 0, "and the two merged by time");

  const byId = new Map(jobs.map((j) => [j.job_id, j]));
  const expect = (pred: (j: Listed) => boolean) => new Set(jobs.filter(pred).map((j) => j.job_id));
  const filters: [Record<string, unknown>, (j: Listed) => boolean, number][] = [
    [{ state: "succeeded" }, (j) => j.state === "succeeded", 5000],
    [{ state: "dead" }, (j) => j.state === "dead", 20],
    [{ state: "cancelled" }, (j) => j.state === "cancelled", 20],
    [{ state: "scheduled" }, (j) => j.state === "scheduled", later],
    [{ queue: qb }, (j) => j.queue === qb, 2500 + 20 + later / 4],
    [{ tenant: "tb" }, (j) => j.tenant === "tb", 2500 + later / 4],
    [{ type: "echo" }, (j) => j.type === "echo", 2500 + later / 4],
    [{ queue: qa, tenant: "ta", state: "dead" }, (j) => j.queue === qa && j.tenant === "ta" && j.state === "dead", 20],
    [{ queue: qb, state: "succeeded", type: "echo" }, (j) => j.queue === qb && j.state === "succeeded" && j.type === "echo", 2500],
  ];
  for (const [query, pred, count] of filters) {
    const got = (await walk({ ...query, limit: 1000 })).jobs.map((j) => j.job_id);
    const want = expect(pred);
    t.equal(want.size, count, `${JSON.stringify(query)}: ${count} such jobs exist`);
    t.equal(got.length, want.size, `${JSON.stringify(query)}: as many listed`);
    t.ok(got.every((id) => want.has(id) && byId.has(id)), `${JSON.stringify(query)}: exactly those`);
  }
  const unknownQueue = await list({ queue: uniqueName("none") });
  t.same(unknownQueue, { jobs: [], next_cursor: null }, "an unknown queue: an empty page, no cursor");
  const bad = await requestJson(nc, "bosun.api.jobs.list", { cursor: "not-a-cursor" });
  t.equal(bad.errorCode, "400", "a cursor we never gave out: 400");
});
