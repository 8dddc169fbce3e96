/** The `thread` kind of execution actor: a worker thread running actors/thread.ts, spoken to over its message port. */
import { Worker } from "node:worker_threads";
import type { ActorEvents, ExecutionActor } from "./actor.js";
import type { ChildMessage, CloseCommand, ParentCommand } from "./protocol.js";

const THREAD_ENTRY = new URL("./thread.js", import.meta.url);

export function startThreadActor(opts: { env: NodeJS.ProcessEnv; heapLimitMb: number }, events: ActorEvents): ExecutionActor {
  const worker = new Worker(THREAD_ENTRY, { env: opts.env, resourceLimits: { maxOldGenerationSizeMb: opts.heapLimitMb } });
  // threadId reads -1 once the thread has ended; the pool still names it afterwards.
  const threadId = worker.threadId;
  let exited = false;
  let lastError: string | undefined;
  worker.on("message", (msg: ChildMessage) => events.message(msg));
  // An uncaught error or the heap limit ends the thread; its exit event follows.
  worker.on("error", (err) => (lastError = `${(err as NodeJS.ErrnoException).code ?? err.name}: ${err.message}`));
  worker.once("exit", (code) => {
    exited = true;
    events.exit({ code, signal: null, error: lastError });
  });
  return {
    kind: "thread",
    pid: process.pid,
    threadId,
    send: (cmd: ParentCommand | CloseCommand) => {
      if (!exited) worker.postMessage(cmd);
    },
    close: () => {
      if (!exited) worker.postMessage({ t: "close" } satisfies CloseCommand);
    },
    kill: () => {
      void worker.terminate();
    },
  };
}
