import { z } from "zod";
import { setTimeout as sleep } from "node:timers/promises";
import { isMainThread } from "node:worker_threads";
import type { HandlerDefinition } from "./handlers.js";
import { maintenanceHandlers } from "./maintenance.js";

const positiveMs = z.number().int().nonnegative().max(24 * 3600 * 1000);

/** The handlers every supervisor serves unless turned off (--no-builtins). */
export const builtinHandlers: Record<string, HandlerDefinition<never, unknown>> = {
  echo: { run: (payload: unknown) => payload },
  noop: { run: () => null },
  sleep: {
    payload: z.object({ ms: positiveMs }),
    async run(payload: { ms: number }, ctx) {
      await sleep(payload.ms, undefined, { signal: ctx.signal });
      return { slept_ms: payload.ms };
    },
  },
  fail: {
    payload: z.object({ message: z.string().optional() }),
    run(payload: { message?: string }) {
      throw new Error(payload.message ?? "failed on purpose");
    },
  },
  crash: {
    payload: z.object({ exit_code: z.number().int().min(1).max(255).optional() }),
    run(payload: { exit_code?: number }) {
      process.exit(payload.exit_code ?? 1);
    },
  },
  cpu: {
    payload: z.object({ ms: positiveMs }),
    run(payload: { ms: number }) {
      // Burns CPU time, not wall time: on a busy machine the job takes longer, as real work would.
      // process.cpuUsage() is the whole process's, so in an execution thread (whose siblings burn
      // CPU too) it would count their time: there, and only there, the loop runs for wall time.
      const used = isMainThread ? () => { const u = process.cpuUsage(start); return u.user + u.system; } : () => (performance.now() - wallStart) * 1000;
      const start = process.cpuUsage();
      const wallStart = performance.now();
      const budgetUs = payload.ms * 1000;
      let spins = 0;
      for (;;) {
        for (let i = 0; i < 1000; i++) spins++;
        if (used() >= budgetUs) return { spins };
      }
    },
  },
  ...maintenanceHandlers,
};
