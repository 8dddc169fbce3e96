/**
 * Which NATS failures mean "try again shortly" rather than "this failed":
 * a stream or consumer without a leader (an election, 4-16 s in a cluster),
 * no responder on a subject, a request or PubAck that timed out, a
 * connection between servers. They answer 503 `unavailable` with
 * Retry-After, never 500.
 */
import { errors } from "@nats-io/nats-core";
import { JetStreamApiError } from "@nats-io/jetstream";
import { BosunError } from "../contract/index.js";

/**
 * JetStream's err_codes for "no leader / cluster busy": 10008 temporarily
 * unavailable, 10009 not the leader, 10118/10119 stream/consumer offline.
 */
const UNAVAILABLE_ERR_CODES = new Set([10008, 10009, 10118, 10119]);

/** A transient failure as a BosunError("unavailable"), or undefined when `err` is not one. */
export function unavailableOf(err: unknown): BosunError | undefined {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    if (e instanceof BosunError) return e.code === "unavailable" ? e : undefined;
    if (isTransient(e)) return new BosunError("unavailable", transientMessage(e), undefined, { cause: err });
  }
  return undefined;
}

function isTransient(e: Error): boolean {
  if (e instanceof errors.TimeoutError || e instanceof errors.NoRespondersError) return true;
  if (e instanceof errors.RequestError && e.isNoResponders()) return true;
  // nats.js reports a JetStream API request nobody answered as "not enabled" (the class is not exported):
  // in a cluster that is a leaderless moment.
  if (e.name === "JetStreamNotEnabled") return true;
  if (e instanceof JetStreamApiError) return e.status === 503 || UNAVAILABLE_ERR_CODES.has(e.code);
  if (e instanceof errors.ConnectionError || e instanceof errors.ClosedConnectionError || e instanceof errors.DrainingConnectionError) return true;
  return (e as { transient?: unknown }).transient === true;
}

function transientMessage(e: Error): string {
  if (e instanceof errors.ConnectionError || e instanceof errors.ClosedConnectionError || e instanceof errors.DrainingConnectionError) return "NATS is unreachable; retry shortly";
  return "JetStream is electing a leader or unreachable; retry shortly";
}

/** JetStream's "wrong last sequence": a KV create on an existing key, or an update at a stale revision. */
const WRONG_LAST_SEQUENCE = 10071;

/** A compare-and-set the bucket refused: someone else wrote the key first. */
export const lostRace = (err: unknown): boolean =>
  (err as { api_error?: { err_code?: number } }).api_error?.err_code === WRONG_LAST_SEQUENCE || /wrong last sequence/i.test(String((err as Error)?.message));
