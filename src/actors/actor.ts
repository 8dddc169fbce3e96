/**
 * An execution actor as its supervisor sees it: it runs the jobs it is sent,
 * one at a time, can be asked to abort one, retired (closed) or killed hard,
 * and reports its messages and its end. Two kinds, one interface, so the
 * pool knows neither child_process nor worker_threads:
 *
 * - `process` (the default): a child OS process. OS-level isolation: a
 *   handler can leak, corrupt or crash only its own process.
 * - `thread`: a worker thread in the supervisor's process, for trusted
 *   handlers that want speed. The same protocol and guarantees (hard kill
 *   on timeout or cancel, crash counted, recycling) except memory
 *   isolation: V8 heap limits (resourceLimits) bound a runaway thread, but
 *   native code in a handler can still take the whole supervisor down.
 */
import type { Logger } from "pino";
import type { ChildMessage, ParentCommand } from "./protocol.js";
import { forkProcessActor } from "./process-actor.js";
import { startThreadActor } from "./thread-actor.js";

export const ACTOR_KINDS = ["process", "thread"] as const;
export type ActorKind = (typeof ACTOR_KINDS)[number];

/** How an actor ended: its exit code, the signal that killed a process, or why a thread died. */
export interface ActorExit {
  code: number | null;
  signal: string | null;
  /** A thread's uncaught error or heap limit, which a process would show as a signal or a stack trace. */
  error?: string;
}

export interface ActorEvents {
  /** One write of the actor's: its messages of one turn, in order. */
  messages(msgs: ChildMessage[]): void;
  exit(how: ActorExit): void;
}

export interface ExecutionActor {
  readonly kind: ActorKind;
  /** The OS process that runs it: its own, or for a thread the supervisor's. */
  readonly pid: number;
  /** A thread's id within the supervisor's process; undefined for a process. */
  readonly threadId: number | undefined;
  /** One write: commands of one turn, in order. */
  send(cmds: ParentCommand[]): void;
  /** Asks it to exit on its own: it stops serving at once (call it when no job runs). */
  close(): void;
  /** Hard kill: SIGKILL for a process, worker.terminate() for a thread. */
  kill(): void;
  /** The start ledger: the sequence number of the last run it started (read it once it has exited). */
  startedUpTo(): number;
}

export interface ActorOptions {
  /** Extra environment (NATS URL, maintenance defaults). */
  env: Record<string, string>;
  handlersPath?: string;
  builtins: boolean;
  /** The memory ceiling: a thread's V8 heap is capped at twice this (a process's RSS is only watched). */
  maxMemoryMb: number;
  log: Logger;
}

export type ActorSpawner = (events: ActorEvents) => ExecutionActor;

/** What a pool calls to start one actor of this kind. */
export function actorSpawner(kind: ActorKind, opts: ActorOptions): ActorSpawner {
  const env = { ...process.env, ...opts.env, BOSUN_HANDLERS: opts.handlersPath ?? "", BOSUN_BUILTINS: String(opts.builtins) };
  return kind === "thread"
    ? (events) => startThreadActor({ env, heapLimitMb: Math.max(64, 2 * opts.maxMemoryMb) }, events)
    : (events) => forkProcessActor({ env, log: opts.log }, events);
}
