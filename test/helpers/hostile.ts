/**
 * What the hostile-input and fuzz tests share: the subjects Bosun reads
 * (from the contract, so the tests follow a rename), a valid job envelope
 * to corrupt, the contract's error shape, and JetStream consumer counts.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { DEFAULT_TARGET, ErrorReply, laneCode } from "../../src/contract/index.js";

export {
  api,
  buckets,
  controlSubject,
  deadSubject,
  heartbeatSubject,
  httpRoutes,
  jobSubject,
  kvKeySubject,
  laneCode,
  operations,
  resultSubject,
  scheduledSubject,
  streams,
} from "../../src/contract/index.js";

const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/** A job id as Bosun gives them out, in the lane of a queue's plain jobs (so that lane's consumer delivers it). */
export function issuedJobId(queue: string): string {
  let nuid = "";
  for (let i = 0; i < 22; i++) nuid += BASE62[Math.floor(Math.random() * 62)];
  return laneCode(queue, DEFAULT_TARGET, "n", null) + nuid;
}

/** A job message as Bosun writes it, valid unless `over` says otherwise. */
export function envelope(queue: string, over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    job_id: issuedJobId(queue),
    type: "echo",
    queue,
    tenant: null,
    payload: {},
    timeout_ms: 5000,
    max_attempts: 1,
    backoff: { type: "fixed", delay_ms: 0 },
    priority: 0,
    correlation_id: "injected",
    created_at: new Date().toISOString(),
    generation: 0,
    errors: [],
    owner: null,
    started_at: null,
    ...over,
  };
}

/** The error of a body in the contract's shape (`{"error": {"code", "message"}}` with a known code), else undefined. */
export function contractError(text: string): { code: string; message: string } | undefined {
  try {
    const parsed = ErrorReply.safeParse(JSON.parse(text));
    return parsed.success && parsed.data.error.message.length > 0 ? parsed.data.error : undefined;
  } catch {
    return undefined;
  }
}

/** Consumers on the streams a read request could leave one on. */
export async function readConsumers(nc: NatsConnection): Promise<number> {
  const jsm: JetStreamManager = await jetstreamManager(nc);
  let n = 0;
  for (const stream of [`KV_bosun_jobs`, "BOSUN_RESULTS", "BOSUN_DEAD"]) n += (await jsm.streams.info(stream)).state.consumer_count;
  return n;
}
