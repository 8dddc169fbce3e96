import type { SupervisorConfig } from "../platform/config.js";
import { failStartup, onShutdownSignals } from "../platform/lifecycle.js";
import { createLogger } from "../platform/logger.js";
import { logUnhandledRejections } from "../platform/guard.js";
import { Supervisor } from "./supervisor.js";
import { authLogLine, resolveAuth, type AuthSettings } from "../auth/index.js";

export async function runSupervisor(config: SupervisorConfig): Promise<void> {
  let auth: AuthSettings;
  try {
    auth = resolveAuth(config.auth);
  } catch (err) {
    failStartup(err);
  }
  const log = createLogger("bosun.supervisor");
  logUnhandledRejections(log);
  log.info({ auth: auth.on ? "on" : "off" }, authLogLine(auth));
  const supervisor = new Supervisor(config, log, auth);
  onShutdownSignals(() => supervisor.stop(), log);
  try {
    await supervisor.start();
  } catch (err) {
    failStartup(err, log);
  }
}
