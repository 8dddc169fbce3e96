/** Ops flags (pause all submissions, per-queue flags and limits as JSON) and targets. */
import { html } from "htm/preact";
import { useState } from "preact/hooks";
import { api, messageOf, optional } from "../api.js";
import { Action, announce, ErrorNote, Json, Unavailable, useLoad } from "../components.js";

interface Target {
  target_id: string;
  [field: string]: unknown;
}

export function Ops() {
  const flags = useLoad(() => api.opsGet(), [], 5000);
  const targets = useLoad(() => optional<{ targets: Target[] } | Target[]>("GET", "/api/targets"), [], 10_000);
  const [patch, setPatch] = useState("");
  const sendPatch = async (e: Event) => {
    e.preventDefault();
    try {
      await api.opsSet(JSON.parse(patch) as never);
      announce("Ops flags changed");
      flags.reload();
    } catch (err) {
      announce(`Changing the ops flags failed: ${err instanceof SyntaxError ? "not valid JSON" : messageOf(err)}`);
    }
  };
  const paused = flags.data?.submissions_paused ?? false;
  const targetList = Array.isArray(targets.data) ? targets.data : (targets.data?.targets ?? []);
  return html`<section aria-labelledby="ops-h">
    <h1 id="ops-h">Ops flags</h1>
    <p>Every gateway and supervisor applies a change within a second.</p>
    <${ErrorNote} error=${flags.error} />
    ${flags.data
      ? html`<p>
            All submissions: <strong data-testid="global-paused">${paused ? "paused" : "open"}</strong>${" "}
            <${Action}
              label=${paused ? "Resume all submissions" : "Pause all submissions"}
              kind=${paused ? undefined : "danger"}
              run=${async () => (await api.opsSet({ submissions_paused: !paused }), flags.reload())}
            />
          </p>
          <h2>Current flags</h2>
          <${Json} value=${flags.data} />`
      : null}
    <form onSubmit=${sendPatch} class="patch">
      <label for="ops-patch">Change flags (a JSON patch, e.g. <code>{"queues": {"q": {"submissions_paused": true}}}</code>)</label>
      <textarea id="ops-patch" rows="4" value=${patch} onInput=${(e: Event) => setPatch((e.target as HTMLTextAreaElement).value)}></textarea>
      <button type="submit">Apply patch</button>
    </form>
    <h2>Targets</h2>
    <${ErrorNote} error=${targets.error} />
    ${targets.data === undefined && !targets.loading && !targets.error
      ? html`<${Unavailable} what="Targets" />`
      : targetList.length > 0
        ? html`<${Json} value=${targetList} />`
        : html`<p>No targets.</p>`}
  </section>`;
}
