/** Overview: jobs/s over time, queue depths, live supervisors. */
import { html } from "htm/preact";
import { useEffect, useState } from "preact/hooks";
import { ErrorNote, useLive } from "../components.js";
import type { RateChart as Chart } from "./chart.js";

/** The chart (uPlot) loads after the first paint: the supervisors and counts need none of it. */
function useChart(): typeof Chart | undefined {
  const [chart, setChart] = useState<typeof Chart | undefined>(undefined);
  useEffect(() => void import("./chart.js").then((m) => setChart(() => m.RateChart)), []);
  return chart;
}

const OVERVIEW_READY = "bosun:overview-ready";

export function Overview() {
  const live = useLive();
  const RateChart = useChart();
  const workers = live.liveWorkers();
  const busy = workers.reduce((n, w) => n + w.busy_count, 0);
  const slots = workers.reduce((n, w) => n + w.max_workers, 0);
  useEffect(() => {
    // When the overview first shows supervisors: the dashboard's load time, as the browser tests measure it.
    if (workers.length > 0 && performance.getEntriesByName(OVERVIEW_READY).length === 0) performance.mark(OVERVIEW_READY);
  }, [workers.length]);
  return html`<section aria-labelledby="overview-h">
    <h1 id="overview-h">Overview</h1>
    <${ErrorNote} error=${live.error} />
    <div class="cards">
      <div class="card"><span class="big" data-testid="supervisor-count">${workers.length}</span> live supervisors</div>
      <div class="card"><span class="big">${busy}</span> of ${slots} process slots busy</div>
      <div class="card"><span class="big">${live.queues.reduce((n, q) => n + q.pending, 0)}</span> jobs waiting</div>
      <div class="card"><span class="big">${live.queues.reduce((n, q) => n + q.dead, 0)}</span> dead jobs</div>
    </div>
    <h2>Throughput</h2>
    ${RateChart ? html`<${RateChart} samples=${live.samples} />` : html`<p class="chart">Loading the chart…</p>`}
    <div class="columns">
      <section aria-labelledby="depths-h">
        <h2 id="depths-h">Queue depths</h2>
        <table>
          <thead><tr><th scope="col">Queue</th><th scope="col">Pending</th><th scope="col">Scheduled</th><th scope="col">Running</th><th scope="col">Dead</th></tr></thead>
          <tbody>
            ${live.queues.map(
              (q) => html`<tr key=${q.queue}><th scope="row"><a href=${`#/jobs?queue=${encodeURIComponent(q.queue)}`}>${q.queue}</a></th><td>${q.pending}</td><td>${q.scheduled}</td><td>${q.running}</td><td>${q.dead}</td></tr>`,
            )}
          </tbody>
        </table>
      </section>
      <section aria-labelledby="supervisors-h">
        <h2 id="supervisors-h">Live supervisors</h2>
        <ul class="supervisors" data-ready=${live.workers.size > 0 ? "" : undefined}>
          ${workers.map(
            (w) => html`<li key=${w.worker_id} data-worker=${w.worker_id}>
              <a href="#/workers"><strong>${w.worker_id}</strong></a> on ${w.hostname}:
              ${w.busy_count} busy, ${w.idle_count} idle of ${w.min_workers}–${w.max_workers}; queues ${w.queues.join(", ")}
            </li>`,
          )}
        </ul>
        ${workers.length === 0 ? html`<p>No supervisor is sending heartbeats.</p>` : null}
      </section>
    </div>
  </section>`;
}
