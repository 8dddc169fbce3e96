/** Dead jobs: retry one, or every one shown. */
import { html } from "htm/preact";
import { api } from "../api.js";
import { Action, ErrorNote, useLoad } from "../components.js";
import { JobTable, loadPage } from "./jobs.js";

export function Dead({ query }: { query: URLSearchParams }) {
  const filter = new URLSearchParams(query);
  filter.set("state", "dead");
  const page = useLoad(() => loadPage(filter, undefined), [filter.toString()], 5000);
  const jobs = page.data?.jobs ?? [];
  const retryAll = async () => {
    const outcomes = await Promise.allSettled(jobs.map((j) => api.retry(j.job_id)));
    page.reload();
    const failed = outcomes.filter((o) => o.status === "rejected").length;
    if (failed > 0) throw new Error(`${failed} of ${jobs.length} could not be retried`);
  };
  return html`<section aria-labelledby="dead-h">
    <h1 id="dead-h">Dead jobs</h1>
    <p>Jobs whose attempts ran out. A retry queues the job again with fresh attempts.${query.get("queue") ? ` Queue ${query.get("queue")}.` : ""}</p>
    <${ErrorNote} error=${page.error} />
    ${jobs.length > 0 ? html`<p><${Action} label=${`Retry all ${jobs.length} shown`} done=${`${jobs.length} jobs queued again`} run=${retryAll} /></p>` : null}
    ${page.data
      ? jobs.length > 0
        ? html`<${JobTable}
            jobs=${jobs}
            extra=${(j: { job_id: string }) => html`<${Action} label="Retry" name=${`Retry job ${j.job_id}`} done=${`Job ${j.job_id} queued again`} run=${async () => (await api.retry(j.job_id), page.reload())} />`}
          />`
        : html`<p>No dead jobs.</p>`
      : html`<p>Loading…</p>`}
  </section>`;
}
