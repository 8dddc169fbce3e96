/** What helpers need from a tap Test: a teardown hook, and a way to report on failure. */
export interface TeardownHost {
  teardown(fn: () => unknown): void;
  passing(): boolean;
  comment(...args: unknown[]): void;
}

/** At teardown, when the test failed, print the last lines a process wrote (with a note if it already died). */
export function reportOnFailure(t: TeardownHost, describe: () => string): void {
  t.teardown(() => {
    if (!t.passing()) t.comment(describe());
  });
}
