/**
 * Generators for the fuzz test (fast-check, seeded): HTTP requests over
 * every route of the operations table, NATS requests to every API and
 * control subject, junk for every subject Bosun reads, and command lines
 * for the `bosun` CLI (dist/cli/main.js). Handlers are
 * kept cheap (sleep at most 50 ms, no crash or cpu jobs) and no generated
 * request pauses submissions, so what is measured is the input boundary.
 */
import fc from "fast-check";
import { buckets, controlSubject, deadSubject, envelope, heartbeatSubject, httpRoutes, jobSubject, kvKeySubject, laneCode, operations, resultSubject, scheduledSubject } from "./hostile.js";

export interface HttpCase {
  method: string;
  path: string;
  headers: Record<string, string>;
  /** Sent as is (already JSON text, or junk). */
  body?: string;
  /** Written over a bare socket instead of fetch(), for what fetch refuses to send. */
  raw?: string;
}

export interface NatsCase {
  subject: string;
  data: Uint8Array;
  headers: Record<string, string>;
}

/** Arguments of one `bosun` run (NATS_URL names the test's server). */
export type CliCase = string[];

export interface JunkCase {
  subject: string;
  data: Uint8Array;
  headers: Record<string, string>;
}

const encoder = new TextEncoder();

/** No generated request may pause submissions (random JSON could): the rest of the run would be 503s. */
const unpaused = (text: string): string => text.replaceAll('"submissions_paused":true', '"submissions_paused":false');

/** Strings that tend to break things: separators, wildcards, control and non-ASCII characters, huge ones. */
const nasty = fc.constantFrom("", " ", "*", ">", "a b", "..", ".a", "a.", "\u0000", "\n", "\r\n", "%00", "%2F", "é", "😀", "__proto__", "constructor", "a".repeat(65), "x".repeat(5000), "null", "-1", "1e309");
const token = fc.stringMatching(/^[A-Za-z0-9_-]{1,64}$/);
const nuid = fc.stringMatching(/^[A-Za-z0-9]{22}$/);
/** Ids as Bosun gives them out: in the lane of a queue's plain jobs (so its consumer delivers them), or in any lane. */
const issuedId = (queue: string) =>
  fc.oneof({ weight: 3, arbitrary: nuid.map((n) => laneCode(queue, "default", "n", null) + n) }, { weight: 1, arbitrary: fc.stringMatching(/^[A-Za-z0-9]{30}$/) });
const anyString = fc.oneof(fc.string({ maxLength: 80 }), fc.string({ unit: "binary", maxLength: 40 }), nasty, token);
const smallInt = fc.oneof(fc.integer({ min: -2, max: 5 }), fc.integer(), fc.double(), fc.constantFrom(1e9, -1e9, Number.MAX_SAFE_INTEGER));
const json = fc.jsonValue({ maxDepth: 3 });
const deep = (n: number) => `${"[".repeat(n)}${"]".repeat(n)}`;

/** Mostly a valid value, sometimes a hostile one. */
const mostly = <T>(valid: fc.Arbitrary<T>, invalid: fc.Arbitrary<unknown> = fc.oneof(anyString, smallInt, json)) =>
  fc.oneof({ weight: 9, arbitrary: valid as fc.Arbitrary<unknown> }, { weight: 1, arbitrary: invalid });

/** Undefined most of the time: one in `every` it is generated. */
const sometimes = <T>(arb: fc.Arbitrary<T>, every: number): fc.Arbitrary<T | undefined> =>
  fc.oneof({ weight: every - 1, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: arb });

/** A few of the given fields (at most `max`), each generated. */
const someOf = (fields: Record<string, fc.Arbitrary<unknown>>, max: number): fc.Arbitrary<Record<string, unknown>> =>
  fc.uniqueArray(fc.constantFrom(...Object.keys(fields)), { maxLength: max }).chain((keys) => fc.record(Object.fromEntries(keys.map((k) => [k, fields[k]!]))));

/** Submit bodies near the valid ones (most fields valid, some not), so validation is passed and failed. */
function submitBody(queue: string): fc.Arbitrary<Record<string, unknown>> {
  const typed = fc.oneof(
    { weight: 4, arbitrary: fc.record({ type: fc.constantFrom("echo", "noop"), payload: json }) },
    { weight: 1, arbitrary: fc.record({ type: fc.constant("fail"), payload: fc.record({ message: anyString }, { requiredKeys: [] }) }) },
    { weight: 2, arbitrary: fc.record({ type: fc.constant("sleep"), payload: fc.record({ ms: fc.integer({ min: 0, max: 50 }) }) }) },
    {
      weight: 1,
      arbitrary: fc.record({ type: fc.constant("maintenance.cleanup_temp_files"), payload: fc.record({ dir: anyString, max_age_hours: smallInt }, { requiredKeys: [] }) }),
    },
    { weight: 1, arbitrary: fc.record({ type: anyString, payload: json }) },
  );
  const optional = someOf(
    {
      queue: fc.oneof({ weight: 1, arbitrary: fc.constant("default") }, { weight: 1, arbitrary: anyString }),
      tenant: mostly(token),
      idempotency_key: mostly(fc.string({ minLength: 1, maxLength: 20 })),
      delay_ms: mostly(fc.integer({ min: 0, max: 2000 })),
      run_at: mostly(fc.date({ min: new Date(), max: new Date(Date.now() + 3_600_000), noInvalidDate: true }).map((d) => d.toISOString())),
      timeout_ms: mostly(fc.integer({ min: 1, max: 60_000 })),
      max_attempts: mostly(fc.integer({ min: 1, max: 3 })),
      backoff: mostly(fc.record({ type: fc.constantFrom("fixed", "exponential"), delay_ms: fc.integer({ min: 0, max: 100 }) })),
      priority: mostly(fc.integer({ min: -1000, max: 1000 })),
      correlation_id: mostly(token),
      wait_ms: mostly(fc.integer({ min: 0, max: 2000 }), fc.oneof(anyString, fc.integer({ max: 3000 }))),
    },
    3,
  );
  const extra = fc.dictionary(anyString, json, { minKeys: 1, maxKeys: 3 });
  return fc.tuple(typed, optional, sometimes(extra, 8)).map(([t, o, e]) => ({ ...t, queue, ...o, ...(e ?? {}) }));
}

/** The body of one operation's request: near-valid for it most of the time. */
function requestBody(operation: string, queue: string, workerId: string): fc.Arbitrary<Record<string, unknown>> {
  switch (operation) {
    case "jobs_submit":
      return submitBody(queue);
    case "jobs_submit_batch":
      return fc.record({ jobs: mostly(fc.array(mostly(submitBody(queue)), { minLength: 1, maxLength: 5 })) });
    case "jobs_get":
    case "jobs_result":
    case "jobs_cancel":
    case "jobs_retry":
      return fc.record({ job_id: mostly(fc.oneof(token, issuedId(queue))) });
    case "jobs_list":
      return someOf(
        {
          state: mostly(fc.constantFrom("queued", "succeeded", "dead", "running")),
          queue: mostly(fc.constant(queue)),
          tenant: mostly(token),
          type: mostly(fc.constantFrom("echo", "noop")),
          limit: mostly(fc.integer({ min: 1, max: 50 })),
          cursor: anyString,
        },
        3,
      );
    case "workers_recycle":
      return fc.record(
        { worker_id: mostly(fc.constant(workerId)), pid: mostly(fc.integer({ min: 1, max: 99999 })), thread_id: mostly(fc.integer({ min: 0, max: 64 })) },
        { requiredKeys: ["worker_id"] },
      );
    case "ops_set":
      // Never pause: that would turn the rest of the run into 503s.
      return someOf(
        {
          submissions_paused: mostly(fc.constant(false), anyString),
          queues: mostly(fc.dictionary(fc.oneof(token, anyString), fc.record({ submissions_paused: mostly(fc.constant(false), anyString) }), { maxKeys: 2 })),
        },
        2,
      );
    default:
      return fc.oneof(fc.constant({}), fc.dictionary(anyString, json, { maxKeys: 2 }));
  }
}

/** A request body: near-valid for its route, any JSON, junk text, nesting past the limit, or nothing. */
function bodyText(near: fc.Arbitrary<Record<string, unknown>>): fc.Arbitrary<string | undefined> {
  return fc.oneof(
    { weight: 12, arbitrary: near.map((b) => JSON.stringify(b)) },
    { weight: 2, arbitrary: json.map((v) => JSON.stringify(v)) },
    { weight: 1, arbitrary: fc.string({ maxLength: 200 }) },
    { weight: 1, arbitrary: fc.constantFrom(deep(70), deep(5000), `{"type":"echo","payload":${deep(3000)}}`, "{", '{"a":', "\u0000\u0001", "null", "[]") },
    { weight: 1, arbitrary: fc.constant(undefined) },
  );
}

const ids = (queue: string) => fc.oneof(token, issuedId(queue), anyString.map((s) => encodeURIComponent(s)), fc.constantFrom("%E0%A4%A", "%2A", "%3E", "a%20b", "x".repeat(300)));
const methods = fc.constantFrom("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS");
const headerValue = fc.oneof(token, fc.string({ maxLength: 40 }).filter((s) => /^[\x20-\x7e]*$/.test(s)), fc.constant("c".repeat(300)));
/** W3C traceparents: valid ones (a trace goes on into the job), and near misses (a fresh trace starts). */
const traceparent = fc.oneof(
  fc.tuple(fc.stringMatching(/^[0-9a-f]{32}$/), fc.stringMatching(/^[0-9a-f]{16}$/)).map(([trace, span]) => `00-${trace}-${span}-01`),
  fc.constantFrom(`00-${"0".repeat(32)}-${"1".repeat(16)}-01`, `ff-${"a".repeat(32)}-${"b".repeat(16)}-01`, `00-${"A".repeat(32)}-${"b".repeat(16)}-01`, "t".repeat(200)),
  headerValue,
);

export function httpCases(seed: number, count: number, queue: string, workerId: string): HttpCase[] {
  const submit = { method: "POST", url: "/api/jobs", operation: "jobs_submit" };
  const routes = [
    // The submit route is the one most traffic takes: weighted up.
    submit,
    submit,
    submit,
    ...httpRoutes.map((r) => ({ method: r.method, url: r.url, operation: r.url.includes("maintenance") ? "maintenance" : r.operation })),
    ...["/api/jobs/:job_id/events", "/api/platform/workers/stream", "/healthz", "/readyz", "/metrics", "/openapi.json", "/nope/:job_id", "/ui", "/ui/:job_id", "/docs", "/docs/:job_id"].map(
      (url) => ({ method: "GET", url, operation: "none" }),
    ),
  ];
  const structured = fc
    .record({
      route: fc.constantFrom(...routes).chain((route) =>
        fc.record({ route: fc.constant(route), body: bodyText(route.operation === "maintenance" ? someOf({ dir: anyString, max_age_hours: smallInt }, 2) : requestBody(route.operation, queue, workerId)) }),
      ),
      otherMethod: sometimes(methods, 6),
      id: fc.oneof(ids(queue), fc.constant(workerId)),
      query: fc.dictionary(
        fc.oneof(fc.constantFrom("wait_ms", "limit", "state", "queue", "tenant", "type", "pid", "thread_id", "cursor"), anyString.map(encodeURIComponent)),
        anyString.map(encodeURIComponent),
        { maxKeys: 3 },
      ),
      contentType: sometimes(fc.constantFrom("application/json", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/json; charset=utf-16"), 2),
      accept: sometimes(fc.constantFrom("text/event-stream", "application/json", "*/*", "text/html", "image/png;q=0"), 4),
      correlation: sometimes(headerValue, 3),
      trace: sometimes(traceparent, 3),
    })
    .map(({ route: { route, body }, otherMethod, id, query, contentType, accept, correlation, trace }): HttpCase => {
      const path = route.url.replace(/:[a-z_]+/g, id);
      const qs = Object.entries(query)
        .map(([k, v]) => `${k}=${v}`)
        .join("&");
      const headers: Record<string, string> = {};
      if (contentType) headers["content-type"] = contentType;
      if (accept) headers.accept = accept;
      if (correlation) headers["x-correlation-id"] = correlation;
      if (trace) headers.traceparent = trace;
      const method = otherMethod ?? route.method;
      const sendsBody = method !== "GET" && method !== "HEAD";
      return { method, path: qs ? `${path}?${qs}` : path, headers, ...(sendsBody && body !== undefined && { body: unpaused(body) }) };
    });
  const raw = fc
    .constantFrom(
      "FOO /api/jobs HTTP/1.1\r\nHost: x\r\n\r\n",
      "POST /api/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
      "POST /api/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
      `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(20_000)}\r\n\r\n`,
      "GET /healthz HTTP/1.1\r\n\r\n",
      "GET /api/jobs/%E0%A4%A HTTP/1.1\r\nHost: x\r\n\r\n",
      "\u0000\u0001\u0002 garbage\r\n\r\n",
      "GET /api/jobs HTTP/1.1\r\nHost: x\r\nx-correlation-id: a\u0000b\r\n\r\n",
      "POST /api/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}{}{}",
    )
    .map((raw): HttpCase => ({ method: "RAW", path: "", headers: {}, raw: raw.replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n") }));
  return fc.sample(fc.oneof({ weight: 19, arbitrary: structured }, { weight: 1, arbitrary: raw }), { seed, numRuns: count });
}

export function natsCases(seed: number, count: number, queue: string, workerId: string): NatsCase[] {
  const targets = [
    ...Object.entries(operations).map(([name, o]) => ({ subject: o.subject, operation: name })),
    { subject: controlSubject(workerId, "submit"), operation: "jobs_submit" },
    { subject: controlSubject(workerId, "recycle"), operation: "workers_recycle" },
  ];
  const target = fc.constantFrom(...targets).chain(({ subject, operation }) =>
    fc.record({
      subject: fc.constant(subject),
      data: fc.oneof(
        { weight: 12, arbitrary: requestBody(operation, queue, workerId).map((b) => encoder.encode(JSON.stringify(b))) },
        { weight: 2, arbitrary: json.map((v) => encoder.encode(JSON.stringify(v))) },
        { weight: 1, arbitrary: fc.uint8Array({ maxLength: 200 }) },
        { weight: 1, arbitrary: fc.constantFrom(deep(5000), "{", "").map((s) => encoder.encode(s)) },
      ),
    }),
  );
  const headers = fc.dictionary(
    fc.constantFrom("x-correlation-id", "traceparent", "Authorization", "Nats-Msg-Id", "X-Any"),
    fc.oneof(headerValue, traceparent, fc.constant("c".repeat(100_000))),
    { maxKeys: 2 },
  );
  return fc.sample(
    fc.tuple(target, headers).map(([c, h]) => ({ ...c, data: encoder.encode(unpaused(new TextDecoder().decode(c.data))), headers: h })),
    { seed, numRuns: count },
  );
}

/** Junk for every subject Bosun reads from: its streams, its buckets, heartbeats. */
export function junkCases(seed: number, count: number, queue: string, heartbeat: Record<string, unknown>): JunkCase[] {
  const id = issuedId(queue);
  const subject = fc.oneof(
    id.map((i) => jobSubject(i)),
    id.map((i) => scheduledSubject(i)),
    id.map((i) => resultSubject(i)),
    id.map((i) => deadSubject(i)),
    token.map((w) => heartbeatSubject(w)),
    id.map((i) => kvKeySubject(buckets.jobs, i)),
    fc.oneof(id, token).map((i) => `$KV.${buckets.cancels}.${i}`),
    fc.oneof(token, fc.constant(laneCode(queue, "default", "n", null))).map((code) => `$KV.${buckets.lanes}.${code}`),
    token.map((id) => `$KV.${buckets.idempotency}.${id}`),
    fc.constantFrom("submissions_paused", `queues.${queue}.submissions_paused`, "queues.__proto__.submissions_paused", "x").map((k) => `$KV.${buckets.ops}.${k}`),
  );
  const mutate = (base: Record<string, unknown>) =>
    fc.tuple(fc.constantFrom(...Object.keys(base)), fc.oneof(json, anyString, smallInt)).map(([k, v]) => ({ ...base, [k]: v }));
  const data = fc.oneof(
    { weight: 3, arbitrary: mutate(envelope(queue)).map((e) => JSON.stringify(e)) },
    { weight: 1, arbitrary: mutate(heartbeat).map((h) => JSON.stringify(h)) },
    { weight: 2, arbitrary: json.map((v) => JSON.stringify(v)) },
    { weight: 1, arbitrary: fc.string({ maxLength: 100 }) },
    { weight: 1, arbitrary: fc.constantFrom(deep(5000), "true", "") },
  );
  const headers = fc.dictionary(
    // Bosun-Heartbeat: leaving makes a heartbeat a supervisor's last; traceparent rides on results.
    fc.constantFrom("Bosun-Attempt-Offset", "Bosun-Due-At", "KV-Operation", "Bosun-Heartbeat", "traceparent"),
    fc.oneof(anyString.filter((s) => !/[\r\n]/.test(s)), smallInt.map(String), fc.constant("leaving"), traceparent),
    { maxKeys: 2 },
  );
  return fc.sample(
    fc.record({ subject, data, headers }).map((c) => ({
      ...c,
      // Valid "true" on a pause flag is an operator's act, not junk.
      data: encoder.encode(c.subject.startsWith(`$KV.${buckets.ops}.`) && c.data === "true" ? "maybe" : c.data),
    })),
    { seed, numRuns: count },
  );
}

/**
 * Command lines for `bosun`: its client commands with near-valid and
 * hostile arguments (ids, JSON payloads, flag values, assignments), unknown
 * commands and flags. `watch` is left out (it follows a job for up to a
 * day) and waits are kept short.
 */
export function cliCases(seed: number, count: number, queue: string): CliCase[] {
  const arg = fc.oneof({ weight: 3, arbitrary: anyString.filter((s) => !s.includes("\u0000")) }, { weight: 1, arbitrary: fc.constantFrom("--", "-", "--help", "-x", "--no-such-flag") });
  const id = fc.oneof(issuedId(queue), token, arg);
  const oneJob = fc.tuple(fc.constantFrom("status", "result", "cancel", "retry"), id).map(([c, i]) => [c, i]);
  const payload = fc.oneof(json.map((v) => JSON.stringify(v)), arg, fc.constant(deep(5000)));
  const submit = fc
    .tuple(
      // No sleep: a random payload could hold a process past the run (the HTTP cases cap its ms).
      fc.oneof(fc.constantFrom("echo", "noop", "fail"), arg),
      sometimes(payload, 2),
      someOf(
        {
          "--queue": fc.oneof(fc.constant(queue), arg),
          "--wait-ms": fc.oneof(fc.integer({ min: 0, max: 3000 }).map(String), arg),
          "--max-attempts": fc.oneof(fc.integer({ min: 0, max: 200 }).map(String), arg),
          "--timeout-ms": fc.oneof(fc.integer({ min: 0, max: 60_000 }).map(String), arg),
        },
        3,
      ),
    )
    .map(([type, body, flags]) => ["submit", type, ...(body === undefined ? [] : [body]), ...Object.entries(flags).flatMap(([k, v]) => [k, String(v)])]);
  const jobs = someOf(
    {
      "--state": fc.oneof(fc.constantFrom("queued", "succeeded", "dead"), arg),
      "--queue": fc.oneof(fc.constant(queue), arg),
      "--type": fc.oneof(fc.constant("echo"), arg),
      "--limit": fc.oneof(fc.integer({ min: 0, max: 2000 }).map(String), arg),
      "--cursor": arg,
    },
    3,
  ).map((flags) => ["jobs", ...Object.entries(flags).flatMap(([k, v]) => [k, String(v)])]);
  const platform = fc.oneof(
    fc.constant(["workers"]),
    fc.constant(["queue"]),
    fc.constant(["ops", "get"]),
    // Never a pause: the other fuzz runs share this queue.
    fc.array(fc.oneof(fc.constantFrom("submissions_paused=false", `${queue}.submissions_paused=false`, "submissions_paused=maybe", "=", "a.b.c=false"), arg), { minLength: 0, maxLength: 2 }).map((a) => ["ops", "set", ...a]),
  );
  const junk = fc.array(arg, { minLength: 0, maxLength: 3 });
  const line = fc
    .tuple(fc.oneof({ weight: 3, arbitrary: oneJob }, { weight: 3, arbitrary: submit }, { weight: 2, arbitrary: jobs }, { weight: 2, arbitrary: platform }, { weight: 1, arbitrary: junk }), sometimes(fc.constant("--json"), 3))
    .map(([argv, json]) => [...argv, ...(json ? [json] : [])].map((a) => a.replace(/submissions_paused=true/g, "submissions_paused=false")));
  return fc.sample(line, { seed, numRuns: count });
}
