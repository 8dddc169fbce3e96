/** One job: status, attempts, owner, live progress, result or error, files, events; cancel and retry. */
import { html } from "htm/preact";
import { useEffect, useState } from "preact/hooks";
import { NotFoundError } from "../../client/errors.js";
import { ownerText } from "../../contract/owner.js";
import type { JobEvent, JobResult, JobStatus } from "../../contract/schemas.js";
import { api, download, optional } from "../api.js";
import { Action, ago, bytes, duration, ErrorNote, Json, StateBadge, Unavailable, useLoad } from "../components.js";

const FINAL = new Set(["succeeded", "cancelled", "dead"]);

interface FileInfo {
  name: string;
  size: number;
  content_type: string;
  created_at: string;
}

/** Re-reads the status this often while the job runs, besides its event stream. */
const STATUS_POLL_MS = 2000;

/**
 * The job's status, kept current by its event stream (re-opened after a
 * retry) and a slow re-read: a job that ends before the stream is listening
 * would otherwise keep its last state on the page.
 */
function useJob(jobId: string) {
  const [status, setStatus] = useState<JobStatus | undefined>();
  const [events, setEvents] = useState<{ at: string; event: JobEvent }[]>([]);
  const [error, setError] = useState<unknown>();
  const [round, setRound] = useState(0);
  useEffect(() => {
    const stop = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const reread = async () => {
      try {
        const now = await api.get(jobId);
        if (stop.signal.aborted) return;
        setStatus(now);
        setError(undefined);
        if (FINAL.has(now.state)) stop.abort();
        else timer = setTimeout(() => void reread(), STATUS_POLL_MS);
      } catch (err) {
        if (stop.signal.aborted) return;
        setError(err);
        // A job that is not there has no events to follow either.
        if (err instanceof NotFoundError) stop.abort();
      }
    };
    void (async () => {
      await reread();
      if (stop.signal.aborted) return;
      try {
        for await (const event of api.events(jobId, { signal: stop.signal })) {
          setStatus(event.data);
          setEvents((list) => [...list, { at: new Date().toISOString(), event }]);
        }
      } catch (err) {
        if (!stop.signal.aborted) setError(err);
      }
    })();
    return () => {
      stop.abort();
      clearTimeout(timer);
    };
  }, [jobId, round]);
  return { status, events, error, again: () => setRound((n) => n + 1) };
}

// One message for every 404, as the API gives one: another tenant's job must read like an id never given out.
const NotFound = () =>
  html`<p class="error" role="alert" data-testid="job-not-found">
    No such job (not_found): the id is unknown, the job's record has expired, or this key may not see it. <a href="#/jobs">Back to the jobs</a>
  </p>`;

export function Job({ jobId }: { jobId: string }) {
  const { status, events, error, again } = useJob(jobId);
  const finished = status !== undefined && FINAL.has(status.state);
  const result = useLoad<JobResult | undefined>(() => (finished ? api.result(jobId) : Promise.resolve(undefined)), [jobId, finished, status?.attempts]);
  const files = useLoad(() => optional<{ files: FileInfo[] }>("GET", `/api/jobs/${encodeURIComponent(jobId)}/files`), [jobId, finished]);
  if (!status)
    return html`<section aria-labelledby="job-h">
      <h1 id="job-h">Job <code>${jobId}</code></h1>
      ${error instanceof NotFoundError ? html`<${NotFound} />` : error ? html`<${ErrorNote} error=${error} />` : html`<p>Loading…</p>`}
    </section>`;
  const progress = status.progress ?? (finished ? 1 : 0);
  return html`<section aria-labelledby="job-h">
    <h1 id="job-h">Job <code>${jobId}</code></h1>
    <${ErrorNote} error=${error} />
    <div class="actions">
      ${!finished ? html`<${Action} label="Cancel job" kind="danger" done="Cancel requested" run=${() => api.cancel(jobId)} />` : null}
      ${status.state === "dead" ? html`<${Action} label="Retry job" done="Job queued again" run=${async () => (await api.retry(jobId), again())} />` : null}
    </div>
    <dl class="facts">
      <dt>State</dt><dd data-testid="job-state"><${StateBadge} state=${status.state} /></dd>
      <dt>Type</dt><dd>${status.type}</dd>
      <dt>Queue</dt><dd>${status.queue}</dd>
      <dt>Tenant</dt><dd>${status.tenant ?? "—"}</dd>
      <dt>Attempts</dt><dd>${status.attempts} of ${status.max_attempts}</dd>
      <dt>Owner</dt><dd>${status.owner ? ownerText(status.owner) : "—"}</dd>
      <dt>Created</dt><dd><time datetime=${status.created_at}>${ago(status.created_at)}</time></dd>
      <dt>Started</dt><dd>${status.started_at ? html`<time datetime=${status.started_at}>${ago(status.started_at)}</time>` : "—"}</dd>
      <dt>Finished</dt><dd>${status.finished_at ? html`<time datetime=${status.finished_at}>${ago(status.finished_at)}</time>` : "—"}</dd>
      <dt>Correlation id</dt><dd><code>${status.correlation_id}</code></dd>
    </dl>
    <p>
      <label for="job-progress">Progress</label>
      <progress id="job-progress" max="1" value=${progress}>${Math.round(progress * 100)} %</progress>
      <span data-testid="job-progress">${Math.round(progress * 100)} %</span>
    </p>
    ${status.error ? html`<h2>Error</h2><p class="error"><code>${status.error.code}</code>: ${status.error.message}</p>` : null}
    ${result.data
      ? html`<h2>Result</h2>
          <p>${result.data.state} after ${result.data.attempts} attempt(s)${result.data.duration_ms !== null ? `, ${duration(result.data.duration_ms)}` : ""}</p>
          <${Json} value=${result.data.result} />`
      : null}
    <h2>Files</h2>
    ${files.data === undefined && !files.loading && !files.error
      ? html`<${Unavailable} what="Job files" />`
      : files.data && files.data.files.length > 0
        ? html`<ul>
            ${files.data.files.map(
              (f) => html`<li key=${f.name}>
                <${Action} label=${`Download ${f.name}`} done=${`${f.name} downloaded`} run=${() => download(`/api/jobs/${encodeURIComponent(jobId)}/files/${encodeURIComponent(f.name)}`, f.name)} />
                (${bytes(f.size)}, ${f.content_type})
              </li>`,
            )}
          </ul>`
        : html`<p>None.</p>`}
    <h2>Events</h2>
    ${events.length === 0 ? html`<p>${finished ? "The job had finished before this page opened." : "Waiting for the job to change…"}</p>` : null}
    <ol class="events" aria-live="polite">
      ${events.map(
        ({ at, event }, i) => html`<li key=${i}>
          <time datetime=${at}>${new Date(at).toLocaleTimeString()}</time> ${event.type}: ${event.data.state}
          ${event.data.progress !== null ? ` ${Math.round(event.data.progress * 100)} %` : ""}
        </li>`,
      )}
    </ol>
  </section>`;
}
