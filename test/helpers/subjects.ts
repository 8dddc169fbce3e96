/**
 * Job subjects and lane consumers as the built code names them (dist/, the
 * code under test), so tests that read streams directly agree with it.
 */
import { DEFAULT_TARGET, deadSubject, laneConsumer, laneScheduledFilter, resultSubject } from "../../src/contract/subjects.js";
import { laneCode } from "../../src/contract/lane-code.js";

export { resultSubject, deadSubject };

/** The lane of a queue's plain jobs: no tenant, priority 0, the default target. */
export const defaultLane = (queue: string, tenant: string | null = null): string => laneCode(queue, DEFAULT_TARGET, "n", tenant);
export const defaultLaneConsumer = (queue: string): string => laneConsumer(defaultLane(queue));
export const defaultLaneScheduled = (queue: string): string => laneScheduledFilter(defaultLane(queue));
