/**
 * The `bosun` NATS service: request/reply endpoints served by every
 * supervisor in one queue group, so any one of them answers. Errors become
 * `{"error": …}` replies with the Nats-Service-Error headers, in one place.
 */
import { Svcm, type Service, type ServiceMsg } from "@nats-io/services";
import { headers as natsHeaders, type Msg, type NatsConnection, type Subscription } from "@nats-io/nats-core";
import type { Logger } from "pino";
import type { z } from "zod";
import {
  controlSubject,
  CORRELATION_HEADER,
  decodeWith,
  encodeJson,
  SERVICE_NAME,
  SubmitRequest,
  toBosunError,
} from "../contract/index.js";
import { operations, type OperationName } from "../contract/index.js";
import { VERSION } from "../platform/version.js";
import { isMaxPayloadError, SERVICE_ERROR_HEADER, tooLargeForNats } from "../platform/nats.js";
import { unavailableOf } from "../platform/nats-errors.js";
import type { Intake } from "./intake.js";
import type { Operations } from "./operations.js";
import type { JobStore } from "./store.js";

export interface ApiDeps {
  workerId: string;
  intake: Intake;
  operations: Operations;
  store: JobStore;
  log: Logger;
}

/** One handler per operation of the contract's table: a missing one is a type error. */
type Handlers = { [N in OperationName]: (input: z.output<(typeof operations)[N]["request"]>, msg: ServiceMsg) => Promise<unknown> };

export async function startApi(nc: NatsConnection, deps: ApiDeps): Promise<Service> {
  const { intake, store, log, workerId, operations: ops } = deps;
  const handlers: Handlers = {
    jobs_submit: (req, msg) => intake.submit(req, msg.headers?.get(CORRELATION_HEADER) || undefined),
    jobs_get: (req) => store.status(req.job_id),
    jobs_result: (req) => intake.result(req.job_id),
    jobs_cancel: (req) => intake.cancel(req.job_id),
    jobs_retry: (req) => intake.retry(req.job_id),
    jobs_list: async (req) => ({ jobs: await intake.list(req) }),
    workers_list: async () => ({ workers: ops.workers() }),
    workers_recycle: (req) => ops.recycle(req),
    queue_status: async () => ({ queues: await ops.queues() }),
    ops_get: async () => ops.opsFlags(),
    ops_set: (patch) => ops.setOps(patch),
  };
  const service = await new Svcm(nc).add({
    name: SERVICE_NAME,
    version: VERSION,
    description: "Bosun job runtime API",
    metadata: { worker_id: workerId },
  });
  for (const name of Object.keys(operations) as OperationName[]) {
    const { subject, request } = operations[name];
    const handle = handlers[name] as (input: unknown, msg: ServiceMsg) => Promise<unknown>;
    service.addEndpoint(name, {
      subject,
      handler: (err, msg) => {
        if (err) {
          log.error({ err, endpoint: name }, "service endpoint failed");
          return;
        }
        void answer(msg, () => handle(decodeWith(request, msg.data), msg), log, name);
      },
    });
  }
  return service;
}

/**
 * Replies with the work's JSON, or with `{"error": …}` and the service error
 * headers: the one place a failure becomes a reply, for the service's
 * endpoints and for the supervisor's own control subjects alike.
 */
export async function answer(msg: Msg, work: () => Promise<unknown>, log: Logger, endpointName: string): Promise<void> {
  try {
    msg.respond(encodeJson(await work()));
  } catch (err) {
    // A cluster electing a leader (or a node gone) is unavailability, never internal_error.
    const error = isMaxPayloadError(err) ? tooLargeForNats(err) : (unavailableOf(err) ?? toBosunError(err));
    if (error.code === "internal_error") log.error({ err, endpoint: endpointName }, "request failed");
    const headers = natsHeaders();
    headers.set(SERVICE_ERROR_HEADER, String(error.status));
    headers.set("Nats-Service-Error", error.message);
    msg.respond(encodeJson(error.toBody()), { headers });
  }
}

/** Submits another supervisor forwarded here because this one has the handler. */
export function serveForwardedSubmits(nc: NatsConnection, workerId: string, intake: Intake, log: Logger): Subscription {
  return nc.subscribe(controlSubject(workerId, "submit"), {
    callback: (_err, msg) =>
      void answer(msg, () => intake.submit(decodeWith(SubmitRequest, msg.data), msg.headers?.get(CORRELATION_HEADER) || undefined, true), log, "forwarded_submit"),
  });
}
