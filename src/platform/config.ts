/**
 * Configuration: flags over environment variables over defaults, validated
 * once at start with zod (Temporal-style: user options -> compiled options).
 * A bad value stops start-up with one clear line.
 */
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

/** The execution-actor pool: the same flags for a supervisor and a compute worker. */
const poolFields = {
  handlers: z.string().min(1).optional().describe("a handler module (export default defineHandlers({...}))"),
  builtins: flag.default(true).describe("serve the built-in job types (echo, sleep, ...); --no-builtins turns them off"),
  // Worker threads give up OS-level memory isolation for speed: for trusted handlers.
  isolation: z
    .enum(["process", "thread"])
    .default("process")
    .describe("what runs jobs: child processes (OS isolation) or worker threads (faster; trusted handlers)"),
  min: int(0, 256).default(2).describe("execution actors (processes or threads) kept up"),
  max: int(1, 256).default(4).describe("execution actors at most (jobs running at once)"),
  max_executions: int(1).default(10_000).describe("recycle an execution actor after this many jobs"),
  max_memory_mb: int(16).default(512).describe("recycle a process whose RSS (a thread: whose heap) passed this after a job"),
  idle_timeout_ms: int(100).default(30_000).describe("retire idle actors above --min after this long"),
  grace_ms: int(0).default(30_000).describe("on SIGTERM, how long running jobs may finish before they are killed and handed back"),
  kill_grace_ms: int(0).default(500).describe("on timeout or cancel, time between ctx.signal aborting and SIGKILL (a thread: terminate())"),
  max_restarts: int(0).default(10).describe("crashes per --restart-window-ms restarted at once; past it spawning backs off"),
  restart_window_ms: int(100).default(10_000).describe("the window of --max-restarts"),
};

export const SupervisorConfig = z
  .object({
    nats_url: natsUrl.describe("the NATS server(s) to connect to"),
    worker_id: z.string().regex(NAME_PATTERN).optional().describe("this supervisor's id in heartbeats and job records (default: host + random)"),
    queues: z
      .string()
      .transform((s) => s.split(",").map((q) => q.trim()).filter(Boolean))
      .pipe(z.array(z.string().regex(NAME_PATTERN, "queue names are 1-64 of A-Z a-z 0-9 _ -")).min(1))
      .default(["default"])
      .describe("comma-separated queues to pull from"),
    target: z.string().regex(NAME_PATTERN, "a target name is 1-64 of A-Z a-z 0-9 _ -").default("default").describe("the target (pool of machines) this supervisor belongs to: it runs the jobs its queues send there"),
    lease_ms: int(1000).default(15_000).describe("job lease (ack deadline); a dead supervisor's jobs run elsewhere after it"),
    default_timeout_ms: int(1).default(60_000).describe("job timeout when neither submit nor handler sets one"),
    default_max_attempts: int(1, 100).default(3).describe("attempts when neither submit nor handler sets them"),
    default_backoff_ms: int(0).default(1000).describe("first retry delay (exponential backoff)"),
    default_max_backoff_ms: int(0).default(60_000).describe("longest retry delay"),
    heartbeat_ms: int(100).default(5000).describe("heartbeat period; 3 missed periods count as gone"),
    retention_ms: int(1000).optional().describe("how long a finished job (result, dead letter, files) is kept (default 7 days)"),
    results_ttl_ms: int(1000).optional().describe("deprecated alias of --retention-ms"),
    idempotency_window_ms: int(1000).default(24 * 3600 * 1000).describe("how long an idempotency key maps to its first job"),
    metrics_port: int(0, 65535).optional().describe("serve Prometheus /metrics on this port (0: any free port)"),
    cleanup_max_age_hours: z.coerce.number().positive().default(168).describe("default age for the maintenance cleanup tasks"),
    temp_dir: z.string().min(1).optional().describe("the only tree maintenance.cleanup_temp_files may clean (default $TMPDIR/bosun)"),
    metrics_host: z.string().min(1).default("127.0.0.1").describe("interface of the metrics server"),
    replicas: int(1, 5).optional().describe("copies of every stream and bucket (default: 1 on a single server, 3 in a cluster of 3 or more nodes)"),
    auth: auth.describe("on: every request needs an API key; off: none (development, loopback); unset: on exactly when BOSUN_ADMIN_KEY is set"),
    ...poolFields,
  })
  .refine((c) => c.min <= c.max, { message: "--min must not exceed --max", path: ["min"] });
export type SupervisorConfig = z.infer<typeof SupervisorConfig>;

/** `bosun compute-worker`: a remote compute server, HTTP only; its pool takes the supervisor's pool flags. */
export const ComputeWorkerConfig = z
  .object({
    ...poolFields,
    gateway: z.string().url("must be the gateway's URL, e.g. http://10.0.0.5:8080").describe("the Bosun gateway to lease jobs from"),
    enroll_token: z.string().min(1).optional().describe("a single-use enroll token (from POST /api/compute/enroll-tokens); not needed once a credential is saved"),
    name: z.string().regex(NAME_PATTERN).default("compute-worker").describe("this server's name, shown in GET /api/compute/servers"),
    target: z.string().regex(NAME_PATTERN).optional().describe("the target it joins (default: the enroll token's, else default)"),
    credential_file: z.string().min(1).optional().describe("where the credential is saved and read back (default ~/.bosun/compute-<name>.json, mode 0600)"),
    types: z
      .string()
      .transform((s) => s.split(",").map((q) => q.trim()).filter(Boolean))
      .optional()
      .describe("comma-separated job types to lease (default: any)"),
    wait_ms: int(0, 300_000).default(20_000).describe("how long one lease request long-polls"),
  })
  .refine((c) => c.min <= c.max, { message: "--min must not exceed --max", path: ["min"] });
export type ComputeWorkerConfig = z.infer<typeof ComputeWorkerConfig>;

export const DEFAULT_RETENTION_MS = 7 * 24 * 3600 * 1000;
/** --retention-ms, else the deprecated --results-ttl-ms, else 7 days. */
export const retentionOf = (config: Pick<SupervisorConfig, "retention_ms" | "results_ttl_ms">): number =>
  config.retention_ms ?? config.results_ttl_ms ?? DEFAULT_RETENTION_MS;

export const GatewayConfig = z.object({
  nats_url: natsUrl.describe("the NATS server(s) to connect to"),
  host: z.string().min(1).default("127.0.0.1").describe("interface to listen on"),
  port: int(0, 65535).default(8080).describe("HTTP port"),
  request_timeout_ms: int(50, 600_000).default(5000).describe("NATS request timeout (plus wait_ms on waiting submits)"),
  body_limit_bytes: int(1024).default(1024 * 1024).describe("largest request body"),
  http_request_timeout_ms: int(1000, 600_000)
    .default(HTTP_REQUEST_TIMEOUT_MS)
    .describe("the whole HTTP request (headers and body) must arrive within this, else 408"),
  grace_ms: int(0).default(10_000).describe("on SIGTERM, how long open requests may finish"),
  auth: auth.describe("on: every request needs an API key; off: none (development, loopback); unset: on exactly when BOSUN_ADMIN_KEY is set"),
  insecure_no_auth: flag.default(false).describe("listen on a non-loopback address with auth off anyway (refused otherwise)"),
});
export type GatewayConfig = z.infer<typeof GatewayConfig>;

export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

const kebab = (key: string) => key.replaceAll("_", "-");
const envName = (key: string) => (key === "nats_url" ? "NATS_URL" : `BOSUN_${key.toUpperCase()}`);

/** One configuration key as the command line and the environment spell it. */
export interface ConfigOption {
  key: string;
  /** `--kebab-case`; a boolean also has `--no-kebab-case`. */
  flag: string;
  env: string;
  description: string;
  boolean: boolean;
  default: unknown;
}

/** Every key of a config schema, for the argument parser (and its --help). */
export function configOptions(schema: z.ZodObject): ConfigOption[] {
  return Object.entries(schema.shape).map(([key, field]) => {
    const parsed = (field as z.ZodType).safeParse(undefined);
    return {
      key,
      flag: `--${kebab(key)}`,
      env: envName(key),
      description: (field as z.ZodType).description ?? "",
      boolean: parsed.success && typeof parsed.data === "boolean",
      default: parsed.success ? parsed.data : undefined,
    };
  });
}

/**
 * Flags (already parsed, by key) over `BOSUN_SNAKE_CASE` variables (NATS_URL
 * for the server) over defaults, validated once. A bad value is a
 * ConfigError naming both spellings of the key at fault.
 */
export function resolveConfig<S extends z.ZodObject>(
  schema: S,
  flags: Readonly<Record<string, string | boolean | undefined>>,
  env: NodeJS.ProcessEnv = process.env,
): z.output<S> {
  const raw: Record<string, unknown> = {};
  for (const key of Object.keys(schema.shape)) {
    const value = flags[key] ?? env[envName(key)];
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
