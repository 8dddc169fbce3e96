/** The `thread` kind of execution actor: a worker thread running actors/thread.ts, spoken to over its message port. */
import { Worker } from "node:worker_threads";
import type { ActorEvents, ExecutionActor } from "./actor.js";
import type { ChildWrite, CloseCommand, ParentCommand } from "./protocol.js";

const THREAD_ENTRY = new URL("./thread.js", import.meta.url);

export function startThreadActor(opts: { env: NodeJS.ProcessEnv; heapLimitMb: number }, events: ActorEvents): ExecutionActor {
  // The start ledger (see protocol.ts): one Int32 both threads see.
  const ledger = new SharedArrayBuffer(4);
  const started = new Int32Array(ledger);
  const worker = new Worker(THREAD_ENTRY, { env: opts.env, workerData: { ledger }, resourceLimits: { maxOldGenerationSizeMb: opts.heapLimitMb } });
  // threadId reads -1 once the thread has ended; the pool still names it afterwards.
  const threadId = worker.threadId;
  let exited = false;
  let lastError: string | undefined;
  worker.on("message", (msgs: ChildWrite) => events.messages(msgs));
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
    send: (cmds: ParentCommand[]) => {
      if (!exited) worker.postMessage(cmds);
    },
    close: () => {
      if (!exited) worker.postMessage({ t: "close" } satisfies CloseCommand);
    },
    kill: () => {
      void worker.terminate();
    },
    startedUpTo: () => Atomics.load(started, 0),
  };
}
