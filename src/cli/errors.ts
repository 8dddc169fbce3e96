/**
 * The exit codes of every `bosun` command, and the one error a command
 * throws to end with one of them (printed as one line, never a stack).
 */
export const ExitCode = {
  ok: 0,
  /** The command ran and failed: an error reply from the API, a server that could not start. */
  failed: 1,
  /** Bad arguments, flags or configuration values: nothing was done. */
  usage: 2,
  /** NATS is not reachable, or no supervisor answered: retry later. */
  unavailable: 3,
  /** `bosun dev` stopped by a second Ctrl-C: jobs still running were killed. */
  forced: 130,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

export class CommandError extends Error {
  override readonly name = "CommandError";
  constructor(
    message: string,
    readonly exitCode: ExitCode = ExitCode.failed,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}
