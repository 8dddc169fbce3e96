/**
 * The pool's line: jobs waiting, in order, for an execution actor to come
 * free or to be spawned for them. A short job (one with a wait limit) that
 * is still in line when its limit is up leaves it unrun.
 */
import { waitedTooLong, type Execution, type RunSpec } from "./execution.js";

export interface InLine {
  execution: Execution;
  run: RunSpec;
  timer?: NodeJS.Timeout;
  /** Epoch ms its wait limit ends (a short job); none for a job that waits for a free actor however long. */
  deadline?: number;
  /** How many runs the actor it queues on may hold, with it (a short job). */
  runsPerActor: number;
}

export class WaitLine {
  readonly #line: InLine[] = [];

  get length(): number {
    return this.#line.length;
  }

  /** Joins at the end; with maxWaitMs, gives up (NotStartedError) once it has waited that long. */
  join(execution: Execution, run: RunSpec, maxWaitMs: number | undefined, runsPerActor: number): void {
    const waiting: InLine = { execution, run, runsPerActor };
    if (maxWaitMs !== undefined) {
      waiting.deadline = Date.now() + maxWaitMs;
      waiting.timer = setTimeout(() => {
        const place = this.#line.indexOf(waiting);
        if (place < 0) return;
        this.#line.splice(place, 1);
        execution.notStarted(waitedTooLong(maxWaitMs));
      }, maxWaitMs);
    }
    this.#line.push(waiting);
  }

  /** The first in line, left in it. */
  peek(): InLine | undefined {
    return this.#line[0];
  }

  /** The first in line, taken out of it (its wait limit no longer applies). */
  next(): InLine | undefined {
    const waiting = this.#line.shift();
    clearTimeout(waiting?.timer);
    return waiting;
  }

  /** Everyone in line leaves it unrun, with this error (a drain). */
  abandon(err: Error): void {
    for (const waiting of this.#line.splice(0)) {
      clearTimeout(waiting.timer);
      waiting.execution.notStarted(err);
    }
  }
}
