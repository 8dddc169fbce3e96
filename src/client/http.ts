/**
 * The HTTP transport: each operation is one call to its gateway route, an
 * error body becomes its typed exception, events are the route's
 * server-sent events. Browser-safe (fetch only, unless given an exchange),
 * so the dashboard uses it too.
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
  /**
   * How an operation's call goes out and its answer comes back whole;
   * default: over `fetch`. A Node process that calls often passes
   * node-http.ts's, which costs a fraction of fetch's per call.
   */
  exchange?: Exchange;
}

/** One operation's call, its body already JSON. */
export interface ExchangeRequest {
  method: string;
  url: string;
  headers: Record<string, string>;
  body: string | undefined;
  signal: AbortSignal | undefined;
}

/** Its answer, read whole. */
export interface ExchangeAnswer {
  status: number;
  headers: AnswerHeaders;
  text: string;
}

/** What an answer's headers are read through (fetch's Headers is one). */
export interface AnswerHeaders {
  get(name: string): string | null;
}

/** Sends one call; rejects only when no answer came (unreachable, cut short, aborted). */
export type Exchange = (req: ExchangeRequest) => Promise<ExchangeAnswer>;

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
  readonly #exchange: Exchange;

  constructor(
    readonly routes: RouteTable,
    readonly options: HttpOptions,
  ) {
    this.operations = Object.keys(routes);
    this.#base = options.url.replace(/\/+$/, "");
    this.#fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.#exchange = options.exchange ?? this.#overFetch;
  }

  async call(operation: string, input: unknown, opts: CallOptions = {}): Promise<unknown> {
    return (await this.send(operation, input, opts)).body;
  }

  /** `call`, with the answer's headers too (a compute server reads the gateway's clock from `Date`). */
  async send(operation: string, input: unknown, opts: CallOptions = {}): Promise<{ body: unknown; headers: AnswerHeaders }> {
    const route = this.routes[operation];
    if (!route) throw new UnavailableError("unavailable", `this client has no HTTP route for ${operation}`);
    const fields = (input ?? {}) as Fields;
    const path = pathOf(route, fields);
    const body = route.body ? bodyOf(route, fields) : undefined;
    const method = route.method;
    const signal = opts.signal;
    const sent = body === undefined ? undefined : jsonOf(body);
    let answer: ExchangeAnswer;
    try {
      answer = await this.#exchange({ method, url: `${this.#base}${path}`, headers: this.#headers("application/json", body), body: sent, signal });
    } catch (err) {
      throw this.#unreachable(err, signal);
    }
    if (answer.status < 200 || answer.status > 299) throw failure(answer.status, answer.text, method, path);
    if (answer.status === 204) return { body: null, headers: answer.headers };
    const parsed: unknown = JSON.parse(answer.text);
    return { body: route.unwraps ? { [route.unwraps]: parsed } : parsed, headers: answer.headers };
  }

  /** One HTTP request with this client's headers; a non-2xx answer throws its typed error. */
  async request(method: string, path: string, body?: unknown, signal?: AbortSignal, accept = "application/json"): Promise<Response> {
    const sent = body === undefined ? undefined : body instanceof RawBody ? body.data : jsonOf(body);
    let res: Response;
    try {
      // A stream goes out as it is read ("half" duplex: the answer is read once it is all sent).
      res = await this.#fetch(`${this.#base}${path}`, { method, headers: this.#headers(accept, body), body: sent, signal, ...(sent instanceof ReadableStream && { duplex: "half" }) });
    } catch (err) {
      throw this.#unreachable(err, signal);
    }
    if (res.ok) return res;
    throw failure(res.status, await res.text(), method, path);
  }

  readonly #overFetch: Exchange = async ({ url, signal, ...init }) => {
    const res = await this.#fetch(url, { ...init, signal });
    return { status: res.status, headers: res.headers, text: await res.text() };
  };

  #headers(accept: string, body: unknown): Record<string, string> {
    const headers: Record<string, string> = { accept, ...this.options.headers?.() };
    if (this.options.key) headers.authorization = `Bearer ${this.options.key}`;
    if (body !== undefined) headers["content-type"] = body instanceof RawBody ? body.contentType : "application/json";
    return headers;
  }

  /** No answer: an abort is the caller's own, anything else means the gateway could not be reached. */
  #unreachable(err: unknown, signal: AbortSignal | undefined): unknown {
    if (signal?.aborted) return err;
    return new UnavailableError("unavailable", `the gateway at ${this.#base || "this origin"} is unreachable`, undefined, { cause: err });
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

function jsonOf(body: unknown): string {
  try {
    return JSON.stringify(body);
  } catch (err) {
    // Nesting too deep for JSON.stringify (or a cycle): the request's fault, not the gateway's.
    throw new ValidationError("validation_error", `the request cannot be sent as JSON: ${(err as Error).message}`, undefined, { cause: err });
  }
}

/** A non-2xx answer as its typed error: by the code of Bosun's error body, else by its status. */
function failure(status: number, text: string, method: string, path: string): Error {
  let error: { code?: unknown; message?: string; details?: unknown } | undefined;
  try {
    error = (JSON.parse(text) as { error?: typeof error }).error;
  } catch {
    // Not one of Bosun's error bodies (a proxy's page, say): the status tells what it can.
  }
  return errorFor(error?.code ?? codeOfStatus(status), error?.message ?? `HTTP ${status} ${method} ${path}`, error?.details);
}

/** For an answer without Bosun's error body: the first code of the contract's table with that status. */
const codeOfStatus = (status: number): string => Object.entries(errorCodes).find(([, s]) => s === status)?.[0] ?? "internal_error";
