/**
 * The one place where the client commands talk to Bosun: a NATS connection
 * and typed requests by operation name (src/contract/operations.ts). The
 * typed client library will take this file's place; the commands only see
 * `ApiSession`.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import type { z } from "zod";
import { BosunError, operations, type JobEvent, type OperationName } from "../contract/index.js";
import { CommandError, ExitCode } from "./errors.js";

export const DEFAULT_NATS_URL = "nats://127.0.0.1:4222";
const CONNECT_TIMEOUT_MS = 3000;
const REQUEST_TIMEOUT_MS = 5000;

type RequestOf<K extends OperationName> = z.input<(typeof operations)[K]["request"]>;
type ReplyOf<K extends OperationName> = z.output<(typeof operations)[K]["response"]>;

export interface ApiSession {
  readonly url: string;
  /** One request to the `bosun` service; an error reply or no reply becomes a CommandError. */
  request<K extends OperationName>(operation: K, body: RequestOf<K>, timeoutMs?: number): Promise<ReplyOf<K>>;
  /** A job's state changes and progress until it ends (or `signal` aborts). */
  events(jobId: string, signal: AbortSignal): AsyncIterable<{ data: JobEvent }>;
}

export const natsUrlOf = (flag: string | undefined): string => flag ?? process.env.NATS_URL ?? DEFAULT_NATS_URL;

/** Connects, runs `work`, closes. NATS down is one line naming the URL, with a hint. */
export async function withApi<T>(natsFlag: string | undefined, work: (api: ApiSession) => Promise<T>): Promise<T> {
  const url = natsUrlOf(natsFlag);
  // Loaded here, not at the top: `bosun --help` and usage errors stay quick.
  const [{ connect }, nats] = await Promise.all([import("@nats-io/transport-node"), natsModules()]);
  let nc: NatsConnection;
  try {
    nc = await connect({ servers: url, noAsyncTraces: true, timeout: CONNECT_TIMEOUT_MS });
  } catch (err) {
    throw new CommandError(
      `cannot reach NATS at ${url} (${(err as Error).message}). Is nats-server running? \`bosun dev\` starts one; --nats URL or NATS_URL names another`,
      ExitCode.unavailable,
      { cause: err },
    );
  }
  try {
    return await work(session(nc, url, nats));
  } finally {
    await nc.close();
  }
}

const natsModules = async () => {
  const [core, events, platform] = await Promise.all([import("@nats-io/nats-core"), import("../gateway/events.js"), import("../platform/nats.js")]);
  return { errors: core.errors, jobEvents: events.jobEvents, readReply: platform.readReply };
};

function session(nc: NatsConnection, url: string, { errors, jobEvents, readReply }: Awaited<ReturnType<typeof natsModules>>): ApiSession {
  return {
    url,
    async request(operation, body, timeoutMs = REQUEST_TIMEOUT_MS) {
      const { subject } = operations[operation];
      let reply;
      try {
        reply = await nc.request(subject, JSON.stringify(body), { timeout: timeoutMs });
      } catch (err) {
        if (err instanceof errors.RequestError && err.isNoResponders()) {
          throw new CommandError(`no supervisor serves the Bosun API on ${url} (start one: bosun supervisor, or bosun dev)`, ExitCode.unavailable, { cause: err });
        }
        if (err instanceof errors.TimeoutError) {
          throw new CommandError(`no reply from a supervisor within ${timeoutMs} ms (${subject} on ${url})`, ExitCode.unavailable, { cause: err });
        }
        throw err;
      }
      try {
        return readReply(reply);
      } catch (err) {
        if (!(err instanceof BosunError)) throw err;
        throw new CommandError(`${err.code}: ${err.message}`, err.code === "unavailable" ? ExitCode.unavailable : ExitCode.failed, { cause: err });
      }
    },
    events: (jobId, signal) => jobEvents(nc, jobId, signal) as AsyncIterable<{ data: JobEvent }>,
  };
}
