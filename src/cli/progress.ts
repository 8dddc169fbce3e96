/**
 * How `bosun submit --wait` and `bosun watch` show a job going: a progress
 * bar (cli-progress) on a terminal, one plain line per change otherwise (a
 * log, a pipe), or the events as JSON lines with --json.
 */
import cliProgress from "cli-progress";
import { ownerText, type JobEvent, type JobStatus } from "../contract/index.js";

export interface JobProgress {
  show(event: JobEvent): void;
  /** Leaves the bar (or nothing) behind, the cursor on a new line. */
  stop(): void;
}

const percent = (s: JobStatus): number => Math.round((s.progress ?? (s.state === "succeeded" ? 1 : 0)) * 100);

export const statusLine = (s: JobStatus): string =>
  [
    `${s.state}`,
    `attempts ${s.attempts}/${s.max_attempts}`,
    s.owner ? `on ${ownerText(s.owner)}` : "",
    s.progress !== null ? `progress ${Math.round(s.progress * 100)}%` : "",
    s.error ? `error ${s.error.code}: ${s.error.message}` : "",
  ]
    .filter(Boolean)
    .join("  ");

export function jobProgress(jobId: string, out: NodeJS.WriteStream, mode: { json?: boolean } = {}): JobProgress {
  if (mode.json) return { show: (event) => void out.write(`${JSON.stringify(event, null, 2)}\n`), stop: () => undefined };
  if (!out.isTTY) {
    return { show: (event) => void out.write(`${new Date().toISOString()}  ${event.type.padEnd(8)}  ${statusLine(event.data)}\n`), stop: () => undefined };
  }
  const bar = new cliProgress.SingleBar(
    {
      stream: out,
      format: `${jobId}  [{bar}] {percentage}%  {state}  attempt {attempt}{owner}`,
      barsize: 30,
      hideCursor: true,
      clearOnComplete: false,
    },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    show({ data }) {
      const payload = { state: data.state, attempt: `${data.attempts}/${data.max_attempts}`, owner: data.owner ? `  on ${ownerText(data.owner)}` : "" };
      if (!started) bar.start(100, percent(data), payload);
      else bar.update(percent(data), payload);
      started = true;
    },
    stop: () => started && bar.stop(),
  };
}
