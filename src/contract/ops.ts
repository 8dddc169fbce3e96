/**
 * The ops (cutover) flags on the wire: what `GET /api/admin/ops` answers and
 * what `PATCH /api/admin/ops` takes. They live in the ops KV bucket, one key
 * per flag (`opsKeys` in subjects.ts).
 */
import { z } from "zod";
import { MaxConcurrency, MaxPending, name, QueueLimits, RateLimit } from "./schemas.js";

/** The ops flags, as read. */
export const OpsFlags = z.object({
  submissions_paused: z.boolean(),
  /** false: every operation tagged `compute` answers 404 (default true). */
  compute_endpoints_enabled: z.boolean(),
  queues: z.record(
    z.string(),
    QueueLimits.extend({
      submissions_paused: z.boolean(),
      /** The target the queue's new submissions go to; absent: `default`. */
      active_target: z.string().optional(),
    }),
  ),
});
export type OpsFlags = z.infer<typeof OpsFlags>;

/** A change to one queue's flags: a field left out stays as it is, `null` clears a limit. */
export const QueueOpsPatch = z
  .object({
    submissions_paused: z.boolean().optional(),
    max_concurrency: MaxConcurrency.nullable().optional(),
    rate_limit: RateLimit.nullable().optional(),
    max_pending: MaxPending.nullable().optional(),
    /** The target the queue's new submissions go to; `null`: back to `default` (as `PUT /api/targets/{target_id}/active`). */
    active_target: name("active_target").nullable().optional(),
  })
  .strict()
  .refine((p) => Object.keys(p).length > 0, { message: "a queue's patch names at least one flag" });
export type QueueOpsPatch = z.infer<typeof QueueOpsPatch>;

/** A change to the ops flags: only known flags, with the right types. */
export const OpsPatch = z
  .object({
    submissions_paused: z.boolean().optional(),
    compute_endpoints_enabled: z.boolean().optional(),
    queues: z.record(name("queue"), QueueOpsPatch).optional(),
  })
  .strict();
export type OpsPatch = z.infer<typeof OpsPatch>;
