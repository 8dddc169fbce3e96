import { connect } from "@nats-io/transport-node";
import { GatewayConfig, gatewayKeys, loadConfig } from "../platform/config.js";
import { failStartup, onShutdownSignals } from "../platform/lifecycle.js";
import { createLogger } from "../platform/logger.js";
import { logUnhandledRejections } from "../platform/guard.js";
import { buildGateway } from "./app.js";
import { natsOptions } from "../platform/nats-options.js";
import { OpsFlagsView } from "../platform/ops.js";

export async function runGateway(argv: string[]): Promise<void> {
  let config: GatewayConfig;
  try {
    config = loadConfig(GatewayConfig, gatewayKeys, argv);
  } catch (err) {
    failStartup(err);
  }
  const log = createLogger("bosun.gateway");
  logUnhandledRejections(log);
  // The gateway starts even while NATS is down and answers 503 until it is up.
  const nc = await connect({ ...natsOptions(config.nats_url, "bosun-gateway"), waitOnFirstConnect: true });
  const ops = new OpsFlagsView(log);
  ops.watchWhenReady(nc);
  const app = await buildGateway({ nc, config, log, ops });
  onShutdownSignals(async () => {
    ops.stop();
    // close() stops accepting and lets open requests finish, for at most grace_ms.
    await Promise.race([app.close(), new Promise((resolve) => setTimeout(resolve, config.grace_ms).unref())]);
    await nc.drain().catch(() => undefined);
  }, log);
  try {
    await app.listen({ host: config.host, port: config.port });
  } catch (err) {
    failStartup(err, log);
  }
}
