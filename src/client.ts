/** `bosun submit`: one request to the NATS API, the way any NATS client would send it. */
import { parseArgs } from "node:util";
import { connect } from "@nats-io/transport-node";
import { api, MAX_WAIT_MS } from "./contract/index.js";

const USAGE = "usage: bosun submit TYPE [PAYLOAD_JSON] [--queue Q] [--wait] [--wait-ms N] [--max-attempts N] [--timeout-ms N] [--nats URL]";

export async function runSubmit(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      queue: { type: "string" },
      wait: { type: "boolean" },
      "wait-ms": { type: "string" },
      "max-attempts": { type: "string" },
      "timeout-ms": { type: "string" },
      nats: { type: "string" },
    },
  });
  const [type, payloadText] = positionals;
  if (!type || positionals.length > 2) {
    process.stderr.write(`${USAGE}\n`);
    return 2;
  }
  let payload: unknown = {};
  if (payloadText !== undefined) {
    try {
      payload = JSON.parse(payloadText);
    } catch {
      process.stderr.write(`bosun submit: PAYLOAD is not valid JSON: ${payloadText}\n`);
      return 2;
    }
  }
  const waitMs = values["wait-ms"] !== undefined ? Number(values["wait-ms"]) : values.wait ? 60_000 : undefined;
  const body = {
    type,
    payload,
    ...(values.queue && { queue: values.queue }),
    ...(waitMs !== undefined && { wait_ms: Math.min(waitMs, MAX_WAIT_MS) }),
    ...(values["max-attempts"] && { max_attempts: Number(values["max-attempts"]) }),
    ...(values["timeout-ms"] && { timeout_ms: Number(values["timeout-ms"]) }),
  };
  const nc = await connect({ servers: values.nats ?? process.env.NATS_URL ?? "nats://127.0.0.1:4222", noAsyncTraces: true, timeout: 3000 });
  try {
    const reply = await nc.request(api.jobsSubmit, JSON.stringify(body), { timeout: (waitMs ?? 0) + 5000 });
    process.stdout.write(`${reply.string()}\n`);
    return reply.headers?.get("Nats-Service-Error-Code") ? 1 : 0;
  } finally {
    await nc.close();
  }
}
