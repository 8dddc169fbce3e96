#!/usr/bin/env node
/** The `bosun` command: dev | supervisor | gateway | submit. */
import { runDev } from "./dev.js";
import { runGateway } from "./gateway/main.js";
import { runSubmit } from "./client.js";
import { runSupervisor } from "./supervisor/main.js";

const HELP = `bosun: an actor-model job runtime over NATS

  bosun dev [supervisor flags]       nats-server (if none answers) + a supervisor + a gateway on :8080
  bosun supervisor [--handlers F] [--queues a,b] [--min N] [--max N] [...]
  bosun gateway [--port 8080] [--request-timeout-ms 5000]
  bosun submit TYPE [PAYLOAD_JSON] [--wait] [--queue Q]

Every flag also reads from BOSUN_<FLAG> (e.g. BOSUN_MAX=8); NATS_URL names the server.
See README.md for all flags.`;

const [command, ...rest] = process.argv.slice(2);
switch (command) {
  case "dev":
    process.exitCode = await runDev(rest);
    break;
  case "supervisor":
    await runSupervisor(rest);
    break;
  case "gateway":
    await runGateway(rest);
    break;
  case "submit":
    process.exitCode = await runSubmit(rest).catch((err: unknown) => {
      process.stderr.write(`bosun submit: ${(err as Error).message}\n`);
      return 1;
    });
    break;
  case undefined:
  case "help":
  case "--help":
    process.stdout.write(`${HELP}\n`);
    break;
  default:
    process.stderr.write(`bosun: unknown command "${command}"\n${HELP}\n`);
    process.exitCode = 2;
}
