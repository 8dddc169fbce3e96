/**
 * The schedules API (bosun.api.schedules.*): create or replace, list, get,
 * delete, pause, resume, trigger. Each change is one write to the bucket;
 * every supervisor's duty sees it through its watch within milliseconds.
 */
import { nuid } from "@nats-io/nats-core";
import type { Logger } from "pino";
import { TICK_KEY_PREFIX, type DeleteScheduleReply, type ListSchedulesReply, type Schedule, type ScheduleSpec, type TriggerReply } from "../contract/index.js";
import { submitTick, type ScheduleDuty, type TickSubmitter } from "./duty.js";
import { viewOf, type ScheduleStore } from "./store.js";

export class ScheduleService {
  constructor(
    private readonly store: ScheduleStore,
    private readonly duty: ScheduleDuty,
    private readonly submitter: TickSubmitter,
    private readonly log: Logger,
  ) {}

  async create(spec: ScheduleSpec): Promise<Schedule> {
    const stored = await this.store.put(spec);
    this.log.info({ schedule_id: spec.schedule_id, cron: spec.cron, every_ms: spec.every_ms, paused: spec.paused }, "schedule written");
    return viewOf(stored);
  }

  list(): ListSchedulesReply {
    const schedules = this.duty.known().map(viewOf);
    return { schedules: schedules.sort((a, b) => (a.schedule_id < b.schedule_id ? -1 : 1)) };
  }

  async get(id: string): Promise<Schedule> {
    return viewOf((await this.store.require(id)).value);
  }

  async delete(id: string): Promise<DeleteScheduleReply> {
    await this.store.delete(id);
    this.log.info({ schedule_id: id }, "schedule deleted");
    return { schedule_id: id, deleted: true };
  }

  /** Paused: no ticks. Resumed: ticks from now on (the paused ones are not misfires). */
  async setPaused(id: string, paused: boolean): Promise<Schedule> {
    await this.store.require(id);
    const now = Date.now();
    const updated = await this.store.update(id, (s) =>
      s.spec.paused === paused
        ? null
        : {
            spec: { ...s.spec, paused },
            state: { ...s.state, handled_until_ms: paused ? s.state.handled_until_ms : Math.max(s.state.handled_until_ms, now), updated_at: new Date(now).toISOString() },
          },
    );
    if (!updated) return this.get(id);
    this.log.info({ schedule_id: id, paused }, paused ? "schedule paused" : "schedule resumed");
    return viewOf(updated);
  }

  /** One job now, paused or not; the regular ticks go on as they were. */
  async trigger(id: string): Promise<TriggerReply> {
    const { value } = await this.store.require(id);
    const now = Date.now();
    const jobId = await submitTick(this.submitter, value, now, `${TICK_KEY_PREFIX}${id}:trigger:${nuid.next()}`);
    await this.store.update(id, (s) =>
      s.state.last_run_at !== null && Date.parse(s.state.last_run_at) >= now
        ? null
        : { spec: s.spec, state: { ...s.state, last_run_at: new Date(now).toISOString(), last_job_id: jobId, updated_at: new Date().toISOString() } },
    );
    this.log.info({ schedule_id: id, job_id: jobId }, "schedule triggered");
    return { schedule_id: id, job_id: jobId };
  }
}
