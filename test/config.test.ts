/**
 * A bad configuration value stops `bosun supervisor` / `bosun gateway` at
 * start with a non-zero exit and one clear line on stderr.
 */
import t from "tap";
import { runCli } from "./helpers/bosun.js";
import { freePort } from "./helpers/ports.js";

interface Case {
  name: string;
  args: string[];
  env?: Record<string, string>;
  /** What the one line must mention (the flag or variable at fault). */
  mentions: RegExp;
}

const cases: Case[] = [
  { name: "supervisor --min above --max", args: ["supervisor", "--min", "5", "--max", "2"], mentions: /--min/ },
  { name: "supervisor --max not a number", args: ["supervisor", "--max", "abc"], mentions: /--max/ },
  { name: "supervisor --max zero", args: ["supervisor", "--max", "0"], mentions: /--max/ },
  { name: "supervisor --queues with a bad name", args: ["supervisor", "--queues", "ok,not ok!"], mentions: /--queues/ },
  { name: "supervisor --lease-ms below its minimum", args: ["supervisor", "--lease-ms", "5"], mentions: /--lease-ms/ },
  { name: "supervisor unknown flag", args: ["supervisor", "--no-such-flag", "1"], mentions: /no-such-flag/ },
  { name: "supervisor BOSUN_MAX not a number", args: ["supervisor"], env: { BOSUN_MAX: "many" }, mentions: /BOSUN_MAX/ },
  { name: "supervisor NATS_URL not a NATS URL", args: ["supervisor"], env: { NATS_URL: "http://127.0.0.1:1" }, mentions: /NATS_URL/ },
  { name: "gateway --port out of range", args: ["gateway", "--port", "70000"], mentions: /--port/ },
  { name: "gateway --request-timeout-ms too small", args: ["gateway", "--request-timeout-ms", "1"], mentions: /--request-timeout-ms/ },
];

// Nothing listens here: a process that wrongly got past its config check fails differently.
const deadUrl = `nats://127.0.0.1:${await freePort()}`;

const results = await Promise.all(cases.map((c) => runCli(c.args, { env: { NATS_URL: deadUrl, ...c.env }, timeoutMs: 20_000 })));

cases.forEach((c, i) => {
  const r = results[i]!;
  t.test(c.name, async (t) => {
    t.not(r.code, 0, "exits non-zero");
    t.equal(r.signal, null, "exits by itself (not killed by the test's timeout)");
    const lines = r.stderr.trimEnd().split("\n");
    t.equal(lines.length, 1, "exactly one line on stderr", { stderr: r.stderr });
    t.match(lines[0], /^bosun: /, "the line says who is talking");
    t.match(lines[0], c.mentions, `the line names the setting at fault (${c.mentions})`);
    t.notMatch(r.stderr, /\n\s+at /, "no stack trace");
    t.equal(r.stdout, "", "nothing on stdout");
  });
});
