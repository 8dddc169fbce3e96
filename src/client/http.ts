/**
 * The HTTP transport: each operation is one call to its gateway route, an
 * error body becomes its typed exception, events are the route's
 * server-sent events. Browser-safe (fetch only), so the dashboard uses it too.
 */
import { errorCodes } from "../contract/errors.js";
import type { JobEvent } from "../contract/schemas.js";
import type { CallOptions, Transport } from "./client.js";
import { errorFor, UnavailableError, ValidationError } from "./errors.js";
import type { RouteInfo, RouteTable } from "./routes.js";
import { readSse } from "./sse.js";

export interface HttpOptions {
  /** The gateway, e.g. http://127.0.0.1:8080 (empty: the page's own origin). */
  url: string;
  /** An API key, sent as `Authorization: Bearer <key>`. */
  key?: string;
  /** Extra headers per request (a traceparent, a correlation id). */
  headers?: () => Record<string, string>;
  fetch?: typeof fetch;
}

type Fields = Record<string, unknown>;

/** A request body sent as it is, not as JSON (a job file's bytes, streamed). */
export class RawBody {
  constructor(
    readonly data: ReadableStream<Uint8Array>,
    readonly contentType: string,
  ) {}
}

export class HttpTransport implements Transport {
  readonly operations: readonly string[];
  readonly #base: string;
  readonly #fetch: typeof fetch;

  constructor(
    readonly routes: RouteTable,
    readonly options: HttpOptions,
  ) {
    this.operations = Object.keys(routes);
    this.#base = options.url.replace(/\/+$/, "");
    this.#fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
  }

  async call(operation: string, input: unknown, opts: CallOptions = {}): Promise<unknown> {
    return (await this.send(operation, input, opts)).body;
  }

  /** `call`, with the answer's headers too (a compute server reads the gateway's clock from `Date`). */
  async send(operation: string, input: unknown, opts: CallOptions = {}): Promise<{ body: unknown; headers: Headers }> {
    const route = this.routes[operation];
    if (!route) throw new UnavailableError("unavailable", `this client has no HTTP route for ${operation}`);
    const res = await this.request(route.method, pathOf(route, (input ?? {}) as Fields), route.body ? bodyOf(route, (input ?? {}) as Fields) : undefined, opts.signal);
    if (res.status === 204) return { body: null, headers: res.headers };
    const body: unknown = await res.json();
    return { body: route.unwraps ? { [route.unwraps]: body } : body, headers: res.headers };
  }

  /** One HTTP request with this client's headers; a non-2xx answer throws its typed error. */
  async request(method: string, path: string, body?: unknown, signal?: AbortSignal, accept = "application/json"): Promise<Response> {
    const headers: Record<string, string> = { accept, ...this.options.headers?.() };
    if (this.options.key) headers.authorization = `Bearer ${this.options.key}`;
    if (body !== undefined) headers["content-type"] = body instanceof RawBody ? body.contentType : "application/json";
    let sent: string | RawBody["data"] | undefined;
    try {
      sent = body === undefined ? undefined : body instanceof RawBody ? body.data : JSON.stringify(body);
    } catch (err) {
      // Nesting too deep for JSON.stringify (or a cycle): the request's fault, not the gateway's.
      throw new ValidationError("validation_error", `the request cannot be sent as JSON: ${(err as Error).message}`, undefined, { cause: err });
    }
    let res: Response;
    try {
      // A stream goes out as it is read ("half" duplex: the answer is read once it is all sent).
      res = await this.#fetch(`${this.#base}${path}`, { method, headers, body: sent, signal, ...(sent instanceof ReadableStream && { duplex: "half" }) });
    } catch (err) {
      if (signal?.aborted) throw err;
      throw new UnavailableError("unavailable", `the gateway at ${this.#base || "this origin"} is unreachable`, undefined, { cause: err });
    }
    if (res.ok) return res;
    const text = await res.text();
    let error: { code?: unknown; message?: string; details?: unknown } | undefined;
    try {
      error = (JSON.parse(text) as { error?: typeof error }).error;
    } catch {
      // Not one of Bosun's error bodies (a proxy's page, say): the status tells what it can.
    }
    throw errorFor(error?.code ?? codeOfStatus(res.status), error?.message ?? `HTTP ${res.status} ${method} ${path}`, error?.details);
  }

  async *events(jobId: string, signal?: AbortSignal): AsyncGenerator<JobEvent> {
    const res = await this.request("GET", `/api/jobs/${encodeURIComponent(jobId)}/events`, undefined, signal, "text/event-stream");
    if (!res.body) return;
    for await (const { data } of readSse(res.body, signal)) yield data as JobEvent;
  }

  async close(): Promise<void> {}
}

/** The route's path with its params filled in and the query fields appended. */
function pathOf(route: RouteInfo, input: Fields): string {
  const path = route.url.replace(/:([A-Za-z_]+)/g, (_m, name: string) => encodeURIComponent(String(input[name] ?? "")));
  const query = new URLSearchParams();
  for (const name of route.query) if (input[name] !== undefined) query.set(name, String(input[name]));
  // Without a body, every other field is a query parameter too (the route's schema judges it).
  if (!route.body) for (const [name, value] of Object.entries(input)) if (!route.params.includes(name) && !route.query.includes(name) && value !== undefined) query.set(name, String(value));
  const qs = query.toString();
  return qs ? `${path}?${qs}` : path;
}

function bodyOf(route: RouteInfo, input: Fields): Fields {
  const body: Fields = {};
  for (const [name, value] of Object.entries(input)) if (!route.params.includes(name) && !route.query.includes(name)) body[name] = value;
  return body;
}

/** For an answer without Bosun's error body: the first code of the contract's table with that status. */
const codeOfStatus = (status: number): string => Object.entries(errorCodes).find(([, s]) => s === status)?.[0] ?? "internal_error";
