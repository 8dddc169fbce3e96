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
  api,
  controlSubject,
  CORRELATION_HEADER,
  decodeWith,
  EmptyRequest,
  encodeJson,
  JobIdRequest,
  ListJobsRequest,
  OpsPatch,
  RecycleRequest,
  SERVICE_NAME,
  SubmitRequest,
  toBosunError,
} from "../contract/index.js";
import { VERSION } from "../platform/version.js";
import { isMaxPayloadError, SERVICE_ERROR_HEADER, tooLargeForNats } from "../platform/nats.js";
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

type Endpoint<S extends z.ZodType> = {
  subject: string;
  schema: S;
  handle(input: z.output<S>, msg: ServiceMsg): Promise<unknown>;
};

const endpoint = <S extends z.ZodType>(e: Endpoint<S>): Endpoint<z.ZodType> => e as unknown as Endpoint<z.ZodType>;

export async function startApi(nc: NatsConnection, deps: ApiDeps): Promise<Service> {
  const { intake, store, log, workerId, operations } = deps;
  const endpoints: Record<string, Endpoint<z.ZodType>> = {
    jobs_submit: endpoint({
      subject: api.jobsSubmit,
      schema: SubmitRequest,
      handle: (req, msg) => intake.submit(req, msg.headers?.get(CORRELATION_HEADER) || undefined),
    }),
    jobs_get: endpoint({ subject: api.jobsGet, schema: JobIdRequest, handle: (req) => store.status(req.job_id) }),
    jobs_result: endpoint({ subject: api.jobsResult, schema: JobIdRequest, handle: (req) => intake.result(req.job_id) }),
    jobs_cancel: endpoint({ subject: api.jobsCancel, schema: JobIdRequest, handle: (req) => intake.cancel(req.job_id) }),
    jobs_retry: endpoint({ subject: api.jobsRetry, schema: JobIdRequest, handle: (req) => intake.retry(req.job_id) }),
    jobs_list: endpoint({ subject: api.jobsList, schema: ListJobsRequest, handle: async (req) => ({ jobs: await intake.list(req) }) }),
    workers_list: endpoint({ subject: api.workersList, schema: EmptyRequest, handle: async () => ({ workers: operations.workers() }) }),
    workers_recycle: endpoint({ subject: api.workersRecycle, schema: RecycleRequest, handle: (req) => operations.recycle(req) }),
    queue_status: endpoint({ subject: api.queueStatus, schema: EmptyRequest, handle: async () => ({ queues: await operations.queues() }) }),
    ops_get: endpoint({ subject: api.opsGet, schema: EmptyRequest, handle: async () => operations.opsFlags() }),
    ops_set: endpoint({ subject: api.opsSet, schema: OpsPatch, handle: (patch) => operations.setOps(patch) }),
  };
  const service = await new Svcm(nc).add({
    name: SERVICE_NAME,
    version: VERSION,
    description: "Bosun job runtime API",
    metadata: { worker_id: workerId },
  });
  for (const [name, e] of Object.entries(endpoints)) {
    service.addEndpoint(name, {
      subject: e.subject,
      handler: (err, msg) => {
        if (err) {
          log.error({ err, endpoint: name }, "service endpoint failed");
          return;
        }
        void answer(msg, () => e.handle(decodeWith(e.schema, msg.data), msg), log, name);
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
    const error = isMaxPayloadError(err) ? tooLargeForNats(err) : toBosunError(err);
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
