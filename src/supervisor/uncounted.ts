/**
 * Runs whose outcome could not be stored in time (this supervisor was cut
 * off from the cluster, or outlived its lease in an election): the job runs
 * again elsewhere, and that run's delivery count may not know of this one
 * (a consumer leader stranded with this supervisor delivered it). So each
 * is kept here and, once writes get through again, counted into the job's
 * result: `attempts` is raised past this run's attempt unless the result
 * already counts beyond it. Kept for RETRY_FOR_MS at most (the job may not
 * have finished yet anywhere); lost with the process.
 */
import type { Logger } from "pino";
import { guard } from "../platform/guard.js";
import type { JobStore } from "../records/index.js";

const RETRY_MS = 2000;
const RETRY_FOR_MS = 10 * 60_000;
const MAX_KEPT = 10_000;

interface Uncounted {
  jobId: string;
  /** The job's generation (a dead-job retry starts another): a later one is not this run's to count. */
  generation: number;
  attempt: number;
  /** Names the run (see runIdOf in settle.ts): a result it did write after all counts it. */
  runId: string;
  since: number;
}

export class UncountedRuns {
  readonly #runs = new Set<Uncounted>();
  #timer: NodeJS.Timeout | undefined;
  #flushing = false;

  constructor(
    private readonly store: JobStore,
    private readonly log: Logger,
  ) {}

  add(jobId: string, generation: number, attempt: number, runId: string): void {
    if (this.#runs.size >= MAX_KEPT) return;
    this.#runs.add({ jobId, generation, attempt, runId, since: Date.now() });
    this.#schedule();
  }

  /** Counts what it can now (called when outcomes can be stored again, and on a timer while any are kept). */
  async flush(): Promise<void> {
    if (this.#flushing) return;
    this.#flushing = true;
    try {
      for (const run of this.#runs) {
        const counted = await this.store.countUnreportedRun(run.jobId, run.generation, run.attempt, run.runId).catch(() => false);
        if (counted) this.log.info({ job_id: run.jobId, attempt: run.attempt }, "a run that could not report is now counted in the job's attempts");
        if (counted || Date.now() - run.since > RETRY_FOR_MS) this.#runs.delete(run);
      }
    } finally {
      this.#flushing = false;
      this.#schedule();
    }
  }

  stop(): void {
    clearTimeout(this.#timer);
    this.#runs.clear();
  }

  #schedule(): void {
    if (this.#timer || this.#runs.size === 0) return;
    this.#timer = setTimeout(
      guard(this.log, "uncounted runs", () => {
        this.#timer = undefined;
        void this.flush();
      }),
      RETRY_MS,
    );
    this.#timer.unref();
  }
}
