/**
 * The dashboard's only way to the server: the public HTTP API, through the
 * typed client's HTTP transport (the route table is put in at build time,
 * from the contract's operations table), with the API key of this browser
 * tab. Routes the server may not have yet (schedules, targets, files) are
 * called by their contract URL, and their absence is an answer of its own.
 */
import { createClient, type BosunClient } from "../client/client.js";
import { NotFoundError, UnauthorizedError } from "../client/errors.js";
import { HttpTransport } from "../client/http.js";
import type { RouteTable } from "../client/routes.js";
import type { BosunError } from "../contract/errors.js";

declare const __BOSUN_ROUTES__: RouteTable;
export const routes: RouteTable = __BOSUN_ROUTES__;

const KEY_STORAGE = "bosun.api_key";

export const storedKey = (): string | undefined => sessionStorage.getItem(KEY_STORAGE) ?? undefined;
export function storeKey(key: string | undefined): void {
  if (key) sessionStorage.setItem(KEY_STORAGE, key);
  else sessionStorage.removeItem(KEY_STORAGE);
  rebuild();
}

let transport: HttpTransport;
export let api: BosunClient;
const unauthorizedListeners = new Set<() => void>();
export const onUnauthorized = (listener: () => void): (() => void) => (unauthorizedListeners.add(listener), () => unauthorizedListeners.delete(listener));

function rebuild(): void {
  const guarded: typeof fetch = async (input, init) => {
    const res = await fetch(input, init);
    // A key that stops working (revoked, expired) sends the tab back to the key form.
    if (res.status === 401) for (const listener of unauthorizedListeners) listener();
    return res;
  };
  transport = new HttpTransport(routes, { url: "", key: storedKey(), fetch: guarded });
  api = createClient(transport);
}
rebuild();

/** Whether the server has this operation's route (the query keys say which filters it takes). */
export const supports = (operation: string, queryKey?: string): boolean => {
  const route = routes[operation];
  return route !== undefined && (queryKey === undefined || route.query.includes(queryKey));
};

/** A gateway's own 404 for a route it does not have (as opposed to an unknown job or schedule). */
export const isMissingRoute = (err: unknown): boolean => err instanceof NotFoundError && err.message.startsWith("no route ");

/** A call by the contract's URL; `undefined` when this server does not have the route. */
export async function optional<T>(method: string, path: string, body?: unknown): Promise<T | undefined> {
  try {
    const res = await transport.request(method, path, body);
    return res.status === 204 ? (null as T) : ((await res.json()) as T);
  } catch (err) {
    if (isMissingRoute(err)) return undefined;
    throw err;
  }
}

/** Server-sent events from an API stream (fetch, so the key goes along). */
export async function* stream(path: string, signal: AbortSignal): AsyncGenerator<unknown> {
  const { readSse } = await import("../client/sse.js");
  const res = await transport.request("GET", path, undefined, signal, "text/event-stream");
  if (!res.body) return;
  for await (const { data } of readSse(res.body, signal)) yield data;
}

export const messageOf = (err: unknown): string => {
  const e = err as Partial<BosunError> & { message?: string };
  if (err instanceof UnauthorizedError) return "This key is not valid (401).";
  return e.code ? `${e.message} (${e.code})` : String(e.message ?? err);
};

/** Saves a file the API serves (a link would not send the key). */
export async function download(path: string, name: string): Promise<void> {
  const res = await transport.request("GET", path, undefined, undefined, "*/*");
  const url = URL.createObjectURL(await res.blob());
  const a = Object.assign(document.createElement("a"), { href: url, download: name });
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
