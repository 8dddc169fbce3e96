/** `bosun keys create|list|revoke`: API keys (an admin key in BOSUN_API_KEY when auth is on). */
import type { Command } from "commander";
import type { KeyInfo } from "../contract/index.js";
import { CommandError, ExitCode } from "./errors.js";
import { withApi } from "./nats-request.js";
import { clientOptions, print, table, type ClientOptions } from "./output.js";

const rows = (keys: KeyInfo[]) =>
  table(keys.map((k) => ({ key_id: k.key_id, tenant: k.tenant ?? "", admin: k.admin ? "yes" : "", label: k.label ?? "", created: k.created_at })));

export function addKeyCommands(program: Command): void {
  const keys = program.command("keys").description("API keys: create (shown once), list (no secrets), revoke (everywhere within a second)");
  clientOptions(
    keys
      .command("create")
      .description("a key for one tenant (--tenant NAME) or an admin key (--admin); prints the key once")
      .option("--tenant <name>", "the tenant the key acts for")
      .option("--admin", "an admin key")
      .option("--label <text>", "who holds it, what for (shown in listings)"),
  ).action(async (opts: ClientOptions & { tenant?: string; admin?: boolean; label?: string }) => {
    if ((opts.tenant === undefined) === (opts.admin !== true)) throw new CommandError("give either --tenant NAME or --admin", ExitCode.usage);
    const request = { ...(opts.admin ? { admin: true } : { tenant: opts.tenant }), ...(opts.label !== undefined && { label: opts.label }) };
    const created = await withApi(opts.nats, (api) => api.keysCreate(request));
    print(opts.json, created, () =>
      [created.key, `key_id ${created.key_id}, ${created.admin ? "admin" : `tenant ${created.tenant}`}: store the key now, it is not shown again`].join("\n"),
    );
  });
  clientOptions(keys.command("list").description("every key, without secrets")).action(async (opts: ClientOptions) => {
    const { keys: list } = await withApi(opts.nats, (api) => api.keysList());
    print(opts.json, list, () => rows(list));
  });
  clientOptions(keys.command("revoke").description("revoke a key by its key_id").argument("<key_id>", "from bosun keys list")).action(
    async (keyId: string, opts: ClientOptions) => {
      const reply = await withApi(opts.nats, (api) => api.keysRevoke({ key_id: keyId }));
      print(opts.json, reply, () => `revoked ${reply.key_id}`);
    },
  );
}
