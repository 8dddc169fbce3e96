import type { GatewayConfig } from "../platform/config.js";
import { failStartup, onShutdownSignals, StartupError } from "../platform/lifecycle.js";
import { createLogger } from "../platform/logger.js";
import { logUnhandledRejections } from "../platform/guard.js";
import { buildGateway } from "./app.js";
import { NatsLink } from "./nats-link.js";
import { OpsFlagsView } from "../platform/ops.js";

export async function runGateway(config: GatewayConfig): Promise<void> {
  const log = createLogger("bosun.gateway");
  logUnhandledRejections(log);
  // Listens at once, NATS or not: /healthz answers, the API 503s until NATS is reachable.
  const nats = new NatsLink(config.nats_url, log);
  const ops = new OpsFlagsView(log);
  const app = await buildGateway({ nats, config, log, ops });
  onShutdownSignals(async () => {
    ops.stop();
    // close() stops accepting and lets open requests finish, for at most grace_ms.
    await Promise.race([app.close(), new Promise((resolve) => setTimeout(resolve, config.grace_ms).unref())]);
    await nats.close();
  }, log);
  try {
    await app.listen({ host: config.host, port: config.port });
    void nats.connect().then((nc) => ops.watchWhenReady(nc), () => undefined);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "EADDRINUSE") failStartup(new StartupError(`port ${config.port} on ${config.host} is taken (--port / BOSUN_PORT)`), log);
    if (code === "EADDRNOTAVAIL") failStartup(new StartupError(`cannot listen on ${config.host}: no such address here (--host / BOSUN_HOST)`), log);
    failStartup(err, log);
  }
}
