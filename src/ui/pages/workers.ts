/** Workers: each supervisor's processes (state, memory, executions, current job), live from the heartbeat stream; recycle. */
import { html } from "htm/preact";
import { api } from "../api.js";
import { Action, ago, ErrorNote, JobLink, useLive } from "../components.js";

export function Workers() {
  const live = useLive();
  const workers = live.liveWorkers();
  return html`<section aria-labelledby="workers-h">
    <h1 id="workers-h">Workers</h1>
    <${ErrorNote} error=${live.error} />
    ${workers.length === 0 ? html`<p>No supervisor is sending heartbeats.</p>` : null}
    ${workers.map(
      (w) => html`<section class="worker" key=${w.worker_id} aria-labelledby=${`w-${w.worker_id}`}>
        <h2 id=${`w-${w.worker_id}`}>${w.worker_id}</h2>
        <p class="meta">
          ${w.hostname} · started ${ago(w.started_at)} · pool ${w.pool_size} (${w.min_workers}–${w.max_workers}) ·
          ${w.busy_count} busy, ${w.idle_count} idle · queues ${w.queues.join(", ")} · supervision ${w.supervision.decision}
          ${w.supervision.crashes_in_window > 0 ? ` (${w.supervision.crashes_in_window} crashes lately)` : ""}
        </p>
        <table>
          <caption class="sr-only">Execution processes of ${w.worker_id}</caption>
          <thead>
            <tr><th scope="col">PID</th><th scope="col">State</th><th scope="col">Memory</th><th scope="col">Uptime</th><th scope="col">Executions</th><th scope="col">Current job</th><th scope="col"><span class="sr-only">Actions</span></th></tr>
          </thead>
          <tbody>
            ${w.processes.map(
              (p) => html`<tr key=${p.pid}>
                <th scope="row">${p.pid}</th>
                <td><span class=${`state state-${p.state}`}>${p.state}</span></td>
                <td>${p.memory_mb} MB</td>
                <td>${Math.round(p.uptime_seconds)} s</td>
                <td>${p.executions_completed}</td>
                <td>${p.execution ? html`${p.execution.job_id ? html`<${JobLink} id=${p.execution.job_id} />` : p.execution.execution_id} for ${p.execution.elapsed_seconds} s` : "—"}</td>
                <td>
                  <${Action}
                    label=${`Recycle ${p.pid}`}
                    done=${`Process ${p.pid} will be recycled${p.state === "busy" ? " after its job" : ""}`}
                    run=${() => api.workersRecycle({ worker_id: w.worker_id, pid: p.pid })}
                  />
                </td>
              </tr>`,
            )}
          </tbody>
        </table>
      </section>`,
    )}
  </section>`;
}
