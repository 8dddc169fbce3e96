/**
 * Targets and cutover (CONTRACT.md "Targets and ops flags"): each queue's
 * active target in the ops bucket; GET /api/targets, PUT …/active.
 */
import type { z } from "zod";
import { BosunError, type operations } from "../contract/index.js";

type Io<N extends keyof typeof operations> = [z.output<(typeof operations)[N]["request"]>, z.output<(typeof operations)[N]["response"]>];

export class Targets {
  readonly api = {
    list: async (): Promise<Io<"targets_list">[1]> => {
      throw new BosunError("unavailable", "targets are not built yet");
    },
    activate: async (_req: Io<"targets_activate">[0]): Promise<Io<"targets_activate">[1]> => {
      throw new BosunError("unavailable", "targets are not built yet");
    },
  };
}
