/** Job records as tests read them, and what they tell about runs over time. */

/** A job's record as `GET /api/jobs/{id}` answers it: the fields tests read. */
export interface JobRecord {
  job_id: string;
  state: string;
  started_at: string | null;
  finished_at: string | null;
  attempts: number;
  owner: { worker_id?: string; server_id?: string } | null;
}

export const time = (iso: string | null): number => (iso ? Date.parse(iso) : Number.NaN);

/** Jobs running at once over time, from their records: [time, count] after each start or end (ends first at a tie). */
export function concurrency(jobs: JobRecord[]): [number, number][] {
  const events = jobs.flatMap((j) => [[time(j.started_at), 1] as const, [time(j.finished_at), -1] as const]).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let n = 0;
  return events.map(([at, d]) => [at, (n += d)]);
}
