import { KvWatchInclude, type KV, type KvWatchEntry } from "@nats-io/kv";
import type { QueuedIterator } from "@nats-io/nats-core";
import type { Logger } from "pino";
import { forEachGuarded } from "../platform/guard.js";

/**
 * Follows every key of a bucket: `visit` sees each stored value (and each
 * delete) once, then every change. Resolves once the stored values have
 * been visited, so a caller starts with the whole bucket known. A visit
 * that throws is logged and the watch goes on (an error boundary: anyone
 * may write junk into a bucket).
 */
export async function followBucket(kv: KV, log: Logger, what: string, visit: (entry: KvWatchEntry) => void): Promise<QueuedIterator<KvWatchEntry>> {
  const empty = (await kv.status()).values === 0;
  const watch = await kv.watch({ include: KvWatchInclude.LastValue });
  let loaded!: () => void;
  const initialized = new Promise<void>((resolve) => (loaded = resolve));
  if (empty) loaded();
  void forEachGuarded(watch, log, `${what} watch`, (entry) => {
    // delta counts the stored values still to come; updates after the scan have none.
    if (!entry.delta) loaded();
    visit(entry);
  });
  await initialized;
  return watch;
}
