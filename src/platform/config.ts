/**
 * Configuration: flags over environment variables over defaults, validated
 * once at start with zod (Temporal-style: user options -> compiled options).
 * A bad value stops start-up with one clear line.
 */
import { parseArgs } from "node:util";
import { z } from "zod";
import { HTTP_REQUEST_TIMEOUT_MS, NAME_PATTERN } from "../contract/index.js";
import { DEFAULT_NATS_URL } from "./nats-options.js";

const int = (min: number, max = Number.MAX_SAFE_INTEGER) => z.coerce.number().int().min(min).max(max);
const flag = z
  .union([z.boolean(), z.enum(["true", "false", "1", "0", "on", "off"])])
  .transform((v) => v === true || v === "true" || v === "1" || v === "on");

/** on: every request needs an API key; off: development and loopback; unset: on exactly when BOSUN_ADMIN_KEY is set. */
const auth = z.enum(["on", "off"], { message: "must be on or off" }).optional();

/** One server or several, comma-separated (a cluster): each must look like nats://host:port. */
const natsUrl = z
  .string()
  .regex(/^\s*(nats|tls|ws|wss):\/\/[^\s,]+\s*(,\s*(nats|tls|ws|wss):\/\/[^\s,]+\s*)*$/, "must look like nats://host:port, or several of those comma-separated")
  .default(DEFAULT_NATS_URL);

export const SupervisorConfig = z
  .object({
    nats_url: natsUrl,
    worker_id: z.string().regex(NAME_PATTERN).optional(),
    handlers: z.string().min(1).optional(),
    builtins: flag.default(true),
    queues: z
      .string()
      .transform((s) => s.split(",").map((q) => q.trim()).filter(Boolean))
      .pipe(z.array(z.string().regex(NAME_PATTERN, "queue names are 1-64 of A-Z a-z 0-9 _ -")).min(1))
      .default(["default"]),
    min: int(0, 256).default(2),
    max: int(1, 256).default(4),
    max_executions: int(1).default(10_000),
    max_memory_mb: int(16).default(512),
    idle_timeout_ms: int(100).default(30_000),
    lease_ms: int(1000).default(15_000),
    default_timeout_ms: int(1).default(60_000),
    default_max_attempts: int(1, 100).default(3),
    default_backoff_ms: int(0).default(1000),
    default_max_backoff_ms: int(0).default(60_000),
    grace_ms: int(0).default(30_000),
    kill_grace_ms: int(0).default(500),
    max_restarts: int(0).default(10),
    restart_window_ms: int(100).default(10_000),
    heartbeat_ms: int(100).default(5000),
    /** How long a finished job (record, result, dead letter, files) is kept. */
    retention_ms: int(1000).optional(),
    /** Deprecated alias of retention_ms. */
    results_ttl_ms: int(1000).optional(),
    idempotency_window_ms: int(1000).default(24 * 3600 * 1000),
    metrics_port: int(0, 65535).optional(),
    cleanup_max_age_hours: z.coerce.number().positive().default(168),
    temp_dir: z.string().min(1).optional(),
    metrics_host: z.string().min(1).default("127.0.0.1"),
    /** Copies of every stream and bucket; default: 1 on a single server, 3 in a cluster of >= 3 nodes. */
    replicas: int(1, 5).optional(),
    auth,
  })
  .refine((c) => c.min <= c.max, { message: "--min must not exceed --max", path: ["min"] });
export type SupervisorConfig = z.infer<typeof SupervisorConfig>;

export const DEFAULT_RETENTION_MS = 7 * 24 * 3600 * 1000;
/** --retention-ms, else the deprecated --results-ttl-ms, else 7 days. */
export const retentionOf = (config: Pick<SupervisorConfig, "retention_ms" | "results_ttl_ms">): number =>
  config.retention_ms ?? config.results_ttl_ms ?? DEFAULT_RETENTION_MS;

export const GatewayConfig = z.object({
  nats_url: natsUrl,
  host: z.string().min(1).default("127.0.0.1"),
  port: int(0, 65535).default(8080),
  request_timeout_ms: int(50, 600_000).default(5000),
  body_limit_bytes: int(1024).default(1024 * 1024),
  /** The whole HTTP request (headers and body) must arrive within this, else 408. */
  http_request_timeout_ms: int(1000, 600_000).default(HTTP_REQUEST_TIMEOUT_MS),
  grace_ms: int(0).default(10_000),
  auth,
  /** Listen on a non-loopback address with auth off anyway (a gateway refuses to otherwise). */
  insecure_no_auth: flag.default(false),
});
export type GatewayConfig = z.infer<typeof GatewayConfig>;

export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

const kebab = (key: string) => key.replaceAll("_", "-");
const envName = (key: string) => (key === "nats_url" ? "NATS_URL" : `BOSUN_${key.toUpperCase()}`);

/**
 * Reads every key of `schema` from `--kebab-case` flags or `BOSUN_SNAKE_CASE`
 * variables (NATS_URL for the server), then validates.
 */
export function loadConfig<S extends z.ZodType<object>>(
  schema: S,
  keys: readonly string[],
  argv: string[],
  env: NodeJS.ProcessEnv = process.env,
): z.output<S> {
  const booleans = new Set<string>(keys.filter((k) => k === "builtins" || k === "insecure_no_auth"));
  const options = Object.fromEntries(
    keys.flatMap((k) => {
      const type = booleans.has(k) ? ("boolean" as const) : ("string" as const);
      return booleans.has(k) ? [[kebab(k), { type }], [`no-${kebab(k)}`, { type }]] : [[kebab(k), { type }]];
    }),
  );
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({ args: argv, options, allowPositionals: false, strict: true }) as { values: Record<string, string | boolean | undefined> });
  } catch (err) {
    throw new ConfigError((err as Error).message);
  }
  const raw: Record<string, unknown> = {};
  for (const key of keys) {
    const fromFlag = values[`no-${kebab(key)}`] ? false : values[kebab(key)];
    const value = fromFlag ?? env[envName(key)];
    if (value !== undefined && value !== "") raw[key] = value;
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const key = String(issue.path[0] ?? "");
    throw new ConfigError(`invalid config ${key ? `--${kebab(key)} / ${envName(key)}` : ""}: ${issue.message}`);
  }
  return parsed.data;
}

export const supervisorKeys = Object.keys(SupervisorConfig.shape);
export const gatewayKeys = Object.keys(GatewayConfig.shape);
