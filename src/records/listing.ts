/**
 * Listing jobs, newest first, a page at a time, without an index write of
 * its own: a job is listed from where its state lives.
 *
 *   finished   BOSUN_RESULTS   (final records, in the order jobs ended)
 *   dead       BOSUN_DEAD      (dead letters, in the order jobs died)
 *   queued     BOSUN_JOBS      (+ the interim record of a running attempt)
 *   scheduled  BOSUN_SCHEDULED (delayed, or failed and waiting for the next attempt)
 *
 * Each source is read backwards from its last sequence (or the cursor) by
 * direct gets, a window at a time: one "first message from here" probe says
 * whether the window holds anything (so gaps cost one request each), then
 * the window's messages are fetched in one flush. Sources are merged by
 * store time, newest first: the time of the job's latest state change. The
 * cursor holds, per source, the sequence to continue below, so a page never
 * depends on how many jobs are kept: it costs its own messages plus what the
 * filters skip, and at most PROBE_BUDGET requests (then the page is short
 * and next_cursor goes on from where it stopped).
 */
import type { JetStreamManager } from "@nats-io/jetstream";
import type { Logger } from "pino";
import type { StoredMessage } from "../platform/stream-reads.js";
import {
  BosunError,
  laneOfSubject,
  parseJson,
  streams,
  type JobState,
  type JobStatus,
  type ListJobsReply,
  type ListJobsRequest,
} from "../contract/index.js";
import { readFirstFrom, readLast, readSeq } from "../platform/stream-reads.js";
import type { LaneRegistry } from "./lanes.js";
import { INTERIM_STREAM, interimSubject, readBack } from "./store.js";
import { finalStatus, scheduledStatus, statusOf } from "./status.js";

/** Direct gets one page may spend across its sources. */
export const PROBE_BUDGET = 2000;
const MAX_WINDOW = 512;

type SourceName = "r" | "d" | "j" | "s";

interface Item {
  seq: number;
  time: number;
  status: JobStatus;
}

interface SourceDef {
  stream: string;
  /** Statuses of a window's messages (null: not a job of this source, or a message that does not decode). */
  decode(msgs: StoredMessage[], jsm: JetStreamManager, log: Logger): Promise<(JobStatus | null)[]>;
}

const orNull = <T, R>(value: T | undefined, map: (v: T) => R): R | null => (value === undefined ? null : map(value));

const sourceDefs: Record<SourceName, SourceDef> = {
  r: { stream: streams.results, decode: async (msgs, _jsm, log) => msgs.map((m) => orNull(readBack.final(m, log), finalStatus)) },
  d: { stream: streams.dead, decode: async (msgs, _jsm, log) => msgs.map((m) => orNull(readBack.dead(m, log), (d) => d.record)) },
  s: { stream: streams.scheduled, decode: async (msgs, _jsm, log) => msgs.map((m) => orNull(readBack.scheduled(m, log), scheduledStatus)) },
  j: {
    stream: streams.jobs,
    // A queued message may be running: its interim record says so.
    decode: async (msgs, jsm, log) => {
      const queued = msgs.map((m) => readBack.queued(m, log));
      const interims = await Promise.all(
        queued.map((q) => (q ? readLast(jsm, INTERIM_STREAM, interimSubject(q.job.job_id)) : null)),
      );
      return queued.map((q, i) => {
        const interim = interims[i];
        return q ? statusOf({ queued: q, interim: interim && readBack.interim(interim, log) }) : null;
      });
    },
  },
};

const sourcesFor = (state: JobState | undefined): SourceName[] => {
  switch (state) {
    case undefined:
      return ["r", "j", "s"];
    case "succeeded":
    case "cancelled":
      return ["r"];
    case "dead":
      return ["d"];
    case "queued":
    case "running":
      return ["j"];
    case "scheduled":
    case "failed":
      return ["s"];
  }
};

type Cursor = Partial<Record<SourceName, number>>;

function decodeCursor(text: string | undefined): Cursor {
  if (text === undefined) return {};
  try {
    const value = parseJson(Buffer.from(text, "base64url").toString("utf8"));
    if (value && typeof value === "object" && !Array.isArray(value)) {
      const cursor: Cursor = {};
      for (const [k, v] of Object.entries(value)) {
        if (!(k in sourceDefs) || !Number.isSafeInteger(v) || (v as number) < 0) throw new Error("bad entry");
        cursor[k as SourceName] = v as number;
      }
      return cursor;
    }
  } catch {
    // fall through
  }
  throw new BosunError("validation_error", "cursor is not a next_cursor this API gave out");
}

const encodeCursor = (cursor: Cursor): string => Buffer.from(JSON.stringify(cursor)).toString("base64url");

interface Budget {
  left: number;
}

/** One source read backwards below `pos`, a window at a time. */
class Reader {
  readonly #buffer: Item[] = [];
  #window = 32;
  #done = false;

  private constructor(
    readonly name: SourceName,
    private readonly def: SourceDef,
    private readonly jsm: JetStreamManager,
    private readonly log: Logger,
    private readonly accept: (lane: string, status: JobStatus) => boolean,
    private pos: number,
    private readonly floor: number,
  ) {
    if (pos <= floor) this.#done = true;
  }

  static async open(name: SourceName, jsm: JetStreamManager, log: Logger, below: number | undefined, accept: Reader["accept"], limit: number): Promise<Reader> {
    const def = sourceDefs[name];
    const { state } = await jsm.streams.info(def.stream);
    const end = state.messages === 0 ? 0 : state.last_seq + 1;
    const reader = new Reader(name, def, jsm, log, accept, Math.min(below ?? end, end), state.messages === 0 ? end : state.first_seq);
    reader.#window = Math.min(MAX_WINDOW, Math.max(16, limit));
    return reader;
  }

  /** The newest item not taken yet; undefined when the source is exhausted or the budget spent. */
  async peek(budget: Budget): Promise<Item | undefined> {
    while (this.#buffer.length === 0 && !this.#done && budget.left > 0) await this.#probe(budget);
    return this.#buffer[0];
  }

  /** True when this source has nothing more below its position. */
  get exhausted(): boolean {
    return this.#done && this.#buffer.length === 0;
  }

  take(): Item {
    return this.#buffer.shift()!;
  }

  /** Where the next page continues: above an untaken item, or where probing stopped; 0 when done. */
  get cursor(): number {
    if (this.#buffer.length > 0) return this.#buffer[0]!.seq + 1;
    return this.#done ? 0 : this.pos;
  }

  async #probe(budget: Budget): Promise<void> {
    const low = Math.max(this.floor, this.pos - this.#window);
    budget.left--;
    let oldest = await readFirstFrom(this.jsm, this.def.stream, low);
    if (!oldest || oldest.seq >= this.pos) {
      // Nothing stored in the window: skip it and look further back, in ever larger steps.
      this.#advance(low);
      this.#window = Math.min(this.#window * 4, 1 << 24);
      return;
    }
    // Narrow down to the newest stretch below pos that holds messages (halving: a few requests).
    while (this.pos - oldest.seq > MAX_WINDOW && budget.left > 0) {
      const mid = Math.floor((oldest.seq + this.pos) / 2);
      budget.left--;
      const upper = await readFirstFrom(this.jsm, this.def.stream, mid);
      if (upper && upper.seq < this.pos) oldest = upper;
      else this.pos = mid;
    }
    const seqs: number[] = [];
    for (let seq = this.pos - 1; seq > oldest.seq && seqs.length < budget.left; seq--) seqs.push(seq);
    budget.left -= seqs.length;
    const complete = (seqs.at(-1) ?? this.pos) === oldest.seq + 1;
    if (!complete && seqs.length === 0) return; // budget spent: the next page goes on from here
    const fetched = await Promise.all(seqs.map((seq) => readSeq(this.jsm, this.def.stream, seq)));
    const msgs = [...fetched.filter((m): m is StoredMessage => m !== null), ...(complete ? [oldest] : [])];
    const statuses = await this.def.decode(msgs, this.jsm, this.log);
    statuses.forEach((status, i) => {
      const msg = msgs[i]!;
      if (status && this.accept(laneOfSubject(msg.subject), status)) this.#buffer.push({ seq: msg.seq, time: msg.time.getTime(), status });
    });
    this.#advance(complete ? oldest.seq : seqs.at(-1)!);
    this.#window = Math.min(MAX_WINDOW, this.#window * 2);
  }

  #advance(to: number): void {
    this.pos = to;
    if (this.pos <= this.floor) this.#done = true;
  }
}

export async function listJobs(jsm: JetStreamManager, log: Logger, lanes: LaneRegistry, filter: ListJobsRequest): Promise<ListJobsReply> {
  const cursor = decodeCursor(filter.cursor);
  let laneSet: Set<string> | undefined;
  if (filter.queue !== undefined || filter.tenant !== undefined) {
    laneSet = new Set(lanes.matching(filter.queue, filter.tenant).map((l) => l.code));
    if (laneSet.size === 0) return { jobs: [], next_cursor: null };
  }
  const accept = (lane: string, status: JobStatus) =>
    (!laneSet || laneSet.has(lane)) && (!filter.state || status.state === filter.state) && (!filter.type || status.type === filter.type);
  const names = sourcesFor(filter.state).filter((n) => cursor[n] !== 0 && (filter.cursor === undefined || cursor[n] !== undefined));
  const readers = await Promise.all(names.map((n) => Reader.open(n, jsm, log, cursor[n], accept, filter.limit)));
  const budget: Budget = { left: PROBE_BUDGET };
  const jobs: JobStatus[] = [];
  const seen = new Set<string>();
  while (jobs.length < filter.limit) {
    const heads = await Promise.all(readers.map((r) => r.peek(budget)));
    // A source that ran out of budget before showing its next job may hold a newer one: stop here.
    if (readers.some((r, i) => !heads[i] && !r.exhausted)) break;
    let pick = -1;
    heads.forEach((h, i) => {
      const best = pick >= 0 ? heads[pick]! : undefined;
      if (h && (!best || h.time > best.time || (h.time === best.time && h.seq > best.seq))) pick = i;
    });
    if (pick < 0) break;
    const { status } = readers[pick]!.take();
    // A job between two streams for a moment (its result stored, its message not yet acked) shows once.
    if (seen.has(status.job_id)) continue;
    seen.add(status.job_id);
    jobs.push(status);
  }
  const next: Cursor = {};
  for (const r of readers) next[r.name] = r.cursor;
  const more = readers.some((r) => !r.exhausted);
  return { jobs, next_cursor: more ? encodeCursor(next) : null };
}
