/** A small JSON client for the gateway. */

export interface HttpReply<T = unknown> {
  status: number;
  headers: Headers;
  /** Parsed JSON body, or the raw text when it is not JSON. */
  body: T;
  text: string;
}

export interface HttpOptions {
  /** A value to send as JSON; a string is sent as is. */
  body?: unknown;
  headers?: Record<string, string>;
  timeoutMs?: number;
}

export async function http<T = unknown>(baseUrl: string, method: string, path: string, opts: HttpOptions = {}): Promise<HttpReply<T>> {
  const init: RequestInit = {
    method,
    headers: { ...(opts.body !== undefined ? { "content-type": "application/json" } : {}), ...opts.headers },
    signal: AbortSignal.timeout(opts.timeoutMs ?? 15_000),
  };
  if (opts.body !== undefined) init.body = typeof opts.body === "string" ? opts.body : JSON.stringify(opts.body);
  const res = await fetch(`${baseUrl}${path}`, init);
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: keep the text
  }
  return { status: res.status, headers: res.headers, body: body as T, text };
}

/** The contract's error body. */
export interface ErrorReply {
  error: { code: string; message: string; details?: unknown };
}

export interface SubmitReply {
  job_id: string;
  state: string;
}

export interface JobResult {
  job_id: string;
  state: string;
  result: unknown;
  error: { code: string; message: string } | null;
  attempts: number;
  duration_ms: number | null;
}

export interface JobStatus {
  job_id: string;
  type: string;
  queue: string;
  state: string;
  attempts: number;
  max_attempts: number;
  owner: { worker_id: string; pid: number; thread_id?: number } | null;
  error: { code: string; message: string } | null;
}
