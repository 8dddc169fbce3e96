/**
 * The HTTP side of the operations table as plain data, for the HTTP client
 * (and, serialized at build time, for the dashboard, which must not ship
 * zod): per operation its first route, and which request fields travel in
 * the path, the query string and the body, and who may call it.
 */
import { accessOf, httpRoutes, operations, type Access, type HttpRoute } from "../contract/operations.js";

export interface RouteInfo {
  method: string;
  /** Fastify syntax (`:param`). */
  url: string;
  operationId: string;
  params: string[];
  query: string[];
  body: boolean;
  /** With auth on, whether a tenant key may call it (the dashboard offers a tenant key only those pages). */
  access: Access;
  /** The route answers this field of the operation's reply alone (e.g. a bare array): the client wraps it back. */
  unwraps?: string;
}

/** Operation name -> the route an HTTP client calls it by. */
export type RouteTable = Record<string, RouteInfo>;

const keysOf = (schema: { shape?: Record<string, unknown> } | undefined): string[] => Object.keys(schema?.shape ?? {});

export function routeTable(): RouteTable {
  const table: RouteTable = {};
  for (const route of httpRoutes) {
    // The first route of an operation is its own; later ones (maintenance tasks over jobs_submit) are presets.
    if (Object.hasOwn(table, route.operation)) continue;
    table[route.operation] = {
      method: route.method,
      url: route.url,
      operationId: route.operationId,
      params: keysOf(route.params),
      query: keysOf(route.query),
      body: route.body !== undefined,
      access: accessOf(route),
      ...(unwrappedField(route) !== undefined && { unwraps: unwrappedField(route) }),
    };
  }
  return table;
}

/**
 * Which field of the operation's reply a route's `fromReply` answers alone,
 * found by giving it a reply whose every field is a distinct marker.
 */
function unwrappedField(route: HttpRoute): string | undefined {
  const shape = (operations[route.operation].response as { shape?: Record<string, unknown> }).shape;
  if (!route.fromReply || !shape) return undefined;
  const sample = Object.fromEntries(Object.keys(shape).map((field) => [field, { field }]));
  let answer: unknown;
  try {
    answer = route.fromReply(sample);
  } catch {
    return undefined;
  }
  return Object.keys(sample).find((field) => answer === sample[field]);
}
