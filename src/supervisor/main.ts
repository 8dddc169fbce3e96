import type { SupervisorConfig } from "../platform/config.js";
import { failStartup, onShutdownSignals } from "../platform/lifecycle.js";
import { createLogger } from "../platform/logger.js";
import { logUnhandledRejections } from "../platform/guard.js";
import { Supervisor } from "./supervisor.js";

export async function runSupervisor(config: SupervisorConfig): Promise<void> {
  const log = createLogger("bosun.supervisor");
  logUnhandledRejections(log);
  const supervisor = new Supervisor(config, log);
  onShutdownSignals(() => supervisor.stop(), log);
  try {
    await supervisor.start();
  } catch (err) {
    failStartup(err, log);
  }
}
