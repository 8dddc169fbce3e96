/**
 * Workload 3, the limit: raw JetStream on the same nats-server, no Bosun.
 * Publish with acks (js.publish awaits the PubAck) with the same number in
 * flight as the job submits, then consume with acks (explicit ack per
 * message) the same number of messages, from a file-storage work-queue
 * stream like Bosun's jobs stream. Messages are the size of a job envelope.
 */
import { connect } from "@nats-io/transport-node";
import { AckPolicy, jetstream, jetstreamManager, RetentionPolicy, StorageType, type ConsumeOptions } from "@nats-io/jetstream";
import { freshName, finishTimeoutMs, type Ctx, type Figures } from "../context.js";
import { withTimeout } from "../procs.js";
import { nowMs, pump } from "../stats.js";

const encoder = new TextEncoder();

/** About the bytes of one Bosun job envelope with a small payload. */
const message = (i: number): Uint8Array =>
  encoder.encode(
    JSON.stringify({
      job_id: `bench${String(i).padStart(17, "0")}`,
      type: "noop",
      queue: "bench",
      tenant: null,
      payload: { i, tag: "bench" },
      timeout_ms: 60_000,
      max_attempts: 3,
      backoff: { type: "exponential", delay_ms: 1000, max_delay_ms: 60_000 },
      priority: 0,
      correlation_id: "c".repeat(22),
      created_at: new Date().toISOString(),
    }),
  );

/** Publishes n messages with acks, `inflight` outstanding; returns ms. */
async function publish(url: string, subject: string, n: number, inflight: number, noAsyncTraces: boolean): Promise<number> {
  const nc = await connect({ servers: url, noAsyncTraces });
  try {
    const js = jetstream(nc);
    const t0 = nowMs();
    await pump(n, inflight, async (i) => {
      await js.publish(subject, message(i));
    });
    return nowMs() - t0;
  } finally {
    await nc.close();
  }
}

/** Consumes n messages from a durable pull consumer, acking each; returns ms (until the acks are flushed). */
async function consume(url: string, stream: string, durable: string, n: number, opts: ConsumeOptions, started?: (t0: number) => void): Promise<number> {
  const nc = await connect({ servers: url, noAsyncTraces: true });
  try {
    const consumer = await jetstream(nc).consumers.get(stream, durable);
    const t0 = nowMs();
    started?.(t0);
    const messages = await consumer.consume(opts);
    let seen = 0;
    await withTimeout(
      (async () => {
        for await (const m of messages) {
          m.ack();
          if (++seen >= n) break;
        }
      })(),
      finishTimeoutMs(n),
      `raw JetStream: ${n} messages consumed`,
    );
    await nc.flush();
    return nowMs() - t0;
  } finally {
    await nc.close();
  }
}

export async function rawJetStream(ctx: Ctx): Promise<Figures> {
  const { throughput: n, inflight } = ctx.counts;
  const stream = freshName("BENCH_RAW").toUpperCase();
  const subjects = { defaults: `${stream}.defaults`, fast: `${stream}.fast`, pipelined: `${stream}.pipelined` };
  const jsm = await jetstreamManager(ctx.nc);
  await jsm.streams.add({ name: stream, subjects: [`${stream}.>`], retention: RetentionPolicy.Workqueue, storage: StorageType.File });
  try {
    for (const [name, subject] of Object.entries(subjects)) {
      await jsm.consumers.add(stream, { durable_name: name, filter_subject: subject, ack_policy: AckPolicy.Explicit });
    }
    const pubDefaults = await publish(ctx.natsUrl, subjects.defaults, n, inflight, false);
    const pubFast = await publish(ctx.natsUrl, subjects.fast, n, inflight, true);
    const consDefaults = await consume(ctx.natsUrl, stream, "defaults", n, {});
    const cons1000 = await consume(ctx.natsUrl, stream, "fast", n, { max_messages: 1000 });
    // Both at once, as a runtime does: a consumer drains while the publisher fills.
    let consumeStart = 0;
    const consuming = consume(ctx.natsUrl, stream, "pipelined", n, { max_messages: 1000 }, (t0) => (consumeStart = t0));
    while (consumeStart === 0) await new Promise((r) => setTimeout(r, 1));
    const t0 = nowMs();
    await publish(ctx.natsUrl, subjects.pipelined, n, inflight, true);
    await consuming;
    const pipelined = nowMs() - t0;

    const rate = (ms: number) => (n * 1000) / ms;
    return {
      "js.publish_defaults": rate(pubDefaults),
      "js.publish_fast": rate(pubFast),
      "js.consume_defaults": rate(consDefaults),
      "js.consume_1000": rate(cons1000),
      // The bound: every message published with an ack, then consumed with an ack, best settings.
      "js.limit": rate(pubFast + cons1000),
      "js.pipelined": rate(pipelined),
    };
  } finally {
    await jsm.streams.delete(stream).catch(() => undefined);
  }
}
