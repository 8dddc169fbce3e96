#!/usr/bin/env node
/** The `bosun` command. */
import { runDev } from "./dev.js";
import { runGateway } from "./gateway/main.js";
import { clientCommands, runClientCommand } from "./client.js";
import { runSupervisor } from "./supervisor/main.js";

const HELP = `bosun: an actor-model job runtime over NATS

  bosun dev [supervisor flags]       nats-server (if none answers) + a supervisor + a gateway on :8080
  bosun supervisor [--handlers F] [--queues a,b] [--min N] [--max N] [--metrics-port P] [...]
  bosun gateway [--port 8080] [--request-timeout-ms 5000]
  bosun submit TYPE [PAYLOAD_JSON] [--wait] [--queue Q]
  bosun workers | queue               live supervisors and their pools; per-queue counts
  bosun ops get | ops set [QUEUE.]submissions_paused=true|false
  bosun status JOB_ID | watch JOB_ID  a job's status; its state changes until it ends
  (--json on the client commands prints JSON; --nats URL or NATS_URL names the server)

Every supervisor/gateway flag also reads from BOSUN_<FLAG> (e.g. BOSUN_MAX=8).
See README.md for all flags.`;

const [command, ...rest] = process.argv.slice(2);
if (command === "dev") {
  process.exitCode = await runDev(rest);
} else if (command === "supervisor") {
  await runSupervisor(rest);
} else if (command === "gateway") {
  await runGateway(rest);
} else if (command && Object.hasOwn(clientCommands, command)) {
  process.exitCode = await runClientCommand(command, rest);
} else if (command === undefined || command === "help" || command === "--help") {
  process.stdout.write(`${HELP}\n`);
} else {
  process.stderr.write(`bosun: unknown command "${command}"\n${HELP}\n`);
  process.exitCode = 2;
}
