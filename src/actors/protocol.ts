/**
 * The typed protocol between a supervisor and its execution actors: over
 * Node's IPC channel to a child process, over a message port to a worker
 * thread. Nothing stringly typed crosses either.
 *
 * Each write carries every message one side produced in one event-loop turn
 * (an array), so an actor fed several short jobs at once wakes once for them
 * and answers once. An actor still runs one job at a time, in the order
 * sent; before it starts one it records the run's sequence number in its
 * start ledger (shared memory for a thread, a file for a process), which its
 * supervisor reads if it dies: every run that started is counted, and none
 * that never started is.
 */
import type { JobError } from "../contract/index.js";

export interface RunCommand {
  t: "run";
  execution_id: string;
  /** This actor's run number (1, 2, ...): what the start ledger holds. */
  seq: number;
  job_id: string;
  type: string;
  payload: unknown;
  attempt: number;
  /** Grows with every lease of the job (see fencingToken): outcomes stored with an older one are refused. */
  fencing_token: number;
  correlation_id: string;
  /** W3C traceparent of the supervisor's run span: the handler's span is its child. */
  traceparent?: string;
  /** How this run's ctx.files reach storage; absent: over NATS (a supervisor's actors). */
  files?: FilesTransportSpec;
}

/**
 * Which transport a run's ctx.files use (actors/files.ts): `nats` straight
 * into the files bucket, from an actor that has NATS_URL; `http` for a
 * compute worker's actors, which have no NATS: `PUT
 * /api/compute/jobs/{id}/files/{name}` to its gateway under the run's lease
 * (files-http.ts). The credential travels with the run rather than in the
 * actor's environment, which whatever a handler spawns would inherit.
 */
export type FilesTransportSpec = { transport: "nats" } | { transport: "http"; gateway: string; credential: string; lease_id: string };

/** Lets a handler stop cooperatively (ctx.signal) before the hard kill. */
export interface AbortCommand {
  t: "abort";
  execution_id: string;
  reason: string;
}

/** Takes back a run that has not started: the actor answers `withdrawn`, or ignores it once the run started. */
export interface WithdrawCommand {
  t: "withdraw";
  execution_id: string;
}

export type ParentCommand = RunCommand | AbortCommand | WithdrawCommand;

/** Retires a worker thread (a child process is retired by closing its IPC channel instead). */
export interface CloseCommand {
  t: "close";
}

export interface ReadyMessage {
  t: "ready";
  job_types: string[];
  rss_mb: number;
}

export interface DoneMessage {
  t: "done";
  execution_id: string;
  outcome: { ok: true; value: unknown } | { ok: false; error: JobError };
  rss_mb: number;
}

export interface ProgressMessage {
  t: "progress";
  execution_id: string;
  progress: number;
}

export interface WithdrawnMessage {
  t: "withdrawn";
  execution_id: string;
}

export type ChildMessage = ReadyMessage | DoneMessage | ProgressMessage | WithdrawnMessage;

/** One write's worth: everything one side sent in one event-loop turn, in order. */
export type ParentWrite = ParentCommand[] | CloseCommand;
export type ChildWrite = ChildMessage[];
