/**
 * The NATS users Bosun's processes connect as, and what each may publish
 * and subscribe to, built from the subjects module (contract/subjects.ts).
 * nats.conf's authorization block and the table in docs/security.md are
 * rendered from this (test/nats-roles.test.ts checks both), so neither can
 * drift from the subjects the code uses.
 */
import { randomToken } from "./secrets.js";
import { API_PREFIX, buckets, CONTROL_WILDCARD, DEAD_WILDCARD, HEARTBEATS_WILDCARD, JOBS_WILDCARD, objectBuckets, RESULTS_WILDCARD, SCHEDULED_WILDCARD, streams } from "../contract/index.js";

export type Role = "supervisor" | "gateway" | "compute" | "admin";

export interface RolePermissions {
  /** What the role is for, one line (docs). */
  summary: string;
  publish: { allow: string[]; deny?: string[] };
  subscribe: { allow: string[]; deny?: string[] };
}

/** Each role's NATS user name; its password comes from the environment variable passwordEnv(role). */
export const natsUser = (role: Role): string => `bosun-${role}`;
export const passwordEnv = (role: Role): string => `BOSUN_NATS_${role.toUpperCase()}_PASSWORD`;

const API = `${API_PREFIX}.>`;
const INBOX = "_INBOX.>";
const kvSubjects = Object.values(buckets).map((b) => `$KV.${b}.>`);
/** An object bucket's chunks and metadata (`$O.<bucket>.C.>`, `$O.<bucket>.M.>`). */
const FILE_OBJECTS = `$O.${objectBuckets.files}.>`;
const FILES_STREAM = `OBJ_${objectBuckets.files}`;
const jobFlow = [JOBS_WILDCARD, SCHEDULED_WILDCARD, RESULTS_WILDCARD, DEAD_WILDCARD, HEARTBEATS_WILDCARD];
/** Changing streams, accounts or the server: nobody but admin. */
const destructive = ["$JS.API.STREAM.DELETE.>", "$JS.API.ACCOUNT.>", "$JS.API.META.>", "$JS.API.SERVER.>", "$SYS.>"];

export const roles: Record<Role, RolePermissions> = {
  supervisor: {
    summary: "serves the API, runs jobs, writes every job subject and bucket, provisions streams, consumers and buckets",
    publish: {
      // $JS.API.>: provisioning, pulls, direct gets, message deletes and purges; $JS.ACK/$JS.FC: acks and flow control.
      allow: [...jobFlow, CONTROL_WILDCARD, ...kvSubjects, FILE_OBJECTS, "$JS.API.>", "$JS.ACK.>", "$JS.FC.>", INBOX],
      deny: destructive,
    },
    // The API (queue group) and $SRV discovery, control commands, results it waits for, replies and deliveries.
    subscribe: { allow: [API, "$SRV.>", CONTROL_WILDCARD, RESULTS_WILDCARD, HEARTBEATS_WILDCARD, INBOX] },
  },
  gateway: {
    summary: "turns HTTP into API requests; reads one job's messages for its event stream and the heartbeats for the workers stream; streams job files out of (downloads) and into (compute servers' uploads) the files bucket",
    publish: {
      allow: [
        API,
        "$JS.API.INFO",
        ...[...Object.values(streams), ...Object.values(buckets).map((b) => `KV_${b}`), FILES_STREAM].map((s) => `$JS.API.STREAM.INFO.${s}`),
        // Literal direct gets of one job's messages (its event stream), never a subscription to the flow.
        ...[streams.jobs, streams.results, streams.scheduled, `KV_${buckets.jobs}`].map((s) => `$JS.API.DIRECT.GET.${s}`),
        // The ops flags watch (an ordered consumer on their bucket).
        `$JS.API.CONSUMER.CREATE.KV_${buckets.ops}`,
        `$JS.API.CONSUMER.CREATE.KV_${buckets.ops}.>`,
        `$JS.API.CONSUMER.DELETE.KV_${buckets.ops}.>`,
        `$JS.API.CONSUMER.INFO.KV_${buckets.ops}.>`,
        // Job files: downloads read an object (its metadata by a get, its chunks through an ordered
        // consumer); compute servers' uploads write one, and the object store purges what a failed or
        // replaced upload left.
        `$JS.API.DIRECT.GET.${FILES_STREAM}`,
        `$JS.API.STREAM.MSG.GET.${FILES_STREAM}`,
        `$JS.API.CONSUMER.CREATE.${FILES_STREAM}`,
        `$JS.API.CONSUMER.CREATE.${FILES_STREAM}.>`,
        `$JS.API.CONSUMER.DELETE.${FILES_STREAM}.>`,
        `$JS.API.CONSUMER.INFO.${FILES_STREAM}.>`,
        `$JS.API.STREAM.PURGE.${FILES_STREAM}`,
        FILE_OBJECTS,
        "$JS.FC.>",
      ],
      deny: [...jobFlow, ...kvSubjects, ...destructive],
    },
    subscribe: {
      // $KV.bosun_keys.>: revokes, to end the event streams opened with a revoked key.
      allow: [SCHEDULED_WILDCARD, RESULTS_WILDCARD, `$KV.${buckets.jobs}.>`, `$KV.${buckets.keys}.>`, HEARTBEATS_WILDCARD, INBOX],
      deny: [JOBS_WILDCARD, API],
    },
  },
  compute: {
    summary: "the compute bridge (issue 14): reaches the API only; supervisors write on its behalf",
    publish: { allow: [API, "$JS.API.INFO"], deny: [...jobFlow, ...kvSubjects, ...destructive] },
    subscribe: { allow: [INBOX], deny: [JOBS_WILDCARD, API] },
  },
  admin: {
    summary: "operators and the CLI: everything (keep its password with the operators)",
    publish: { allow: [">"] },
    subscribe: { allow: [">"] },
  },
};

const list = (subjects: readonly string[]) => `[${subjects.map((s) => JSON.stringify(s)).join(", ")}]`;

/** The `authorization { users = [...] }` block of nats.conf (and the cluster's config). */
export function renderAuthorization(): string {
  const users = (Object.keys(roles) as Role[]).map((role) => {
    const { publish, subscribe } = roles[role];
    const side = (name: string, p: RolePermissions["publish"]) =>
      `        ${name}: { allow: ${list(p.allow)}${p.deny ? `, deny: ${list(p.deny)}` : ""} }`;
    return [
      `    {`,
      `      user: ${natsUser(role)}`,
      `      password: $${passwordEnv(role)}`,
      `      permissions: {`,
      side("publish", publish),
      side("subscribe", subscribe),
      `      }`,
      `    }`,
    ].join("\n");
  });
  return [`# BEGIN roles: rendered from src/platform/nats-roles.ts (test/nats-roles.test.ts checks it)`, `authorization {`, `  users = [`, ...users, `  ]`, `}`, `# END roles`].join("\n");
}

/** The permission table of docs/security.md. */
export function renderRoleTable(): string {
  const cell = (subjects: readonly string[] | undefined) => (subjects?.length ? subjects.map((s) => `\`${s}\``).join(" ") : "");
  const rows = (Object.keys(roles) as Role[]).map((role) => {
    const r = roles[role];
    return `| ${natsUser(role)} (\`${passwordEnv(role)}\`) | ${r.summary} | ${cell(r.publish.allow)} | ${cell(r.publish.deny)} | ${cell(r.subscribe.allow)} | ${cell(r.subscribe.deny)} |`;
  });
  return ["| user (password variable) | role | publish allow | publish deny | subscribe allow | subscribe deny |", "| --- | --- | --- | --- | --- | --- |", ...rows].join("\n");
}

/**
 * What `bosun dev` runs its nats-server with: a fresh random password per
 * role for each run (the server's environment), each Bosun process
 * connected as its role, and anonymous clients (the CLI, `nats` in a shell)
 * taken as the admin user, on the loopback dev server only: a production
 * config must not have `no_auth_user`.
 */
export interface DevRoles {
  serverEnv: Record<string, string>;
  envOf(role: Role): { NATS_USER: string; NATS_PASSWORD: string };
  configLine: string;
}

export function devRoles(): DevRoles {
  // A letter first: nats-server parses a `$VAR` whose value starts with a digit as a number, and fails.
  const serverEnv = Object.fromEntries((Object.keys(roles) as Role[]).map((role) => [passwordEnv(role), `p${randomToken(32)}`]));
  return {
    serverEnv,
    envOf: (role) => ({ NATS_USER: natsUser(role), NATS_PASSWORD: serverEnv[passwordEnv(role)]! }),
    configLine: `no_auth_user: ${natsUser("admin")}`,
  };
}
