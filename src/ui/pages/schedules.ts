/** Schedules (recurring jobs): pause, resume, trigger. Shown when the server has the schedules API. */
import { html } from "htm/preact";
import { optional } from "../api.js";
import { Action, ago, ErrorNote, JobLink, Unavailable, useLoad } from "../components.js";

interface Schedule {
  schedule_id: string;
  cron?: string;
  every_ms?: number;
  timezone?: string;
  paused: boolean;
  next_run_at?: string | null;
  last_run_at?: string | null;
  last_job_id?: string | null;
  job: { type: string; queue?: string; tenant?: string };
}

export function Schedules() {
  const list = useLoad(() => optional<{ schedules: Schedule[] } | Schedule[]>("GET", "/api/schedules"), [], 5000);
  const act = (id: string, verb: "pause" | "resume" | "trigger") => async () => {
    await optional("POST", `/api/schedules/${encodeURIComponent(id)}/${verb}`, {});
    list.reload();
  };
  const schedules = Array.isArray(list.data) ? list.data : (list.data?.schedules ?? []);
  return html`<section aria-labelledby="schedules-h">
    <h1 id="schedules-h">Schedules</h1>
    <${ErrorNote} error=${list.error} />
    ${list.data === undefined && !list.loading && !list.error
      ? html`<${Unavailable} what="Schedules" />`
      : list.data === undefined
        ? html`<p>Loading…</p>`
        : schedules.length === 0
          ? html`<p>No schedules.</p>`
          : html`<table>
              <thead>
                <tr><th scope="col">Schedule</th><th scope="col">When</th><th scope="col">Job</th><th scope="col">Next run</th><th scope="col">Last run</th><th scope="col">State</th><th scope="col"><span class="sr-only">Actions</span></th></tr>
              </thead>
              <tbody>
                ${schedules.map(
                  (s) => html`<tr key=${s.schedule_id}>
                    <th scope="row">${s.schedule_id}</th>
                    <td>${s.cron ? html`<code>${s.cron}</code> ${s.timezone ?? ""}` : `every ${s.every_ms} ms`}</td>
                    <td>${s.job.type} on ${s.job.queue ?? "default"}${s.job.tenant ? ` (${s.job.tenant})` : ""}</td>
                    <td>${s.next_run_at ? html`<time datetime=${s.next_run_at}>${new Date(s.next_run_at).toLocaleString()}</time>` : "—"}</td>
                    <td>${s.last_run_at ? html`${ago(s.last_run_at)}${s.last_job_id ? html` · <${JobLink} id=${s.last_job_id} />` : ""}` : "—"}</td>
                    <td>${s.paused ? "paused" : "active"}</td>
                    <td class="actions">
                      ${s.paused
                        ? html`<${Action} label=${`Resume ${s.schedule_id}`} run=${act(s.schedule_id, "resume")} />`
                        : html`<${Action} label=${`Pause ${s.schedule_id}`} run=${act(s.schedule_id, "pause")} />`}
                      <${Action} label=${`Run ${s.schedule_id} now`} done="Triggered" run=${act(s.schedule_id, "trigger")} />
                    </td>
                  </tr>`,
                )}
              </tbody>
            </table>`}
  </section>`;
}
