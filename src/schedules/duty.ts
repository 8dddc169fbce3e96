/**
 * The schedule duty every supervisor runs: it follows the schedules bucket,
 * keeps one timer per active schedule, and at each tick claims the tick's
 * job with a create-once write (the submit's idempotency key
 * `schedule:<id>:<tick ms>`). Every supervisor claims every tick; the key
 * lets exactly one job be made, so there is no leader to elect, lose or
 * fail over: a tick is made while at least one supervisor lives.
 */
import type { KV, KvWatchEntry } from "@nats-io/kv";
import type { QueuedIterator } from "@nats-io/nats-core";
import type { Logger } from "pino";
import { BosunError, parseWith, SubmitRequest, TICK_KEY_PREFIX, type ScheduleOrigin, type SubmitReply } from "../contract/index.js";
import { guard } from "../platform/guard.js";
import { followBucket } from "../records/bucket-watch.js";
import { tickAfter, tickAtOrBefore, type Cadence } from "./timing.js";
import type { ScheduleStore, StoredSchedule } from "./store.js";

/**
 * A tick found later than this is a misfire (no supervisor was up at its
 * time): `run_once` makes one job for all the ticks missed, `skip` none.
 * A live supervisor fires within milliseconds; this leaves room for a
 * loaded event loop.
 */
export const MISFIRE_GRACE_MS = 2000;
/** Timers longer than this are re-armed on the way (Node's timers top out at ~24.8 days). */
const MAX_TIMER_MS = 3_600_000;
/** A claim that failed (NATS unavailable) is tried again after this, while the tick is not a misfire. */
const CLAIM_RETRY_MS = 250;

/** The submit path a tick goes through (the supervisor's intake). */
export interface TickSubmitter {
  submit(req: SubmitRequest, ctx: { origin: ScheduleOrigin }): Promise<unknown>;
  /** This supervisor runs the type on the queue: only then does it claim ticks (the job keeps its schedule fields). */
  serves(type: string, queue: string): boolean;
}

export interface ScheduleSummary {
  /** Active (unpaused) schedules this supervisor keeps timers for. */
  active: number;
  next_run_at: string | null;
}

interface Armed {
  value: StoredSchedule;
  /** Ticks at or before this were handled here, whatever the stored state says yet. */
  handledMs: number;
  timer?: NodeJS.Timeout;
  dueMs?: number;
}

const cadenceOf = ({ spec, state }: StoredSchedule): Cadence => ({ spec, anchorMs: state.anchor_ms });

/** The submit (and claim) of one tick's job; the job id it made, or that another supervisor made. */
export async function submitTick(submitter: TickSubmitter, value: StoredSchedule, tickMs: number, key: string): Promise<string> {
  const { spec } = value;
  const req = parseWith(SubmitRequest, { ...spec.job, idempotency_key: key });
  try {
    const reply = (await submitter.submit(req, { origin: { schedule_id: spec.schedule_id, tick_at: new Date(tickMs).toISOString() } })) as SubmitReply;
    return reply.job_id;
  } catch (err) {
    // The schedule was replaced between two supervisors' claims of one tick: the first job stands.
    const first = err instanceof BosunError && err.code === "idempotency_conflict" ? (err.details as { job_id?: string } | undefined)?.job_id : undefined;
    if (first) return first;
    throw err;
  }
}

export class ScheduleDuty {
  readonly #armed = new Map<string, Armed>();
  #watch: QueuedIterator<KvWatchEntry> | undefined;
  #stopped = false;

  constructor(
    private readonly kv: KV,
    private readonly store: ScheduleStore,
    private readonly submitter: TickSubmitter,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    this.#watch = await followBucket(this.kv, this.log, "schedule", (entry) => this.#onEntry(entry));
  }

  stop(): void {
    this.#stopped = true;
    this.#watch?.stop();
    for (const a of this.#armed.values()) clearTimeout(a.timer);
    this.#armed.clear();
  }

  /** The schedules as last seen (listing answers from here: the watch is milliseconds behind a write). */
  known(): StoredSchedule[] {
    return [...this.#armed.values()].map((a) => a.value);
  }

  summary(): ScheduleSummary {
    let next: number | undefined;
    let active = 0;
    for (const a of this.#armed.values()) {
      if (a.value.spec.paused) continue;
      active++;
      if (a.dueMs !== undefined && (next === undefined || a.dueMs < next)) next = a.dueMs;
    }
    return { active, next_run_at: next === undefined ? null : new Date(next).toISOString() };
  }

  #onEntry(entry: KvWatchEntry): void {
    const id = entry.key;
    if (entry.operation !== "PUT") {
      clearTimeout(this.#armed.get(id)?.timer);
      this.#armed.delete(id);
      return;
    }
    const value = this.store.decode(entry.value, id, entry.revision);
    if (!value) return;
    const armed = this.#armed.get(id);
    // A replaced spec restarts its ticks from its new anchor; a state advance only moves them on.
    const replaced = !armed || armed.value.state.anchor_ms !== value.state.anchor_ms;
    const handledMs = replaced ? value.state.handled_until_ms : Math.max(armed.handledMs, value.state.handled_until_ms);
    if (armed && !replaced && armed.value.spec.paused === value.spec.paused && armed.handledMs === handledMs) {
      armed.value = value;
      return;
    }
    clearTimeout(armed?.timer);
    const next: Armed = { value, handledMs };
    this.#armed.set(id, next);
    this.#arm(id, next);
  }

  #arm(id: string, a: Armed): void {
    clearTimeout(a.timer);
    a.timer = a.dueMs = undefined;
    if (this.#stopped || a.value.spec.paused) return;
    const due = tickAfter(cadenceOf(a.value), a.handledMs);
    a.dueMs = due;
    const wait = due - Date.now();
    if (wait < -MISFIRE_GRACE_MS) {
      void this.#misfire(id, a, due);
      return;
    }
    a.timer = setTimeout(
      guard(this.log, "schedule tick", () => {
        if (Date.now() < due) this.#arm(id, a);
        else void this.#fire(id, a, due, due);
      }),
      Math.min(Math.max(0, wait), MAX_TIMER_MS),
    );
  }

  /** Claims tick `tickMs`'s job; on success every tick up to `handledMs` counts as handled. */
  async #fire(id: string, a: Armed, tickMs: number, handledMs: number): Promise<void> {
    const { spec } = a.value;
    if (!this.submitter.serves(spec.job.type, spec.job.queue)) {
      // Another supervisor (one that runs the type) claims it; this one only follows.
      this.#advanceLocally(id, a, handledMs);
      return;
    }
    try {
      // Read fresh: a pause, delete or replace that this supervisor's watch has not shown yet still counts.
      const now = await this.store.read(id);
      if (!now || now.value.spec.paused || now.value.state.anchor_ms !== a.value.state.anchor_ms) return;
      if (now.value.state.handled_until_ms < tickMs) {
        const jobId = await submitTick(this.submitter, now.value, tickMs, `${TICK_KEY_PREFIX}${id}:${tickMs}`);
        this.log.info({ schedule_id: id, job_id: jobId, tick_at: new Date(tickMs).toISOString(), late_ms: Date.now() - tickMs }, "schedule tick");
        await this.#record(id, a.value.state.anchor_ms, handledMs, tickMs, jobId);
      }
      this.#advanceLocally(id, a, handledMs);
    } catch (err) {
      this.log.warn({ err, schedule_id: id, tick_at: new Date(tickMs).toISOString() }, "could not claim a schedule tick; retrying");
      if (this.#armed.get(id) !== a || this.#stopped) return;
      // Retried until it would be a misfire; the misfire path then takes over.
      clearTimeout(a.timer);
      a.timer = setTimeout(guard(this.log, "schedule tick retry", () => void this.#fire(id, a, tickMs, handledMs)), CLAIM_RETRY_MS);
    }
  }

  /** Ticks passed with no supervisor up: one job for them all (run_once) or none (skip); then on from now. */
  async #misfire(id: string, a: Armed, firstMissedMs: number): Promise<void> {
    const latest = tickAtOrBefore(cadenceOf(a.value), Date.now());
    if (a.value.spec.misfire === "run_once") {
      // The claim is for the FIRST missed tick (every supervisor computes the same one from the stored state).
      await this.#fire(id, a, firstMissedMs, latest);
      return;
    }
    this.log.info({ schedule_id: id, first_missed: new Date(firstMissedMs).toISOString(), last_missed: new Date(latest).toISOString() }, "schedule ticks missed; skipped (misfire: skip)");
    try {
      await this.#record(id, a.value.state.anchor_ms, latest);
    } catch (err) {
      this.log.warn({ err, schedule_id: id }, "could not record skipped schedule ticks");
    }
    this.#advanceLocally(id, a, latest);
  }

  #advanceLocally(id: string, a: Armed, handledMs: number): void {
    if (this.#armed.get(id) !== a) return;
    a.handledMs = Math.max(a.handledMs, handledMs);
    this.#arm(id, a);
  }

  /** Stores the progress (compare-and-set): handled ticks only move forward, the last run only to a later tick. */
  async #record(id: string, anchorMs: number, handledMs: number, tickMs?: number, jobId?: string): Promise<void> {
    await this.store.update(id, (s) => {
      if (s.state.anchor_ms !== anchorMs) return null;
      const newerRun = tickMs !== undefined && jobId !== undefined && (s.state.last_run_at === null || Date.parse(s.state.last_run_at) < tickMs);
      if (s.state.handled_until_ms >= handledMs && !newerRun) return null;
      return {
        spec: s.spec,
        state: {
          ...s.state,
          handled_until_ms: Math.max(s.state.handled_until_ms, handledMs),
          ...(newerRun && { last_run_at: new Date(tickMs).toISOString(), last_job_id: jobId }),
          updated_at: new Date().toISOString(),
        },
      };
    });
  }
}
