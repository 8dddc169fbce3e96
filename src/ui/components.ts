/** Small pieces every page uses: data hooks, notices, buttons that act, formatting. */
import { html } from "htm/preact";
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { messageOf } from "./api.js";
import { live } from "./live.js";

/** Re-renders on every change of the live data (heartbeats, queue counts). */
export function useLive(): typeof live {
  const [, setTick] = useState(0);
  useEffect(() => live.subscribe(() => setTick((n) => n + 1)), []);
  return live;
}

export interface Loaded<T> {
  data: T | undefined;
  error: unknown;
  loading: boolean;
  reload(): void;
}

/** Runs `load` when `deps` change (and every `everyMs`, when given); the latest answer wins. */
export function useLoad<T>(load: () => Promise<T>, deps: unknown[], everyMs?: number): Loaded<T> {
  const [state, setState] = useState<{ data?: T; error?: unknown; loading: boolean }>({ loading: true });
  const generation = useRef(0);
  const run = useCallback(() => {
    const mine = ++generation.current;
    setState((s) => ({ ...s, loading: true }));
    load().then(
      (data) => mine === generation.current && setState({ data, loading: false }),
      (error: unknown) => mine === generation.current && setState((s) => ({ data: s.data, error, loading: false })),
    );
  }, deps);
  useEffect(() => {
    run();
    if (!everyMs) return;
    const timer = setInterval(run, everyMs);
    return () => clearInterval(timer);
  }, [run, everyMs]);
  return { data: state.data, error: state.error, loading: state.loading, reload: run };
}

let announceTimer: ReturnType<typeof setTimeout> | undefined;
/** Says what an action did, in the page's polite live region. */
export function announce(message: string): void {
  const region = document.getElementById("status");
  if (!region) return;
  region.textContent = message;
  clearTimeout(announceTimer);
  announceTimer = setTimeout(() => (region.textContent = ""), 8000);
}

export const ErrorNote = ({ error }: { error: unknown }) => (error ? html`<p class="error" role="alert">${messageOf(error)}</p>` : null);

export const Unavailable = ({ what }: { what: string }) =>
  html`<p class="notice" data-unavailable>${what} ${what.endsWith("s") ? "are" : "is"} not available on this server.</p>`;

/**
 * A button that runs an action once at a time, then announces how it went.
 * `name`: the accessible name when the visible label alone is ambiguous (one "Retry" per row).
 */
export function Action({ label, run, done, kind, name }: { label: string; run: () => Promise<unknown>; done?: string; kind?: "danger"; name?: string }) {
  const [busy, setBusy] = useState(false);
  const click = async () => {
    setBusy(true);
    try {
      await run();
      announce(done ?? `${label}: done`);
    } catch (err) {
      announce(`${label} failed: ${messageOf(err)}`);
    } finally {
      setBusy(false);
    }
  };
  return html`<button type="button" class=${kind ?? ""} disabled=${busy} aria-busy=${busy} aria-label=${name} onClick=${click}>${label}</button>`;
}

export const StateBadge = ({ state }: { state: string }) => html`<span class=${`state state-${state}`}>${state}</span>`;

export const JobLink = ({ id }: { id: string }) => html`<a href=${`#/jobs/${encodeURIComponent(id)}`}><code>${id}</code></a>`;

export function ago(iso: string | null | undefined): string {
  if (!iso) return "";
  const seconds = Math.round((Date.now() - Date.parse(iso)) / 1000);
  if (seconds < 60) return `${Math.max(0, seconds)} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86_400) return `${Math.round(seconds / 3600)} h ago`;
  return new Date(iso).toLocaleString();
}

export const duration = (ms: number | null | undefined): string =>
  ms === null || ms === undefined ? "" : ms < 1000 ? `${ms} ms` : ms < 60_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms / 60_000)} min`;

export const bytes = (n: number): string => (n < 1024 ? `${n} B` : n < 1048576 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1048576).toFixed(1)} MiB`);

export const Json = ({ value }: { value: unknown }) => html`<pre class="json">${JSON.stringify(value, null, 2)}</pre>`;
