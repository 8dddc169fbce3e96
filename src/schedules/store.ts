/**
 * Schedules in their KV bucket (bosun_schedules): one entry per schedule
 * holding its spec and its tick state. Every change of the state is a
 * compare-and-set on the entry's revision, so supervisors advancing the
 * same schedule at once never undo each other's progress.
 */
import type { JetStreamManager } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import type { Logger } from "pino";
import { z } from "zod";
import { BosunError, buckets, ScheduleSpec, type Schedule } from "../contract/index.js";
import { readInbound } from "../platform/guard.js";
import { readKvValue } from "../platform/stream-reads.js";
import { lostRace } from "../platform/nats-errors.js";
import { tickAfter } from "./timing.js";

const ms = z.number().int().nonnegative();
const isoTime = z.iso.datetime({ offset: true });

export const TickState = z.object({
  /** every_ms ticks count from here (the time the spec was written). */
  anchor_ms: ms,
  /** Every tick at or before this is handled (made its job, or was skipped or paused over). */
  handled_until_ms: ms,
  last_run_at: isoTime.nullable(),
  last_job_id: z.string().max(64).nullable(),
  created_at: isoTime,
  updated_at: isoTime,
});
export type TickState = z.infer<typeof TickState>;

export const StoredSchedule = z.object({ spec: ScheduleSpec, state: TickState });
export type StoredSchedule = z.infer<typeof StoredSchedule>;

export interface Entry {
  value: StoredSchedule;
  revision: number;
}

const CAS_TRIES = 10;

/** The schedule as the API shows it. */
export function viewOf({ spec, state }: StoredSchedule): Schedule {
  return {
    schedule_id: spec.schedule_id,
    ...(spec.cron !== undefined && { cron: spec.cron }),
    ...(spec.every_ms !== undefined && { every_ms: spec.every_ms }),
    timezone: spec.timezone,
    job: spec.job,
    paused: spec.paused,
    misfire: spec.misfire,
    next_run_at: spec.paused ? null : new Date(tickAfter({ spec, anchorMs: state.anchor_ms }, state.handled_until_ms)).toISOString(),
    last_run_at: state.last_run_at,
    last_job_id: state.last_job_id,
    created_at: state.created_at,
    updated_at: state.updated_at,
  };
}

export class ScheduleStore {
  constructor(
    private readonly kv: KV,
    private readonly jsm: JetStreamManager,
    private readonly log: Logger,
  ) {}

  /** Decodes a stored value; one not written by Bosun is dropped with a log line. */
  decode(data: Uint8Array, key: string, revision: number): StoredSchedule | undefined {
    return readInbound(StoredSchedule, data, { log: this.log, source: "schedules bucket", subject: `$KV.${buckets.schedules}.${key}`, seq: revision });
  }

  /** The schedule as stored now (a miss confirmed at the stream leader), or null. */
  async read(id: string): Promise<Entry | null> {
    const msg = await readKvValue(this.jsm, buckets.schedules, id);
    if (!msg) return null;
    const value = this.decode(msg.data, id, msg.seq);
    return value ? { value, revision: msg.seq } : null;
  }

  async require(id: string): Promise<Entry> {
    const entry = await this.read(id);
    if (!entry) throw new BosunError("not_found", `no schedule ${id}`, { schedule_id: id });
    return entry;
  }

  /** Creates or replaces: ticks count from now; the last run is kept. */
  async put(spec: ScheduleSpec): Promise<StoredSchedule> {
    const existing = await this.read(spec.schedule_id);
    const now = new Date();
    const value: StoredSchedule = {
      spec,
      state: {
        anchor_ms: now.getTime(),
        handled_until_ms: now.getTime(),
        last_run_at: existing?.value.state.last_run_at ?? null,
        last_job_id: existing?.value.state.last_job_id ?? null,
        created_at: existing?.value.state.created_at ?? now.toISOString(),
        updated_at: now.toISOString(),
      },
    };
    await this.kv.put(spec.schedule_id, JSON.stringify(value));
    return value;
  }

  /**
   * Applies `change` to the stored schedule with compare-and-set, retrying
   * on a concurrent write. `change` returns null when there is nothing to
   * do (another supervisor got there first). Null when the schedule is gone.
   */
  async update(id: string, change: (s: StoredSchedule) => StoredSchedule | null): Promise<StoredSchedule | null> {
    for (let i = 0; i < CAS_TRIES; i++) {
      const entry = await this.read(id);
      if (!entry) return null;
      const next = change(entry.value);
      if (!next) return entry.value;
      try {
        await this.kv.update(id, JSON.stringify(next), entry.revision);
        return next;
      } catch (err) {
        if (!lostRace(err)) throw err;
      }
    }
    throw new BosunError("conflict", `schedule ${id} is changing too often to update; try again`);
  }

  async delete(id: string): Promise<void> {
    await this.require(id);
    await this.kv.purge(id);
  }
}
