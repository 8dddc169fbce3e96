/**
 * The typed client, over any transport (NATS or HTTP). Its request/reply
 * methods are generated from the contract's operations table: `jobs_X`
 * becomes `x` in camelCase (`jobs_submit` -> `submit`,
 * `jobs_submit_batch` -> `submitBatch`), every other operation its whole name
 * (`workers_list` -> `workersList`). On top: `list` pages through jobs,
 * `events` follows one job, `wait` waits for its result. Browser-safe (the
 * contract is imported for types only).
 */
import type { z } from "zod";
import type { JobEvent, JobResult, JobStatus } from "../contract/schemas.js";
import type { OperationName, operations } from "../contract/operations.js";
import { NotFinishedError, WaitTimeoutError } from "./errors.js";

export interface CallOptions {
  /** Abandon the request (HTTP) or stop waiting for its reply. */
  signal?: AbortSignal;
}

/** How requests reach Bosun: one NATS request or one HTTP call per operation. */
export interface Transport {
  /** The operations this transport can call. */
  readonly operations: readonly string[];
  call(operation: string, input: unknown, opts?: CallOptions): Promise<unknown>;
  /** A job's events (state changes and progress) until it ends; a not_found error for an unknown job. */
  events(jobId: string, signal?: AbortSignal): AsyncIterable<JobEvent>;
  close(): Promise<void>;
}

type Camel<S extends string> = S extends `${infer Head}_${infer Tail}` ? `${Head}${Capitalize<Camel<Tail>>}` : S;
type MethodName<N extends string> = Camel<N extends `jobs_${infer Rest}` ? Rest : N>;
type Request<N extends OperationName> = z.input<(typeof operations)[N]["request"]>;
type Reply<N extends OperationName> = z.output<(typeof operations)[N]["response"]>;
/** Operations on one job also take its id alone. */
type Input<N extends OperationName> = Request<N> | (Request<N> extends { job_id: string } ? string : never);
type Method<N extends OperationName> = Record<string, never> extends Request<N>
  ? (input?: Input<N>, opts?: CallOptions) => Promise<Reply<N>>
  : (input: Input<N>, opts?: CallOptions) => Promise<Reply<N>>;

export type GeneratedMethods = { [N in OperationName as MethodName<N>]: Method<N> };

export const methodName = (operation: string): string =>
  operation.replace(/^jobs_/, "").replace(/_([a-z])/g, (_m, c: string) => c.toUpperCase());

export type ListFilter = Omit<Request<"jobs_list">, "cursor">;

export interface BosunClientExtras {
  /** One page of jobs (the raw `jobs_list` operation). */
  listPage: GeneratedMethods["list"];
  /** Every job matching the filter, newest first, fetched a page (`limit`) at a time. */
  list(filter?: ListFilter, opts?: CallOptions): AsyncIterable<JobStatus>;
  /** The pages themselves, following `next_cursor`. */
  pages(filter?: ListFilter, opts?: CallOptions): AsyncIterable<Reply<"jobs_list">>;
  /** State changes and progress reports of one job, until it ends. */
  events(jobId: string, opts?: CallOptions): AsyncIterable<JobEvent>;
  /** The job's result once it has finished (succeeded, cancelled or dead); WaitTimeoutError after timeoutMs. */
  wait(jobId: string, opts?: CallOptions & { timeoutMs?: number }): Promise<JobResult>;
  close(): Promise<void>;
  readonly transport: Transport;
}

export type BosunClient = Omit<GeneratedMethods, "list"> & BosunClientExtras;

const DEFAULT_WAIT_MS = 5 * 60_000;
/** wait() re-reads the result at least this often, whatever the event stream says. */
const WAIT_RECHECK_MS = 1000;

export function createClient(transport: Transport): BosunClient {
  const methods: Record<string, (input?: unknown, opts?: CallOptions) => Promise<unknown>> = {};
  for (const operation of transport.operations) {
    methods[methodName(operation)] = (input, opts) => transport.call(operation, typeof input === "string" ? { job_id: input } : (input ?? {}), opts);
  }
  const generated = methods as unknown as GeneratedMethods;
  const listPage = generated.list;

  async function* pages(filter: ListFilter = {}, opts?: CallOptions) {
    let cursor: string | undefined;
    do {
      // A cursor is sent only when the server gave one, so servers without cursors still answer.
      const page = await listPage(cursor === undefined ? filter : { ...filter, cursor }, opts);
      yield page;
      cursor = page.next_cursor ?? undefined;
    } while (cursor !== undefined && !opts?.signal?.aborted);
  }

  async function* list(filter: ListFilter = {}, opts?: CallOptions) {
    for await (const page of pages(filter, opts)) yield* page.jobs;
  }

  const events = (jobId: string, opts?: CallOptions) => transport.events(jobId, opts?.signal);

  async function wait(jobId: string, opts: CallOptions & { timeoutMs?: number } = {}): Promise<JobResult> {
    const timeoutMs = opts.timeoutMs ?? DEFAULT_WAIT_MS;
    const deadline = Date.now() + timeoutMs;
    const stop = new AbortController();
    const onAbort = () => stop.abort();
    opts.signal?.addEventListener("abort", onAbort);
    // The event stream wakes the loop at once when the job changes; the periodic re-read
    // covers a result published before the stream was listening.
    const stream = transport.events(jobId, stop.signal)[Symbol.asyncIterator]();
    let nextEvent: Promise<unknown> | undefined;
    try {
      while (true) {
        try {
          return (await generated.result({ job_id: jobId }, opts)) as JobResult;
        } catch (err) {
          if (!(err instanceof NotFinishedError)) throw err;
        }
        const left = deadline - Date.now();
        if (left <= 0 || stop.signal.aborted) throw new WaitTimeoutError(jobId, timeoutMs);
        nextEvent ??= stream.next().then(
          (r) => ((nextEvent = r.done ? new Promise(() => undefined) : undefined), r),
          () => (nextEvent = new Promise(() => undefined)),
        );
        let timer: ReturnType<typeof setTimeout> | undefined;
        await Promise.race([nextEvent, new Promise((resolve) => (timer = setTimeout(resolve, Math.min(left, WAIT_RECHECK_MS))))]);
        clearTimeout(timer);
      }
    } finally {
      opts.signal?.removeEventListener("abort", onAbort);
      stop.abort();
      void stream.return?.(undefined).catch(() => undefined);
    }
  }

  return { ...generated, listPage, list, pages, events, wait, close: () => transport.close(), transport } as BosunClient;
}
