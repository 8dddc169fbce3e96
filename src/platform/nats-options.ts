/**
 * How every Bosun process connects to NATS (supervisor, gateway, CLI,
 * execution processes, dev, bench and test helpers). No runtime imports:
 * execution processes load it without loading the NATS client.
 */
import type { ConnectionOptions } from "@nats-io/nats-core";

export const DEFAULT_NATS_URL = "nats://127.0.0.1:4222";

/**
 * NATS_URL may list several servers, comma-separated: nats.js keeps only
 * the last URL of one comma-joined string, so it gets an array.
 */
export function natsServers(url: string): string[] {
  return url
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
}

/**
 * A ping every 2 s, stale after 2 unanswered: a half-open link (a node cut
 * off, a dead peer that never sent FIN) is noticed in 4-6 s instead of
 * nats.js's default 4 minutes, and the client moves to another server.
 */
export const PING_INTERVAL_MS = 2000;
export const MAX_PINGS_OUT = 2;

/** The connection options of every Bosun process (supervisor, gateway, CLI, execution processes). */
export function natsOptions(url: string, name: string): ConnectionOptions {
  return {
    servers: natsServers(url),
    name,
    // nats.js builds two Error objects per request for async stack traces otherwise.
    noAsyncTraces: true,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    pingInterval: PING_INTERVAL_MS,
    maxPingOut: MAX_PINGS_OUT,
    timeout: 3000,
    ...natsCredentials(),
  };
}

/**
 * The NATS user of this process (docs/security.md: one per role), from
 * NATS_USER / NATS_PASSWORD; none when NATS_USER is unset.
 */
export function natsCredentials(env: NodeJS.ProcessEnv = process.env): { user: string; pass: string } | Record<string, never> {
  return env.NATS_USER ? { user: env.NATS_USER, pass: env.NATS_PASSWORD ?? "" } : {};
}
