/**
 * /openapi.json, generated from the route table and the contract's zod
 * schemas (z.toJSONSchema): there is no hand-written copy of any shape.
 */
import { z } from "zod";
import { ErrorReply, JobEvent, WorkerInfo } from "../contract/index.js";
import { VERSION } from "../platform/version.js";
import { accessOf, httpRoutes, JobParams, operations, type HttpRoute } from "../contract/index.js";

type JsonSchema = Record<string, unknown>;

const schemaOf = (schema: z.ZodType, io: "input" | "output"): JsonSchema => {
  const { $schema: _drop, ...rest } = z.toJSONSchema(schema, { io, unrepresentable: "any" }) as JsonSchema;
  return rest;
};

const openApiPath = (url: string) => url.replace(/:([a-z_]+)/g, "{$1}");

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

const errorResponse = { description: "error", content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } } };

function operation(route: HttpRoute): JsonSchema {
  const nats = operations[route.operation];
  const op: JsonSchema = {
    operationId: route.operationId,
    tags: [nats.tag],
    summary: route.summary ?? nats.summary,
    description: `NATS: request \`${nats.subject}\` with the same JSON. With auth on: ${accessOf(route) === "admin" ? "an admin key" : "any key (a tenant key: its tenant's jobs only)"}.`,
    parameters: parameters(route),
    responses: {
      [String(route.status ?? 200)]: { description: "success", content: { "application/json": { schema: schemaOf(route.response ?? nats.response, "output") } } },
      "4XX": errorResponse,
      "503": { ...errorResponse, description: "NATS unreachable or no supervisor answering (Retry-After set)" },
    },
  };
  if (route.body) op.requestBody = { required: true, content: { "application/json": { schema: schemaOf(route.body, "input") } } };
  return op;
}

const sse = (summary: string, event: z.ZodType, params?: z.ZodObject): JsonSchema => ({
  summary,
  parameters: params ? parameters({ params }) : [],
  responses: { "200": { description: "server-sent events; each `data:` line is JSON", content: { "text/event-stream": { schema: schemaOf(event, "output") } } } },
});

const plain = (summary: string, type = "application/json"): JsonSchema => ({ summary, responses: { "200": { description: "ok", content: { [type]: {} } } } });

export function buildOpenApi(): JsonSchema {
  const paths: Record<string, Record<string, JsonSchema>> = {};
  const add = (method: string, url: string, op: JsonSchema) => {
    (paths[openApiPath(url)] ??= {})[method.toLowerCase()] = op;
  };
  for (const route of httpRoutes) add(route.method, route.url, operation(route));
  add("GET", "/api/jobs/:job_id/events", sse("Every state change and progress report of one job, until it ends", JobEvent, JobParams));
  add("GET", "/api/platform/workers/stream", sse("Heartbeats as they arrive", z.object({ type: z.literal("worker_heartbeat"), data: WorkerInfo })));
  add("GET", "/healthz", plain("Liveness"));
  add("GET", "/readyz", plain("Readiness: NATS connected and the jobs stream present"));
  add("GET", "/metrics", plain("Prometheus metrics", "text/plain"));
  add("GET", "/openapi.json", plain("This document"));
  return {
    openapi: "3.1.0",
    info: {
      title: "Bosun",
      version: VERSION,
      description: "Every route is one NATS request to the `bosun` service; the same JSON works from any NATS client.",
    },
    paths,
    components: {
      schemas: { Error: schemaOf(ErrorReply, "output") },
      // With auth on (BOSUN_ADMIN_KEY set) every /api route needs a key; with it off none does.
      securitySchemes: { apiKey: { type: "http", scheme: "bearer", description: "An API key: Authorization: Bearer <key>" } },
    },
    security: [{ apiKey: [] }, {}],
  };
}
