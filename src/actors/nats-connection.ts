/**
 * The execution actor's own NATS connection (maintenance tasks, ctx.files),
 * opened on first use and shared by every run of the actor: most actors
 * never open one, and none opens two. A process or a thread gets its own
 * (module state is per isolate).
 */
import type { NatsConnection } from "@nats-io/nats-core";
import { DEFAULT_NATS_URL, natsOptions } from "../platform/nats-options.js";

let connection: Promise<NatsConnection> | undefined;

export function actorConnection(): Promise<NatsConnection> {
  connection ??= import("@nats-io/transport-node").then(({ connect }) => connect(natsOptions(process.env.NATS_URL ?? DEFAULT_NATS_URL, "bosun-actor")));
  // A failed connect is not kept: the next use tries again.
  connection.catch(() => (connection = undefined));
  return connection;
}
