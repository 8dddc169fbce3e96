/**
 * Removing finished jobs ahead of their retention (the cleanup_runs task).
 * Their retention itself needs no task: the results and dead-letter streams
 * have max_age = --retention-ms. Both streams are in the order jobs ended,
 * so "everything that ended before the cutoff" is a prefix of each: found by
 * halving (a few direct gets), removed by one purge request per stream.
 * Nothing is loaded into memory, and the time per job is the server's.
 */
import type { JetStreamManager } from "@nats-io/jetstream";
import { streams } from "../contract/index.js";
import { readFirstFrom } from "../platform/stream-reads.js";

/** The first sequence whose message was stored at or after `cutoff` (epoch ms); last_seq + 1 if none. */
export async function boundary(jsm: JetStreamManager, stream: string, cutoff: number): Promise<{ seq: number; first: number } | null> {
  const { state } = await jsm.streams.info(stream);
  if (state.messages === 0) return null;
  let lo = state.first_seq;
  let hi = state.last_seq + 1;
  while (lo < hi) {
    const mid = Math.floor((lo + hi) / 2);
    const msg = await readFirstFrom(jsm, stream, mid);
    if (!msg) hi = mid;
    else if (msg.time.getTime() < cutoff) lo = msg.seq + 1;
    else hi = Math.min(mid, msg.seq);
  }
  return { seq: lo, first: state.first_seq };
}

export interface CleanupReport {
  records_removed: number;
  dead_letters_removed: number;
}

/** Removes every job that ended before `cutoff`: its final record (with its result) and its dead letter. */
export async function removeFinishedBefore(jsm: JetStreamManager, cutoff: number): Promise<CleanupReport> {
  const purgeBefore = async (stream: string): Promise<number> => {
    const b = await boundary(jsm, stream, cutoff);
    if (!b || b.seq <= b.first) return 0;
    return (await jsm.streams.purge(stream, { seq: b.seq })).purged;
  };
  // Dead letters first: a run stopped between the two leaves a final record, never a letter without one.
  const deadLetters = await purgeBefore(streams.dead);
  const records = await purgeBefore(streams.results);
  return { records_removed: records, dead_letters_removed: deadLetters };
}
