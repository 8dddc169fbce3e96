/** Queues: counts per queue, its limits and their use, and pausing or resuming its submissions (the ops flags). */
import { html } from "htm/preact";
import type { QueueStatus } from "../../contract/schemas.js";
import { api } from "../api.js";
import { Action, ErrorNote, useLive, useLoad } from "../components.js";

/** "2 / 3 running · 4 / 10 per 1000 ms · max 5000 pending", or a dash when the queue has no limit. */
function limitsText({ limits, use }: QueueStatus): string {
  const parts = [
    limits.max_concurrency !== undefined ? `${use.running} / ${limits.max_concurrency} running` : undefined,
    limits.rate_limit ? `${use.window_starts} / ${limits.rate_limit.max} per ${limits.rate_limit.per_ms} ms` : undefined,
    limits.max_pending !== undefined ? `max ${limits.max_pending} pending` : undefined,
  ].filter((p) => p !== undefined);
  return parts.join(" · ") || "—";
}

export function Queues() {
  const live = useLive();
  const flags = useLoad(() => api.opsGet(), [], 5000);
  const paused = (queue: string) => flags.data?.queues[queue]?.submissions_paused === true;
  const setPaused = async (queue: string, value: boolean) => {
    await api.opsSet({ queues: { [queue]: { submissions_paused: value } } });
    flags.reload();
  };
  return html`<section aria-labelledby="queues-h">
    <h1 id="queues-h">Queues</h1>
    <${ErrorNote} error=${live.error ?? flags.error} />
    ${flags.data?.submissions_paused ? html`<p class="notice">All submissions are paused (see Ops flags).</p>` : null}
    <table>
      <thead>
        <tr>
          <th scope="col">Queue</th><th scope="col">Pending</th><th scope="col">Scheduled</th><th scope="col">Running</th><th scope="col">Dead</th>
          <th scope="col">Waiting pulls</th><th scope="col">Served by</th><th scope="col">Limits</th><th scope="col">Submissions</th>
        </tr>
      </thead>
      <tbody>
        ${live.queues.map(
          (q) => html`<tr key=${q.queue} data-queue=${q.queue}>
            <th scope="row"><a href=${`#/jobs?queue=${encodeURIComponent(q.queue)}`}>${q.queue}</a></th>
            <td>${q.pending}</td><td>${q.scheduled}</td><td>${q.running}</td>
            <td>${q.dead > 0 ? html`<a href=${`#/dead?queue=${encodeURIComponent(q.queue)}`}>${q.dead}</a>` : 0}</td>
            <td>${q.consumers.waiting_pulls}</td>
            <td>${q.consumers.workers.join(", ") || "—"}</td>
            <td>${limitsText(q)}</td>
            <td>
              ${paused(q.queue) ? html`<span class="state state-paused">paused</span> ` : html`<span class="state state-open">open</span> `}
              ${paused(q.queue)
                ? html`<${Action} label=${`Resume ${q.queue}`} done=${`Submissions to ${q.queue} resumed`} run=${() => setPaused(q.queue, false)} />`
                : html`<${Action} label=${`Pause ${q.queue}`} done=${`Submissions to ${q.queue} paused`} run=${() => setPaused(q.queue, true)} />`}
            </td>
          </tr>`,
        )}
      </tbody>
    </table>
    ${live.queues.length === 0 ? html`<p>No queue has a consumer yet (no supervisor has started on one).</p>` : null}
  </section>`;
}
