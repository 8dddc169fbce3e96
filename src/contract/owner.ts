/** Kept free of zod: the dashboard's bundle imports it. */
import type { Owner } from "./schemas.js";

/** One line naming where a job ran, for people (CLI, dashboard). */
export const ownerText = (owner: Owner): string =>
  "server_id" in owner ? `compute server ${owner.server_id}` : `${owner.worker_id}, pid ${owner.pid}${owner.thread_id !== undefined ? ` thread ${owner.thread_id}` : ""}`;
