/** The `process` kind of execution actor: a child process forked from actors/process.ts, spoken to over IPC. */
import { fork } from "node:child_process";
import { randomUUID } from "node:crypto";
import { closeSync, openSync, readSync, unlinkSync, writeSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { Logger } from "pino";
import type { ActorEvents, ExecutionActor } from "./actor.js";
import type { ChildWrite, ParentCommand } from "./protocol.js";

const PROCESS_ENTRY = fileURLToPath(new URL("./process.js", import.meta.url));
/** Where the child finds its start ledger: the fd after stdin, stdout, stderr and the IPC channel. */
const LEDGER_FD_IN_CHILD = 4;
const ignore = () => undefined;
const EXIT_AFTER_CHANNEL_MS = 200;

/**
 * The start ledger: a 4-byte file both sides hold open and nobody else can
 * find (unlinked once the child has it), so a child killed mid-batch still
 * tells which of its runs had started.
 */
function openLedger(): { fd: number; file: string } {
  const file = path.join(os.tmpdir(), `bosun-ledger-${randomUUID()}`);
  const fd = openSync(file, "w+", 0o600);
  writeSync(fd, Buffer.alloc(4), 0, 4, 0);
  return { fd, file };
}

export function forkProcessActor(opts: { env: NodeJS.ProcessEnv; log: Logger }, events: ActorEvents): ExecutionActor {
  const { fd: ledgerFd, file: ledgerFile } = openLedger();
  let child;
  try {
    child = fork(PROCESS_ENTRY, [], {
      env: { ...opts.env, BOSUN_LEDGER_FD: String(LEDGER_FD_IN_CHILD) },
      stdio: ["ignore", "inherit", "inherit", "ipc", ledgerFd],
      serialization: "json",
    });
  } catch (err) {
    closeSync(ledgerFd);
    throw err;
  } finally {
    unlinkSync(ledgerFile);
  }
  const pid = child.pid ?? -1;
  let closed = false;
  const startedUpTo = (): number => {
    if (closed) return 0;
    const buf = Buffer.alloc(4);
    readSync(ledgerFd, buf, 0, 4, 0);
    return buf.readInt32LE();
  };
  child.on("message", (msgs: ChildWrite) => events.messages(msgs));
  // The exit is reported once the channel is closed too, so every message the child wrote before
  // it died (a done, say) is read first; a channel still open shortly after the exit (a grandchild
  // holding it) does not hold the report back for long.
  let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const report = () => {
    if (closed || !exit) return;
    events.exit(exit);
    closed = true;
    closeSync(ledgerFd);
  };
  child.once("disconnect", report);
  child.once("exit", (code, signal) => {
    exit = { code, signal };
    if (!child.connected) report();
    else setTimeout(report, EXIT_AFTER_CHANNEL_MS).unref();
  });
  child.on("error", (err) => opts.log.warn({ err, child_pid: pid }, "execution process channel error"));
  return {
    kind: "process",
    pid,
    threadId: undefined,
    // A child that is gone already gets nothing: its exit event settles what it held.
    send: (cmds: ParentCommand[]) => {
      if (child.connected) child.send(cmds, ignore);
    },
    // Closing the IPC channel lets the child exit on its own.
    close: () => {
      if (child.connected) child.disconnect();
    },
    kill: () => {
      child.kill("SIGKILL");
    },
    startedUpTo,
  };
}
