/**
 * The dashboard at /ui/: a shell (landmarks, navigation, key form), a hash
 * router and one module per page. Which pages show depends on what the key
 * may see: an admin key (or no auth) everything, a tenant key its jobs.
 */
import "uplot/dist/uPlot.min.css";
import "./style.css";
import { html, render } from "htm/preact";
import { useEffect, useState } from "preact/hooks";
import { ForbiddenError, UnauthorizedError } from "../client/errors.js";
import { api, messageOf, onUnauthorized, routes, storedKey, storeKey } from "./api.js";
import { live } from "./live.js";
import { useRoute } from "./router.js";
import { Dead } from "./pages/dead.js";
import { Job } from "./pages/job.js";
import { Jobs } from "./pages/jobs.js";
import { Ops } from "./pages/ops.js";
import { Overview } from "./pages/overview.js";
import { Queues } from "./pages/queues.js";
import { Schedules } from "./pages/schedules.js";
import { Workers } from "./pages/workers.js";

type Access = "checking" | "needs_key" | "admin" | "tenant" | "offline";

/** Each page and the operation it is built on: that operation's access in the contract says whether a tenant key gets the page. */
const PAGES = [
  { path: "overview", label: "Overview", operation: "workers_list" },
  { path: "workers", label: "Workers", operation: "workers_list" },
  { path: "queues", label: "Queues", operation: "queue_status" },
  { path: "jobs", label: "Jobs", operation: "jobs_list" },
  { path: "dead", label: "Dead jobs", operation: "jobs_list" },
  { path: "schedules", label: "Schedules", operation: "schedules_list" },
  { path: "ops", label: "Ops flags", operation: "ops_get" },
] as const;

// A server without the page's route has no access to go by: only an admin key gets the page (saying it is not available).
const mayOpen = (access: Access, page: (typeof PAGES)[number]): boolean => access === "admin" || routes[page.operation]?.access === "tenant";

/** What this tab's key may do, asked of an admin route. */
async function probe(): Promise<{ access: Access; error?: unknown }> {
  try {
    // The answer is the overview's first data too: no second round trip before it paints.
    live.seed((await api.workersList()).workers);
    return { access: "admin" };
  } catch (err) {
    if (err instanceof UnauthorizedError) return { access: "needs_key", error: storedKey() ? err : undefined };
    if (err instanceof ForbiddenError) return { access: "tenant" };
    return { access: "offline", error: err };
  }
}

function KeyForm({ error, onKey }: { error: unknown; onKey: (key: string) => void }) {
  const submit = (e: Event) => {
    e.preventDefault();
    const key = new FormData(e.currentTarget as HTMLFormElement).get("key");
    if (typeof key === "string" && key.trim()) onKey(key.trim());
  };
  return html`<section aria-labelledby="key-h" class="key-form">
    <h1 id="key-h">Sign in</h1>
    <p>This server has auth on. Enter an API key: an admin key sees everything, a tenant key its own jobs. It is kept for this tab only.</p>
    ${error ? html`<p class="error" role="alert">${messageOf(error)}</p>` : null}
    <form onSubmit=${submit}>
      <label for="api-key">API key</label>
      <input id="api-key" name="key" type="password" autocomplete="off" required autofocus />
      <button type="submit">Use key</button>
    </form>
  </section>`;
}

function Page({ access }: { access: Access }) {
  const { path, query } = useRoute();
  const [first = access === "admin" ? "overview" : "jobs", id] = path;
  useEffect(() => {
    // Move focus to the new page's content, so keyboard and screen reader users land there.
    document.getElementById("main")?.focus({ preventScroll: true });
  }, [first, id]);
  const page = PAGES.find((p) => p.path === first);
  if (page && !mayOpen(access, page)) return html`<p class="notice">This page needs an admin key.</p>`;
  switch (first) {
    case "overview":
      return html`<${Overview} />`;
    case "workers":
      return html`<${Workers} />`;
    case "queues":
      return html`<${Queues} />`;
    case "jobs":
      return id ? html`<${Job} jobId=${id} key=${id} />` : html`<${Jobs} query=${query} />`;
    case "dead":
      return html`<${Dead} query=${query} />`;
    case "schedules":
      return html`<${Schedules} />`;
    case "ops":
      return html`<${Ops} />`;
    default:
      return html`<p>No such page. <a href="#/">Go to the start</a>.</p>`;
  }
}

function App() {
  const [state, setState] = useState<{ access: Access; error?: unknown }>({ access: "checking" });
  const { path } = useRoute();
  const recheck = () => void probe().then(setState);
  useEffect(() => {
    recheck();
    return onUnauthorized(() => setState({ access: "needs_key", error: storedKey() ? new UnauthorizedError("unauthorized", "this key is not valid") : undefined }));
  }, []);
  useEffect(() => {
    if (state.access === "admin") live.start();
    else live.stop();
  }, [state.access]);
  const current = path[0] ?? (state.access === "admin" ? "overview" : "jobs");
  const visible = PAGES.filter((p) => mayOpen(state.access, p));
  return html`
    <a class="skip" href="#main" onClick=${(e: Event) => (e.preventDefault(), document.getElementById("main")?.focus())}>Skip to content</a>
    <header class="top">
      <a class="brand" href="#/">Bosun</a>
      ${state.access === "admin" || state.access === "tenant"
        ? html`<nav aria-label="Main">
            <ul>
              ${visible.map((p) => html`<li key=${p.path}><a href=${`#/${p.path}`} aria-current=${current === p.path ? "page" : undefined}>${p.label}</a></li>`)}
            </ul>
          </nav>`
        : null}
      <span class="who">
        ${state.access === "tenant" ? "tenant key" : state.access === "admin" && storedKey() ? "admin key" : ""}
        ${storedKey() ? html` <button type="button" onClick=${() => (storeKey(undefined), recheck())}>Sign out</button>` : null}
      </span>
    </header>
    <main id="main" tabindex="-1">
      ${state.access === "checking"
        ? html`<p>Connecting…</p>`
        : state.access === "needs_key"
          ? html`<${KeyForm} error=${state.error} onKey=${(key: string) => (storeKey(key), recheck())} />`
          : state.access === "offline"
            ? html`<p class="error" role="alert">${messageOf(state.error)} <button type="button" onClick=${recheck}>Try again</button></p>`
            : html`<${Page} access=${state.access} />`}
    </main>
  `;
}

const root = document.getElementById("app")!;
root.replaceChildren();
render(html`<${App} />`, root);
