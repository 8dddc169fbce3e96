/**
 * `bosun supervisor`, `bosun gateway` and `bosun dev`. Their flags are made
 * from the config schemas (src/platform/config.ts), so every setting has a
 * flag, a BOSUN_* variable and a line in --help, and none is parsed twice.
 */
import { Option, type Command } from "commander";
import type { z } from "zod";
import { ComputeWorkerConfig, configOptions, GatewayConfig, resolveConfig, SupervisorConfig, type ConfigOption } from "../platform/config.js";

type FlagValues = Record<string, string | boolean | undefined>;

const camel = (key: string) => key.replace(/_([a-z])/g, (_m, c: string) => c.toUpperCase());
const shown = (value: unknown) => (Array.isArray(value) ? value.join(",") : String(value));

/** One option per config key; returns a reader of the flags given, by config key. */
function addConfigOptions(command: Command, options: ConfigOption[]): (parsed: Record<string, unknown>) => FlagValues {
  for (const o of options) {
    const defaultText = o.default === undefined || o.boolean ? "" : ` (default ${shown(o.default)})`;
    const help = `${o.description}${defaultText}; env ${o.env}`;
    if (o.boolean) {
      command.addOption(new Option(o.flag, help));
      command.addOption(new Option(`--no-${o.flag.slice(2)}`, `the opposite of ${o.flag}`));
    } else {
      command.addOption(new Option(`${o.flag} <value>`, help));
    }
  }
  return (parsed) => Object.fromEntries(options.map((o) => [o.key, parsed[camel(o.key)] as string | boolean | undefined]));
}

/** The flags given, as a supervisor's command line again (dev passes them on). */
const toArgs = (options: ConfigOption[], values: FlagValues): string[] =>
  options.flatMap((o) => {
    const value = values[o.key];
    if (value === undefined) return [];
    if (o.boolean) return [value ? o.flag : `--no-${o.flag.slice(2)}`];
    return [o.flag, String(value)];
  });

const SERVER_ENV_NOTE = "\nEvery flag also reads from its BOSUN_<FLAG> variable (flags win); NATS_URL names the server.";

/** A command whose flags are its config schema's keys. */
function serverCommand<S extends z.ZodObject>(program: Command, name: string, description: string, schema: S, run: (config: z.output<S>) => Promise<void>): void {
  const command = program.command(name).description(description).addHelpText("after", SERVER_ENV_NOTE);
  const read = addConfigOptions(command, configOptions(schema));
  command.action(async (opts: Record<string, unknown>) => run(resolveConfig(schema, read(opts))));
}

export function addServerCommands(program: Command): void {
  const supervisorOptions = configOptions(SupervisorConfig);
  const gatewayOptions = configOptions(GatewayConfig);

  // Each server's modules load only when it runs: --help and the client commands stay quick.
  serverCommand(program, "supervisor", "a supervisor: a pool of execution processes that runs jobs and serves the NATS API", SupervisorConfig, async (config) =>
    (await import("../supervisor/main.js")).runSupervisor(config),
  );
  serverCommand(
    program,
    "compute-worker",
    "a remote compute server: leases jobs from a gateway over HTTP (no NATS) and runs them in an execution-process pool",
    ComputeWorkerConfig,
    async (config) => (await import("../compute-worker/index.js")).runComputeWorker(config),
  );
  serverCommand(program, "gateway", "the HTTP gateway: each call becomes one NATS request", GatewayConfig, async (config) =>
    (await import("../gateway/main.js")).runGateway(config),
  );

  const devGatewayOptions = gatewayOptions.filter((o) => o.key === "port" || o.key === "host");
  const dev = program
    .command("dev")
    .description("nats-server (unless one answers at NATS_URL) + one supervisor + one gateway, for a laptop")
    .option("--watch", "restart the supervisor when the handler module changes (and rebuild a checkout's src/)")
    .option("--data-dir <dir>", "where dev keeps nats-server's store, config and log", ".bosun")
    .addOption(new Option("--cluster <nodes>", "a JetStream cluster of this many local nats-servers instead of one (the shipped nats-cluster/ configuration)").choices(["3"]))
    .addHelpText(
      "after",
      "\nThe gateway's --port and --host, and every supervisor flag, are accepted; BOSUN_* variables too." +
        "\nCtrl-C drains (a countdown while jobs run); a second Ctrl-C stops at once." +
        "\nExit codes: 0 stopped cleanly, 1 something failed to start or died, 2 bad flags, 130 forced stop.",
    );
  const readDevGateway = addConfigOptions(dev, devGatewayOptions);
  const readDevSupervisor = addConfigOptions(dev, supervisorOptions);
  dev.action(async (opts: Record<string, unknown>) => {
    const supervisorFlags = readDevSupervisor(opts);
    const supervisorConfig = resolveConfig(SupervisorConfig, supervisorFlags);
    const gatewayConfig = resolveConfig(GatewayConfig.pick({ host: true, port: true }), readDevGateway(opts));
    const { runDev } = await import("../dev/index.js");
    const code = await runDev({
      natsUrl: supervisorConfig.nats_url,
      supervisorArgs: toArgs(supervisorOptions, supervisorFlags),
      metricsPort: supervisorConfig.metrics_port,
      host: gatewayConfig.host,
      port: gatewayConfig.port,
      handlers: supervisorConfig.handlers,
      watch: opts.watch === true,
      dataDir: String(opts.dataDir),
      cluster: opts.cluster !== undefined,
      graceMs: supervisorConfig.grace_ms,
    });
    // Everything dev started is gone by now; a probe of a port that never answered may still hold the loop.
    process.exit(code);
  });
}
