import type { GatewayConfig } from "../platform/config.js";
import { failStartup, onShutdownSignals, StartupError } from "../platform/lifecycle.js";
import { createLogger } from "../platform/logger.js";
import { logUnhandledRejections } from "../platform/guard.js";
import { buildGateway } from "./app.js";
import { NatsLink } from "./nats-link.js";
import { OpsFlagsView } from "../platform/ops.js";
import { AuthConfigError, authLogLine, isLoopback, resolveAuth, type AuthSettings } from "../auth/index.js";

/** A gateway others can reach with auth off would let anyone do anything: only when asked for in so many words. */
function refuseOpenExposure(config: GatewayConfig, auth: AuthSettings): void {
  if (auth.on || isLoopback(config.host) || config.insecure_no_auth) return;
  throw new AuthConfigError(`refusing to listen on ${config.host} with auth off: set BOSUN_ADMIN_KEY (auth on), listen on 127.0.0.1, or pass --insecure-no-auth`);
}

export async function runGateway(config: GatewayConfig): Promise<void> {
  let auth: AuthSettings;
  try {
    auth = resolveAuth(config.auth);
    refuseOpenExposure(config, auth);
  } catch (err) {
    failStartup(err);
  }
  const log = createLogger("bosun.gateway");
  logUnhandledRejections(log);
  log.info({ auth: auth.on ? "on" : "off", host: config.host }, authLogLine(auth));
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
