/**
 * Job files (CONTRACT.md "Handlers", files routes): stored in the object
 * store bucket bosun_files, listed and located for the gateway's download.
 */
import type { z } from "zod";
import { BosunError, type operations } from "../contract/index.js";

type Io<N extends keyof typeof operations> = [z.output<(typeof operations)[N]["request"]>, z.output<(typeof operations)[N]["response"]>];

export class Files {
  readonly api = {
    list: async (_req: Io<"jobs_files_list">[0]): Promise<Io<"jobs_files_list">[1]> => {
      throw new BosunError("unavailable", "job files are not built yet");
    },
    locate: async (_req: Io<"jobs_files_get">[0]): Promise<Io<"jobs_files_get">[1]> => {
      throw new BosunError("unavailable", "job files are not built yet");
    },
  };
}
