/**
 * The typed protocol between a supervisor and its execution actors: over
 * Node's IPC channel to a child process, over a message port to a worker
 * thread. Nothing stringly typed crosses either.
 */
import type { JobError } from "../contract/index.js";

export interface RunCommand {
  t: "run";
  execution_id: string;
  job_id: string;
  type: string;
  payload: unknown;
  attempt: number;
  correlation_id: string;
}

/** Lets a handler stop cooperatively (ctx.signal) before the hard kill. */
export interface AbortCommand {
  t: "abort";
  execution_id: string;
  reason: string;
}

export type ParentCommand = RunCommand | AbortCommand;

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

export type ChildMessage = ReadyMessage | DoneMessage | ProgressMessage;
