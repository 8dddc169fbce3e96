import { connect } from "@nats-io/transport-node";
import { GatewayConfig, gatewayKeys, loadConfig } from "../platform/config.js";
import { failStartup, onShutdownSignals } from "../platform/lifecycle.js";
import { createLogger } from "../platform/logger.js";
import { logUnhandledRejections } from "../platform/guard.js";
import { buildGateway } from "./app.js";
import { natsOptions } from "../platform/nats-options.js";
import { OpsFlagsView } from "../platform/ops.js";
import { AuthConfigError, authLogLine, isLoopback, resolveAuth, type AuthSettings } from "../auth/index.js";

/** A gateway others can reach with auth off would let anyone do anything: only when asked for in so many words. */
function refuseOpenExposure(config: GatewayConfig, auth: AuthSettings): void {
  if (auth.on || isLoopback(config.host) || config.insecure_no_auth) return;
  throw new AuthConfigError(`refusing to listen on ${config.host} with auth off: set BOSUN_ADMIN_KEY (auth on), listen on 127.0.0.1, or pass --insecure-no-auth`);
}

export async function runGateway(argv: string[]): Promise<void> {
  let config: GatewayConfig;
  let auth: AuthSettings;
  try {
    config = loadConfig(GatewayConfig, gatewayKeys, argv);
    auth = resolveAuth(config.auth);
    refuseOpenExposure(config, auth);
  } catch (err) {
    failStartup(err);
  }
  const log = createLogger("bosun.gateway");
  logUnhandledRejections(log);
  log.info({ auth: auth.on ? "on" : "off", host: config.host }, authLogLine(auth));
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
