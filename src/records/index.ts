/**
 * The job record model: where a job's state is written, how its status is
 * read back, how jobs are listed, and how finished jobs go. Used by the
 * supervisor (intake, runner, scheduler), the maintenance tasks and the
 * gateway's event stream.
 */
export * from "./status.js";
export * from "./decode.js";
export * from "./store.js";
export * from "./lanes.js";
export * from "./listing.js";
export * from "./retention.js";
export * from "./idempotency.js";
export * from "./cancels.js";
