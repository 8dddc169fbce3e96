/**
 * The NATS transport: each operation is one request to its subject of the
 * `bosun` service (the same JSON as HTTP); events follow the job's record
 * and result as the gateway's event stream does.
 */
import { headers as natsHeaders, type NatsConnection } from "@nats-io/nats-core";
import { BosunError, encodeJson, operations, type JobEvent, type JobStatus, type OperationName } from "../contract/index.js";
import { jobEvents } from "../gateway/events.js";
import { readReply, requestFailure } from "../platform/nats.js";
import type { CallOptions, Transport } from "./client.js";
import { typed } from "./errors.js";

export interface NatsTransportOptions {
  /** An API key, sent as the `Authorization: Bearer <key>` request header. */
  key?: string;
  /** Per-request timeout; a submit's `wait_ms` is added to it (default 10 s). */
  timeoutMs?: number;
  /** Extra headers per request (a traceparent, a correlation id). */
  headers?: () => Record<string, string>;
  /** Close the connection with the client (it was opened for it). */
  ownsConnection?: boolean;
}

const DEFAULT_TIMEOUT_MS = 10_000;

export class NatsTransport implements Transport {
  readonly operations: readonly string[] = Object.keys(operations);

  constructor(
    readonly nc: NatsConnection,
    readonly options: NatsTransportOptions = {},
  ) {}

  async call(operation: string, input: unknown, opts: CallOptions = {}): Promise<unknown> {
    const { subject } = operations[operation as OperationName];
    const headers = natsHeaders();
    if (this.options.key) headers.set("Authorization", `Bearer ${this.options.key}`);
    for (const [name, value] of Object.entries(this.options.headers?.() ?? {})) headers.set(name, value);
    const waitMs = (input as { wait_ms?: unknown } | null)?.wait_ms;
    const timeout = (this.options.timeoutMs ?? DEFAULT_TIMEOUT_MS) + (typeof waitMs === "number" ? waitMs : 0);
    let data: Uint8Array;
    try {
      data = encodeJson(input ?? {});
    } catch (err) {
      // Nesting too deep for JSON.stringify (or a cycle): the request's fault, not the connection's.
      throw typed(new BosunError("validation_error", `the request cannot be sent as JSON: ${(err as Error).message}`, undefined, { cause: err }));
    }
    let reply;
    try {
      const request = this.nc.request(subject, data, { timeout, headers });
      reply = await (opts.signal ? Promise.race([request, aborted(opts.signal)]) : request);
    } catch (err) {
      if (opts.signal?.aborted) throw err;
      throw typed(requestFailure(err, timeout));
    }
    try {
      return readReply(reply);
    } catch (err) {
      throw err instanceof BosunError ? typed(err) : err;
    }
  }

  async *events(jobId: string, signal?: AbortSignal): AsyncGenerator<JobEvent> {
    // Subscribed before the first read, so no change between the two is missed.
    const events = await jobEvents(this.nc, jobId, signal ?? new AbortController().signal);
    let first: JobStatus;
    try {
      // A job that does not exist (or that this key may not see) is an error, not an endless wait.
      first = (await this.call("jobs_get", { job_id: jobId }, { signal })) as JobStatus;
    } catch (err) {
      events.close();
      throw err;
    }
    for await (const { data } of events.stream(first)) yield data as JobEvent;
  }

  async close(): Promise<void> {
    if (this.options.ownsConnection) await this.nc.close();
  }
}

const aborted = (signal: AbortSignal): Promise<never> =>
  new Promise((_resolve, reject) => signal.addEventListener("abort", () => reject(signal.reason), { once: true }));
