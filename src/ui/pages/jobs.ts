/** Jobs: filters (state, queue, tenant, type), newest first, paged by the server's cursor. */
import { html } from "htm/preact";
import { useState } from "preact/hooks";
import type { JobStatus } from "../../contract/schemas.js";
import { api, supports } from "../api.js";
import { ago, ErrorNote, JobLink, StateBadge, useLoad } from "../components.js";
import { navigate } from "../router.js";

export const STATES = ["scheduled", "queued", "running", "succeeded", "failed", "cancelled", "dead"] as const;
const FILTERS = ["state", "queue", "tenant", "type"] as const;

interface Page {
  jobs: JobStatus[];
  next_cursor?: string | null;
}

/** The filters this server's list takes (a server without `type` gets it applied to the page here). */
export function listRequest(query: URLSearchParams, cursor: string | undefined): { request: Record<string, unknown>; localType?: string } {
  const request: Record<string, unknown> = { limit: Number(query.get("limit") ?? 50) };
  let localType: string | undefined;
  for (const name of FILTERS) {
    const value = query.get(name);
    if (!value) continue;
    if (supports("jobs_list", name)) request[name] = value;
    else if (name === "type") localType = value;
  }
  if (cursor) request.cursor = cursor;
  return { request, localType };
}

export async function loadPage(query: URLSearchParams, cursor: string | undefined): Promise<Page> {
  const { request, localType } = listRequest(query, cursor);
  const page = (await api.listPage(request as never)) as Page;
  return localType ? { ...page, jobs: page.jobs.filter((j) => j.type === localType) } : page;
}

export function JobTable({ jobs, extra }: { jobs: JobStatus[]; extra?: (job: JobStatus) => unknown }) {
  return html`<table class="jobs">
    <thead>
      <tr>
        <th scope="col">Job</th><th scope="col">Type</th><th scope="col">Queue</th><th scope="col">Tenant</th><th scope="col">State</th>
        <th scope="col">Attempts</th><th scope="col">Progress</th><th scope="col">Created</th>${extra ? html`<th scope="col"><span class="sr-only">Actions</span></th>` : null}
      </tr>
    </thead>
    <tbody>
      ${jobs.map(
        (j) => html`<tr key=${j.job_id} data-job=${j.job_id}>
          <th scope="row"><${JobLink} id=${j.job_id} /></th>
          <td>${j.type}</td><td>${j.queue}</td><td>${j.tenant ?? "—"}</td>
          <td><${StateBadge} state=${j.state} /></td>
          <td>${j.attempts}/${j.max_attempts}</td>
          <td>${j.progress === null ? "" : `${Math.round(j.progress * 100)} %`}</td>
          <td><time datetime=${j.created_at} title=${j.created_at}>${ago(j.created_at)}</time></td>
          ${extra ? html`<td>${extra(j)}</td>` : null}
        </tr>`,
      )}
    </tbody>
  </table>`;
}

export function Jobs({ query }: { query: URLSearchParams }) {
  // Cursors of the pages before this one, so "Newer" can go back.
  const [cursors, setCursors] = useState<(string | undefined)[]>([undefined]);
  const cursor = cursors.at(-1);
  const page = useLoad(() => loadPage(query, cursor), [query.toString(), cursor], 5000);
  const apply = (e: Event) => {
    e.preventDefault();
    const form = new FormData(e.currentTarget as HTMLFormElement);
    const next = new URLSearchParams();
    for (const [k, v] of form) if (typeof v === "string" && v) next.set(k, v);
    setCursors([undefined]);
    navigate(`/jobs?${next}`);
  };
  const nextCursor = page.data?.next_cursor ?? undefined;
  return html`<section aria-labelledby="jobs-h">
    <h1 id="jobs-h">Jobs</h1>
    <form class="filters" onSubmit=${apply} aria-label="Filter jobs">
      <label>State
        <select name="state" value=${query.get("state") ?? ""}>
          <option value="">any</option>
          ${STATES.map((s) => html`<option value=${s}>${s}</option>`)}
        </select>
      </label>
      <label>Queue <input name="queue" value=${query.get("queue") ?? ""} size="12" /></label>
      <label>Tenant <input name="tenant" value=${query.get("tenant") ?? ""} size="12" /></label>
      <label>Type <input name="type" value=${query.get("type") ?? ""} size="14" /></label>
      <label>Per page
        <select name="limit" value=${query.get("limit") ?? "50"}>${["20", "50", "100", "500"].map((n) => html`<option value=${n}>${n}</option>`)}</select>
      </label>
      <button type="submit">Apply</button>
    </form>
    <${ErrorNote} error=${page.error} />
    ${page.data ? html`<${JobTable} jobs=${page.data.jobs} />` : html`<p>Loading…</p>`}
    ${page.data && page.data.jobs.length === 0 ? html`<p>No jobs match.</p>` : null}
    <nav class="pager" aria-label="Pages">
      <button type="button" disabled=${cursors.length <= 1} onClick=${() => setCursors(cursors.slice(0, -1))}>Newer</button>
      <button type="button" disabled=${!nextCursor} onClick=${() => setCursors([...cursors, nextCursor])}>Older</button>
      ${supports("jobs_list", "cursor") ? null : html`<span class="hint">This server lists the newest jobs only (no paging cursor yet).</span>`}
    </nav>
  </section>`;
}
