/**
 * Remote compute servers (CONTRACT.md "Remote compute servers"): enroll
 * tokens, server credentials, leases in KV with fencing tokens, the lease
 * reaper. docs/compute.md tells the protocol.
 */
import type { MsgHdrs } from "@nats-io/nats-core";
import type { z } from "zod";
import { BosunError, type operations } from "../contract/index.js";

type Req<N extends keyof typeof operations> = z.output<(typeof operations)[N]["request"]>;
type Res<N extends keyof typeof operations> = z.output<(typeof operations)[N]["response"]>;

const notYet = (): never => {
  throw new BosunError("unavailable", "compute servers are not built yet");
};

export class Compute {
  readonly api = {
    createEnrollToken: async (_req: Req<"compute_enroll_tokens_create">): Promise<Res<"compute_enroll_tokens_create">> => notYet(),
    enroll: async (_req: Req<"compute_servers_enroll">): Promise<Res<"compute_servers_enroll">> => notYet(),
    listServers: async (): Promise<Res<"compute_servers_list">> => notYet(),
    revoke: async (_req: Req<"compute_servers_revoke">): Promise<Res<"compute_servers_revoke">> => notYet(),
    lease: async (_req: Req<"compute_lease">, _headers: MsgHdrs | undefined): Promise<Res<"compute_lease">> => notYet(),
    heartbeat: async (_req: Req<"compute_heartbeat">, _headers: MsgHdrs | undefined): Promise<Res<"compute_heartbeat">> => notYet(),
    result: async (_req: Req<"compute_result">, _headers: MsgHdrs | undefined): Promise<Res<"compute_result">> => notYet(),
    failed: async (_req: Req<"compute_failed">, _headers: MsgHdrs | undefined): Promise<Res<"compute_failed">> => notYet(),
  };
}
