/**
 * The one place where the client commands talk to Bosun: the typed client
 * (`bosun/client`, src/client/) over NATS. Its errors become one-line
 * CommandErrors with the CLI's exit codes and a hint where one helps.
 */
import type { BosunClient } from "../client/index.js";
import { BosunError } from "../contract/errors.js";
import { DEFAULT_NATS_URL } from "../platform/nats-options.js";
import { CommandError, ExitCode } from "./errors.js";

const CONNECT_TIMEOUT_MS = 3000;
const REQUEST_TIMEOUT_MS = 5000;

export const natsUrlOf = (flag: string | undefined): string => flag ?? process.env.NATS_URL ?? DEFAULT_NATS_URL;

/** Connects, runs `work` with the client, closes. BOSUN_API_KEY, when set, goes with every request. */
export async function withApi<T>(natsFlag: string | undefined, work: (api: BosunClient) => Promise<T>): Promise<T> {
  const url = natsUrlOf(natsFlag);
  // Loaded here, not at the top: `bosun --help` and usage errors stay quick.
  const { connect } = await import("../client/index.js");
  let api: BosunClient;
  try {
    api = await connect({ servers: url, key: process.env.BOSUN_API_KEY || undefined, timeoutMs: REQUEST_TIMEOUT_MS, nats: { timeout: CONNECT_TIMEOUT_MS } });
  } catch (err) {
    throw new CommandError(
      `cannot reach NATS at ${url} (${(err as Error).message}). Is nats-server running? \`bosun dev\` starts one; --nats URL or NATS_URL names another`,
      ExitCode.unavailable,
      { cause: err },
    );
  }
  try {
    return await work(api);
  } catch (err) {
    throw commandError(err, url);
  } finally {
    await api.close();
  }
}

function commandError(err: unknown, url: string): unknown {
  if (!(err instanceof BosunError)) return err;
  if (err.code !== "unavailable") return new CommandError(`${err.code}: ${err.message}`, ExitCode.failed, { cause: err });
  const message = /no supervisor is answering/.test(err.message) ? `no supervisor serves the Bosun API on ${url} (start one: bosun supervisor, or bosun dev)` : `${err.code}: ${err.message} (${url})`;
  return new CommandError(message, ExitCode.unavailable, { cause: err });
}
