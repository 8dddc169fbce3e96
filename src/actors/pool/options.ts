/** What a pool is given: its settings (from the pool flags every process that runs one shares) and its hooks. */
import type { Logger } from "pino";
import type { ActorKind } from "../actor.js";
import type { SupervisorMetrics } from "../../platform/metrics.js";

export interface PoolOptions {
  /** What runs the jobs: child processes (default) or worker threads. */
  isolation: ActorKind;
  min: number;
  max: number;
  maxExecutions: number;
  maxMemoryMb: number;
  idleTimeoutMs: number;
  /** Time a handler gets to honour ctx.signal before its actor is killed. */
  killGraceMs: number;
  handlersPath?: string;
  builtins: boolean;
  /** Extra environment for execution actors (NATS URL and maintenance defaults). */
  env: Record<string, string>;
  /** More crashes than this within restartWindowMs make spawning back off. */
  maxRestarts: number;
  restartWindowMs: number;
  log: Logger;
  /** Called on every change a heartbeat should report. */
  onChange(): void;
  metrics?: Pick<SupervisorMetrics, "restarts" | "recycles">;
}

/** The pool flags as a supervisor's and a compute worker's config hold them (platform/config.ts poolFields). */
export interface PoolFlags {
  isolation: ActorKind;
  min: number;
  max: number;
  max_executions: number;
  max_memory_mb: number;
  idle_timeout_ms: number;
  kill_grace_ms: number;
  handlers?: string;
  builtins: boolean;
  max_restarts: number;
  restart_window_ms: number;
}

/** The part of PoolOptions the flags decide, the same for every process that runs a pool. */
export const poolSettingsOf = (c: PoolFlags) => ({
  isolation: c.isolation,
  min: c.min,
  max: c.max,
  maxExecutions: c.max_executions,
  maxMemoryMb: c.max_memory_mb,
  idleTimeoutMs: c.idle_timeout_ms,
  killGraceMs: c.kill_grace_ms,
  handlersPath: c.handlers,
  builtins: c.builtins,
  maxRestarts: c.max_restarts,
  restartWindowMs: c.restart_window_ms,
});
