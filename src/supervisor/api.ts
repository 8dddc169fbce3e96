/**
 * The `bosun` NATS service: request/reply endpoints served by every
 * supervisor in one queue group, so any one of them answers. Errors become
 * `{"error": …}` replies with the Nats-Service-Error headers, in one place,
 * and count in `$SRV.STATS`.
 */
import { Svcm, type Service, type ServiceStats } from "@nats-io/services";
import { headers as natsHeaders, type Msg, type NatsConnection, type Subscription } from "@nats-io/nats-core";
import type { Logger } from "pino";
import type { z } from "zod";
import {
  BosunError,
  controlSubject,
  CORRELATION_HEADER,
  decodeWith,
  encodeJson,
  errorReply,
  headerCorrelationId,
  RETRY_AFTER_HEADER,
  RETRY_AFTER_SECONDS,
  SERVICE_NAME,
  SubmitRequest,
} from "../contract/index.js";
import { operations, type OperationName } from "../contract/index.js";
import { VERSION } from "../platform/version.js";
import { onMessage } from "../platform/guard.js";
import { isMaxPayloadError, SERVICE_ERROR_HEADER, SERVICE_ERROR_TEXT_HEADER, tooLargeForNats } from "../platform/nats.js";
import { hop, SpanKind, TRACEPARENT, validTraceparent, type Hop } from "../platform/tracing.js";
import { unavailableOf } from "../platform/nats-errors.js";
import { authorizationHeaderOf, type Gate, type KeyStore } from "../auth/index.js";
import type { Intake } from "./intake.js";
import type { JobActions } from "./job-actions.js";
import type { Operations } from "./operations.js";
import type { ScheduleService } from "../schedules/index.js";
import type { Compute } from "../compute/index.js";
import type { Files } from "../files/index.js";
import type { Targets } from "../targets/index.js";

export interface ApiDeps {
  workerId: string;
  intake: Intake;
  actions: JobActions;
  operations: Operations;
  keys: KeyStore;
  gate: Gate;
  schedules: ScheduleService;
  compute: Compute["api"];
  files: Files["api"];
  targets: Targets["api"];
  /** The ops flag compute_endpoints_enabled: false makes every compute operation unknown. */
  computeEnabled(): boolean;
  log: Logger;
}

/** One handler per operation of the contract's table: a missing one is a type error. */
type Handlers = { [N in OperationName]: (input: z.output<(typeof operations)[N]["request"]>, msg: Msg, trace: Hop) => Promise<unknown> };

/** The request's correlation id header, if it is a valid one. */
const correlationOf = (msg: Msg): string | undefined => headerCorrelationId(msg.headers?.get(CORRELATION_HEADER) || undefined);
/** The request's traceparent header, if it is a valid one (it goes into the job's envelope). */
const traceparentOf = (msg: Msg): string | undefined => {
  const value = msg.headers?.get(TRACEPARENT);
  return validTraceparent(value) ? value : undefined;
};
/** The caller's key, passed on when a request is forwarded to another supervisor (which checks it again). */
export const authorizationOf = (msg: Msg): string | undefined => authorizationHeaderOf(msg.headers);

export async function startApi(nc: NatsConnection, deps: ApiDeps): Promise<Service> {
  const { intake, actions, log, workerId, operations: ops, keys, gate, schedules, compute, files, targets } = deps;
  const handlers: Handlers = {
    jobs_submit: (req, msg, trace) => intake.submit(req, { correlationId: correlationOf(msg), traceparent: trace.traceparent, authorization: authorizationOf(msg) }),
    jobs_submit_batch: (req, msg, trace) => intake.submitBatch(req.jobs, { correlationId: correlationOf(msg), traceparent: trace.traceparent, authorization: authorizationOf(msg) }),
    jobs_get: (req) => actions.status(req.job_id),
    jobs_result: (req) => actions.result(req.job_id),
    jobs_cancel: (req) => actions.cancel(req.job_id),
    jobs_retry: (req) => actions.retry(req.job_id),
    jobs_list: (req) => actions.list(req),
    workers_list: async () => ({ workers: ops.workers() }),
    workers_recycle: (req, msg) => ops.recycle(req, authorizationOf(msg)),
    queue_status: async () => ({ queues: await ops.queues() }),
    ops_get: async () => ops.opsFlags(),
    ops_set: (patch) => ops.setOps(patch),
    keys_create: (req) => keys.create(req),
    keys_list: async () => ({ keys: keys.list() }),
    keys_revoke: (req) => keys.revoke(req.key_id),
    schedules_create: (spec) => schedules.create(spec),
    schedules_list: async () => schedules.list(),
    schedules_get: (req) => schedules.get(req.schedule_id),
    schedules_delete: (req) => schedules.delete(req.schedule_id),
    schedules_pause: (req) => schedules.setPaused(req.schedule_id, true),
    schedules_resume: (req) => schedules.setPaused(req.schedule_id, false),
    schedules_trigger: (req) => schedules.trigger(req.schedule_id),
    jobs_files_list: (req) => files.list(req),
    jobs_files_get: (req) => files.locate(req),
    compute_enroll_tokens_create: (req) => compute.createEnrollToken(req),
    compute_servers_enroll: (req) => compute.enroll(req),
    compute_servers_list: () => compute.listServers(),
    compute_servers_revoke: (req) => compute.revoke(req),
    compute_lease: (req, msg) => compute.lease(req, msg.headers),
    compute_heartbeat: (req, msg) => compute.heartbeat(req, msg.headers),
    compute_result: (req, msg) => compute.result(req, msg.headers),
    compute_failed: (req, msg) => compute.failed(req, msg.headers),
    compute_outcomes: (req, msg) => compute.outcomes(req, msg.headers),
    compute_file_check: (req, msg) => files.fileCheck(req, msg.headers),
    compute_file_get: (req, msg) => files.leasedFile(req, msg.headers),
    targets_list: () => targets.list(),
    targets_activate: (req) => targets.activate(req),
  };
  const service = await new Svcm(nc).add({
    name: SERVICE_NAME,
    version: VERSION,
    description: "Bosun job runtime API",
    metadata: { worker_id: workerId },
  });
  const stats = new EndpointStats();
  for (const name of Object.keys(operations) as OperationName[]) {
    const { subject, request } = operations[name];
    const handle = handlers[name] as (input: unknown, msg: Msg, trace: Hop) => Promise<unknown>;
    // Off, a compute operation is not there at all (404), whoever asks: decided before anything else.
    const compute = operations[name].tag === "compute";
    const admit = (msg: Msg) => {
      if (compute && !deps.computeEnabled()) throw new BosunError("not_found", "the compute endpoints are turned off (ops flag compute_endpoints_enabled)");
      return gate.admit(name, msg.headers, () => decodeWith(request, msg.data) as never);
    };
    const count = stats.endpoint(name);
    service.addEndpoint(name, {
      subject,
      handler: (err, msg) => {
        if (err) {
          log.error({ err, endpoint: name }, "service endpoint failed");
          return;
        }
        // The caller's trace continues here, and on into the job a submit makes.
        const trace = hop(`bosun.api ${name}`, SpanKind.SERVER, msg.headers?.get(TRACEPARENT), { attributes: () => ({ "messaging.destination.name": subject }) });
        // The one authorization check: nothing reaches a handler without it.
        void answer(msg, async () => handle(await admit(msg), msg, trace), log, name, count).finally(() => trace.end());
      },
    });
  }
  stats.reportThrough(service);
  return service;
}

/**
 * Replies with the work's JSON, or with `{"error": …}` and the service error
 * headers: the one place a failure becomes a NATS reply, for the service's
 * endpoints and for the supervisor's own control subjects alike. Never
 * throws or rejects: whatever went wrong, the error reply is small and
 * header-safe (errorReply), so sending it cannot fail in turn.
 */
export async function answer(msg: Msg, work: () => Promise<unknown>, log: Logger, endpointName: string, count?: EndpointCounter): Promise<void> {
  const started = performance.now();
  try {
    msg.respond(encodeJson(await work()));
    count?.ok(performance.now() - started);
  } catch (err) {
    // A cluster electing a leader (or a node gone) is unavailability, never internal_error.
    const reply = errorReply(isMaxPayloadError(err) ? tooLargeForNats(err) : (unavailableOf(err) ?? err));
    if (reply.status >= 500 && reply.body.error.code === "internal_error") log.error({ err, endpoint: endpointName }, "request failed");
    const headers = natsHeaders();
    headers.set(SERVICE_ERROR_HEADER, String(reply.status));
    headers.set(SERVICE_ERROR_TEXT_HEADER, reply.summary);
    // As over HTTP: a 503 says when to come back.
    if (reply.status === 503) headers.set(RETRY_AFTER_HEADER, String(RETRY_AFTER_SECONDS));
    try {
      msg.respond(encodeJson(reply.body), { headers });
    } catch (respondErr) {
      // Only a closed or draining connection gets here: the requester times out.
      log.warn({ err: respondErr, endpoint: endpointName }, "could not send an error reply");
    }
    count?.failed(performance.now() - started, `${reply.status}:${reply.summary}`);
  }
}

/**
 * Submits another supervisor forwarded here because this one has the
 * handler. The caller's key came along and is checked here again: the
 * control subjects are no way around the check.
 */
export function serveForwardedSubmits(nc: NatsConnection, workerId: string, intake: Intake, gate: Gate, log: Logger): Subscription {
  return nc.subscribe(controlSubject(workerId, "submit"), {
    callback: onMessage(log, "forwarded submit", (msg) =>
      answer(
        msg,
        async () =>
          intake.submit(await gate.admit("jobs_submit", msg.headers, () => decodeWith(SubmitRequest, msg.data)), {
            correlationId: correlationOf(msg),
            forwarded: true,
            traceparent: traceparentOf(msg),
            authorization: authorizationOf(msg),
          }),
        log,
        "forwarded_submit",
      ),
    ),
  });
}

export interface EndpointCounter {
  ok(ms: number): void;
  failed(ms: number, lastError: string): void;
}

/**
 * Request, error and time counters per endpoint, measured around the whole
 * (asynchronous) handling. @nats-io/services 3.0.0-25 times only the
 * synchronous part of a handler, counts an error only when the handler
 * throws synchronously, and leaves `last_error` out until then, which the
 * official `io.nats.micro.v1.stats_response` schema requires: its STATS
 * reply is filled from here instead.
 */
class EndpointStats {
  readonly #endpoints = new Map<string, { requests: number; errors: number; lastError: string; totalMs: number }>();

  endpoint(name: string): EndpointCounter {
    const e = { requests: 0, errors: 0, lastError: "", totalMs: 0 };
    this.#endpoints.set(name, e);
    return {
      ok: (ms) => {
        e.requests++;
        e.totalMs += ms;
      },
      failed: (ms, lastError) => {
        e.requests++;
        e.errors++;
        e.totalMs += ms;
        e.lastError = lastError;
      },
    };
  }

  /** Makes the service's own stats() (which answers $SRV.STATS) report these counters. */
  reportThrough(service: Service): void {
    const own = service.stats.bind(service);
    service.stats = async (): Promise<ServiceStats> => {
      const stats = await own();
      stats.endpoints = (stats.endpoints ?? []).map((endpoint) => {
        const e = this.#endpoints.get(endpoint.name);
        if (!e) return { ...endpoint, last_error: endpoint.last_error ?? "" };
        const processing = Math.round(e.totalMs * 1e6);
        return {
          ...endpoint,
          num_requests: e.requests,
          num_errors: e.errors,
          last_error: e.lastError,
          processing_time: processing,
          average_processing_time: e.requests > 0 ? Math.round(processing / e.requests) : 0,
        };
      });
      return stats;
    };
  }
}
