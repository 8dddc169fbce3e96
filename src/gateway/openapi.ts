/**
 * /openapi.json, generated from the route table and the contract's zod
 * schemas (z.toJSONSchema): there is no hand-written copy of any shape.
 * Redocly's linter passes on it (test/docs.test.ts).
 */
import { z } from "zod";
import { ErrorReply, JobEvent, WorkerInfo, type Tag } from "../contract/index.js";
import { VERSION } from "../platform/version.js";
import { accessOf, FileParams, httpRoutes, JobFile, JobParams, LEASE_ID_HEADER, MAX_FILE_BYTES, operations, type HttpRoute } from "../contract/index.js";

type JsonSchema = Record<string, unknown>;

const schemaOf = (schema: z.ZodType, io: "input" | "output"): JsonSchema => {
  const { $schema: _drop, ...rest } = z.toJSONSchema(schema, { io, unrepresentable: "any" }) as JsonSchema;
  return rest;
};

const openApiPath = (url: string) => url.replace(/:([a-z_]+)/g, "{$1}");

const TAGS: Record<Tag, string> = {
  jobs: "Submit jobs, read their status and results, cancel and retry them.",
  schedules: "Recurring jobs: cron or every_ms, exactly one job per tick across supervisors.",
  platform: "Live supervisors, their execution processes, and per-queue counts.",
  admin: "The ops flags, read and changed live on every gateway and supervisor; API keys.",
  system: "Maintenance tasks, health, metrics and this document.",
  compute: "Remote compute servers: enroll, lease jobs over HTTP, heartbeat, post results and files; revoke.",
};

function parameters(route: Pick<HttpRoute, "params" | "query">): JsonSchema[] {
  const list: JsonSchema[] = [];
  for (const [where, shape] of [["path", route.params], ["query", route.query]] as const) {
    if (!shape) continue;
    const json = schemaOf(shape, "input") as { properties?: Record<string, JsonSchema>; required?: string[] };
    for (const [name, schema] of Object.entries(json.properties ?? {})) {
      list.push({ name, in: where, required: where === "path" || (json.required ?? []).includes(name), schema });
    }
  }
  return list;
}

const json = (schema: JsonSchema) => ({ "application/json": { schema } });
const errorResponse = (description: string) => ({ description, content: json({ $ref: "#/components/schemas/Error" }) });
const unavailable = errorResponse("NATS unreachable, or no supervisor answering (`Retry-After` set)");

/** The client errors a route can answer, besides the generic 4XX. */
function clientErrors(route: HttpRoute): Record<string, unknown> {
  const errors: Record<string, unknown> = {};
  if (route.params || route.query || route.body) errors["400"] = errorResponse("invalid input (`validation_error`, `invalid_json`): nothing was changed");
  if (route.params) errors["404"] = errorResponse("no such job or worker (`not_found`)");
  errors["4XX"] = errorResponse("another client error: 401/403 (auth), 409 (state conflict), 413 (too large), 422 (unknown job type)");
  return errors;
}

function operation(route: HttpRoute): JsonSchema {
  const nats = operations[route.operation];
  const responses: Record<string, unknown> = {
    [String(route.status ?? 200)]: { description: "success", content: json(schemaOf(route.response ?? nats.response, "output")) },
  };
  for (const other of route.otherResponses ?? []) responses[String(other.status)] = { description: other.description, content: json(schemaOf(other.schema, "output")) };
  const op: JsonSchema = {
    operationId: route.operationId,
    tags: [route.tag ?? nats.tag],
    summary: route.summary ?? nats.summary,
    description: `NATS: request \`${nats.subject}\` with the same JSON. With auth on: ${accessOf(route) === "admin" ? "an admin key" : "any key (a tenant key: its tenant's jobs only)"}.`,
    parameters: parameters(route),
    responses: { ...responses, ...clientErrors(route), "503": unavailable },
  };
  if (route.body) {
    const media: JsonSchema = { schema: schemaOf(route.body, "input") };
    if (route.example !== undefined) media.example = route.example;
    op.requestBody = { required: true, content: { "application/json": media } };
  }
  return op;
}

interface Extra {
  operationId: string;
  summary: string;
  tag: Tag;
  params?: z.ZodObject;
  /** No key needed, whatever the auth mode. */
  open?: boolean;
}

const sse = (extra: Extra, event: z.ZodType): JsonSchema => ({
  operationId: extra.operationId,
  tags: [extra.tag],
  summary: extra.summary,
  parameters: extra.params ? parameters({ params: extra.params }) : [],
  responses: {
    "200": { description: "server-sent events; each `data:` line is JSON", content: { "text/event-stream": { schema: schemaOf(event, "output") } } },
    ...(extra.params && { "404": errorResponse("no such job (`not_found`)") }),
    "4XX": errorResponse("another client error (401/403 with auth on; 406 without `Accept: text/event-stream`)"),
    "503": unavailable,
  },
});

const plain = (extra: Extra, type: string, schema: JsonSchema): JsonSchema => ({
  operationId: extra.operationId,
  tags: [extra.tag],
  summary: extra.summary,
  ...(extra.open && { security: [] }),
  responses: {
    "200": { description: "ok", content: { [type]: { schema } } },
    "4XX": errorResponse("a client error"),
    "503": unavailable,
  },
});

const binary = { type: "string", contentMediaType: "application/octet-stream" };

/** The routes whose body is a file's bytes (gateway/files.ts), not JSON. */
const fileDownload: JsonSchema = {
  operationId: "getJobFile",
  tags: ["jobs"],
  summary: "One of a job's files: its bytes, streamed, with its content type",
  description: `NATS: request \`${operations.jobs_files_get.subject}\` says where it is; the gateway streams it from the object store. With auth on: any key (a tenant key: its tenant's jobs only).`,
  parameters: parameters({ params: FileParams }),
  responses: {
    "200": { description: "the file's bytes, with its content type", content: { "*/*": { schema: binary } } },
    "400": errorResponse("not a job id or file name (`validation_error`)"),
    "404": errorResponse("no such job, or it has no file of that name (`not_found`)"),
    "4XX": errorResponse("another client error: 401/403 (auth)"),
    "503": unavailable,
  },
};
const leasedFileDownload: JsonSchema = {
  operationId: "getLeasedJobFile",
  tags: ["compute"],
  summary: "A compute server reads a file of the job it leased, like ctx.files.read",
  description: `NATS: request \`${operations.compute_file_get.subject}\` says where it is; the gateway streams it from the object store. A compute server's credential, and its lease in the \`${LEASE_ID_HEADER}\` header.`,
  parameters: [...parameters({ params: FileParams }), { name: LEASE_ID_HEADER, in: "header", required: true, schema: { type: "string" } }],
  responses: {
    "200": { description: "the file's bytes, with its content type", content: { "*/*": { schema: binary } } },
    "400": errorResponse("not a job id, file name or lease id (`validation_error`)"),
    "404": errorResponse("the job has no file of that name (`not_found`), or the compute endpoints are turned off"),
    "409": errorResponse("the lease is not current (`lease_stale`)"),
    "4XX": errorResponse("another client error: 401 (credential)"),
    "503": unavailable,
  },
};
const fileUpload: JsonSchema = {
  operationId: "putJobFile",
  tags: ["compute"],
  summary: "A compute server stores a file for the job it leased, like ctx.files.write",
  description: `NATS: request \`${operations.compute_file_check.subject}\` before and after the gateway streams the body into the object store. A compute server's credential, and its lease in the \`${LEASE_ID_HEADER}\` header.`,
  parameters: [...parameters({ params: FileParams }), { name: LEASE_ID_HEADER, in: "header", required: true, schema: { type: "string" } }],
  requestBody: { required: true, content: { "*/*": { schema: { ...binary, maxLength: MAX_FILE_BYTES } } } },
  responses: {
    "201": { description: "stored and listed", content: json(schemaOf(JobFile, "output")) },
    "400": errorResponse("not a job id, file name, lease id or content type (`validation_error`): nothing was stored"),
    "409": errorResponse("the lease is not current (`lease_stale`), or a newer run wrote the file: nothing was stored"),
    "413": errorResponse(`larger than ${MAX_FILE_BYTES} bytes, or the job keeps as many files as it may (\`payload_too_large\`): nothing was stored`),
    "4XX": errorResponse("another client error: 401 (credential), 404 (compute endpoints turned off)"),
    "503": unavailable,
  },
};

export function buildOpenApi(): JsonSchema {
  const paths: Record<string, Record<string, JsonSchema>> = {};
  const add = (method: string, url: string, op: JsonSchema) => {
    (paths[openApiPath(url)] ??= {})[method.toLowerCase()] = op;
  };
  for (const route of httpRoutes) add(route.method, route.url, operation(route));
  const status = { type: "object", properties: { status: { type: "string" } }, required: ["status"] };
  add(
    "GET",
    "/api/jobs/:job_id/events",
    sse({ operationId: "streamJobEvents", tag: "jobs", summary: "Every state change and progress report of one job, until it ends", params: JobParams }, JobEvent),
  );
  add(
    "GET",
    "/api/platform/workers/stream",
    sse({ operationId: "streamWorkers", tag: "platform", summary: "Heartbeats as they arrive" }, z.object({ type: z.literal("worker_heartbeat"), data: WorkerInfo })),
  );
  add("GET", "/api/jobs/:job_id/files/:name", fileDownload);
  add("PUT", "/api/compute/jobs/:job_id/files/:name", fileUpload);
  add("GET", "/api/compute/jobs/:job_id/files/:name", leasedFileDownload);
  add("GET", "/healthz", plain({ operationId: "getHealth", tag: "system", summary: "Liveness: the gateway answers (NATS or not)", open: true }, "application/json", status));
  add("GET", "/readyz", plain({ operationId: "getReadiness", tag: "system", summary: "Readiness: NATS connected and the jobs stream present", open: true }, "application/json", status));
  add("GET", "/metrics", plain({ operationId: "getMetrics", tag: "system", summary: "Prometheus metrics of this gateway", open: true }, "text/plain", { type: "string" }));
  add("GET", "/openapi.json", plain({ operationId: "getOpenApi", tag: "system", summary: "This document", open: true }, "application/json", { type: "object" }));
  return {
    openapi: "3.1.0",
    info: {
      title: "Bosun API",
      version: VERSION,
      description:
        "Every route is one NATS request to the `bosun` service; the same JSON works from any NATS client. " +
        "Errors are `{\"error\": {\"code\", \"message\", \"details\"?}}` with a fitting status; 503 answers carry `Retry-After`.",
      license: { name: "Apache-2.0", identifier: "Apache-2.0" },
    },
    servers: [{ url: "/", description: "this gateway" }],
    tags: Object.entries(TAGS).map(([name, description]) => ({ name, description })),
    // Auth (issue 11) is off by default: then no header is needed and the key is ignored.
    security: [{ bearer: [] }],
    paths,
    components: {
      schemas: { Error: schemaOf(ErrorReply, "output") },
      securitySchemes: {
        bearer: {
          type: "http",
          scheme: "bearer",
          description: "An API key, `Authorization: Bearer <key>`, needed when auth is on (BOSUN_AUTH=on or any key configured); an admin key or one bound to a tenant.",
        },
      },
    },
  };
}
