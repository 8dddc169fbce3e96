/** The `process` kind of execution actor: a child process forked from actors/process.ts, spoken to over IPC. */
import { fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { Logger } from "pino";
import type { ActorEvents, ExecutionActor } from "./actor.js";
import type { ChildMessage, ParentCommand } from "./protocol.js";

const PROCESS_ENTRY = fileURLToPath(new URL("./process.js", import.meta.url));
const ignore = () => undefined;

export function forkProcessActor(opts: { env: NodeJS.ProcessEnv; log: Logger }, events: ActorEvents): ExecutionActor {
  const child = fork(PROCESS_ENTRY, [], { env: opts.env, stdio: ["ignore", "inherit", "inherit", "ipc"], serialization: "json" });
  const pid = child.pid ?? -1;
  child.on("message", (msg: ChildMessage) => events.message(msg));
  child.once("exit", (code, signal) => events.exit({ code, signal }));
  child.on("error", (err) => opts.log.warn({ err, child_pid: pid }, "execution process channel error"));
  return {
    kind: "process",
    pid,
    threadId: undefined,
    // A child that is gone already gets nothing: its exit event settles what it held.
    send: (cmd: ParentCommand) => {
      if (child.connected) child.send(cmd, ignore);
    },
    // Closing the IPC channel lets the child exit on its own.
    close: () => {
      if (child.connected) child.disconnect();
    },
    kill: () => {
      child.kill("SIGKILL");
    },
  };
}
