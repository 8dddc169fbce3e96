/**
 * A real three-node JetStream cluster (each node in its own network
 * namespace when the machine allows it), a supervisor on every node, a
 * gateway: the stream leader's node SIGKILLed mid-run, a node back with an
 * empty disk, and how replicas are decided and reported.
 * Every test ends with exact counts from the run log (see cluster-run.ts).
 */
import t from "tap";
import { setTimeout as sleep } from "node:timers/promises";
import { runCli, startSupervisor } from "./helpers/bosun.js";
import { NatsCluster } from "./helpers/cluster.js";
import { ClusterRun } from "./helpers/cluster-run.js";
import { secs } from "./helpers/faults.js";
import { uniqueName, waitFor } from "./helpers/wait.js";
import { TOPOLOGY_STREAMS } from "../src/platform/topology.js";

const JOBS = 3000;
const RATE = 300;
// The topology table as built (dist/): every stream and bucket Bosun provisions.
const BOSUN_STREAMS: readonly string[] = TOPOLOGY_STREAMS;

t.test(`R3: ${JOBS} sleep-10ms jobs, the jobs stream leader's node SIGKILLed mid-run and restarted: none lost, submits 503 never 500`, async (t) => {
  const run = await ClusterRun.start(t);
  t.comment(`cluster: ${run.cluster.mode} (${run.cluster.url})`);
  for (const stream of BOSUN_STREAMS) {
    const info = await run.jsm.streams.info(stream);
    t.equal(info.config.num_replicas, 3, `${stream} has 3 replicas (detected from the cluster)`);
  }
  // Nothing provisioned outside the table (a stream or bucket added elsewhere would keep R1).
  const onServer: string[] = [];
  for await (const name of run.jsm.streams.names()) onServer.push(name);
  t.same(onServer.filter((n) => !BOSUN_STREAMS.includes(n)), [], "every stream on the server is in the topology table");

  run.startReading();
  const submitting = run.submitPaced(0, JOBS, RATE);
  await run.untilStarted(JOBS / 4);
  const victim = await run.cluster.leaderOf(run.jsm, "BOSUN_JOBS");
  if (victim === undefined) throw new Error("BOSUN_JOBS has no leader before the kill");
  const killedAt = run.now();
  await run.cluster.kill(victim);
  // Back once the survivors have taken over (or after 10 s): a restart forces elections of its own.
  await waitFor(() => run.submits.some((o) => o.code === "ok" && o.sentAt > killedAt + 1000), { timeoutMs: 10_000, what: "submits accepted after the kill" }).catch(() => undefined);
  await sleep(2000);
  const restartedAt = run.now();
  await run.cluster.restart(victim);
  await submitting;
  const figures = await run.finish();
  await sleep(3000);
  await run.stopReading();

  const recovery = run.submitRecovery(killedAt);
  const afterRestart = run.submitRecovery(restartedAt);
  const submits = ClusterRun.tally(run.submits);
  const reads = ClusterRun.tally(run.reads);
  t.comment(
    `killed n${victim + 1} (led BOSUN_JOBS) at ${secs(killedAt)}, restarted it at ${secs(restartedAt)}; ` +
      `submits: ${JSON.stringify(submits)}; reads: ${JSON.stringify(reads)}; ` +
      `after the kill: ${recovery.refusedTries} refused tries, last ${secs(recovery.lastRefusedMs)} after it, accepted again ${secs(recovery.acceptedAgainMs)} after it, slowest accepted submit ${secs(recovery.slowestAcceptedMs)}; ` +
      `after the restart: ${afterRestart.refusedTries} refused tries, slowest accepted ${secs(afterRestart.slowestAcceptedMs)}; ` +
      `jobs ${figures.jobs}, lost ${figures.lost}, ran twice ${figures.ranTwice}, attempts above runs ${figures.attemptsAboveRuns}, below ${figures.attemptsBelowRuns}`,
  );
  if (figures.lost > 0) t.comment(`lost: ${(await run.describeLost()).join(" | ")}`);
  if (run.errorLogs().length > 0) t.comment(`supervisor errors: ${run.errorLogs().join(" | ")}`);
  t.equal(figures.jobs, JOBS, `all ${JOBS} submits accepted (each once: idempotency keys)`);
  t.equal(figures.lost, 0, "no accepted job lost");
  t.equal(figures.notSucceeded, 0, "every job succeeded");
  t.equal(figures.wrong, 0, "every result is the job's own");
  t.equal(figures.attemptsBelowRuns, 0, "every run is counted in attempts");
  t.notOk(submits.internal_error, "no submit answered internal_error (500)");
  const refusedHttp = run.submits.filter((o) => o.via === "http" && o.code !== "ok" && o.code !== "no_reply");
  t.ok(refusedHttp.every((o) => o.status === 503 && o.retryAfter), `every refused HTTP submit was 503 with Retry-After (${refusedHttp.length})`);
  t.notOk(reads.not_found, "no read said not_found for an accepted job");
  t.notOk(reads.internal_error, "no read answered internal_error");
});

t.test("R3: a node back with an empty disk mid-run: none lost, and it catches up", async (t) => {
  const jobs = 1500;
  const run = await ClusterRun.start(t);
  run.startReading();
  const submitting = run.submitPaced(0, jobs, 150);
  await run.untilStarted(jobs / 4);
  // The results stream's leader: the stream every finished job writes to.
  const victim = (await run.cluster.leaderOf(run.jsm, "BOSUN_RESULTS"))!;
  const killedAt = run.now();
  await run.cluster.kill(victim);
  await run.cluster.wipe(victim);
  await sleep(3000);
  const restartedAt = run.now();
  await run.cluster.restart(victim);
  await submitting;
  const figures = await run.finish();
  await run.stopReading();
  // Caught up: every Bosun stream has the node back among its replicas, current.
  const name = run.cluster.nodes[victim]!.name;
  const caughtUp = await waitFor(
    async () => {
      for (const stream of BOSUN_STREAMS) {
        const info = await run.jsm.streams.info(stream);
        const peers = [info.cluster?.leader, ...(info.cluster?.replicas ?? []).filter((r) => r.current).map((r) => r.name)];
        if (!peers.includes(name)) return false;
      }
      return run.now() - restartedAt;
    },
    { timeoutMs: 120_000, intervalMs: 500, what: `${name} to hold a current replica of every stream` },
  );
  const recovery = run.submitRecovery(killedAt);
  t.comment(
    `killed n${victim + 1} (led BOSUN_RESULTS) at ${secs(killedAt)}, wiped its store, restarted it at ${secs(restartedAt)}; every stream current on it ${secs(caughtUp)} after the restart; ` +
      `submits: ${JSON.stringify(ClusterRun.tally(run.submits))}; reads: ${JSON.stringify(ClusterRun.tally(run.reads))}; accepted again ${secs(recovery.acceptedAgainMs)} after the kill; ` +
      `jobs ${figures.jobs}, lost ${figures.lost}, ran twice ${figures.ranTwice}, attempts above runs ${figures.attemptsAboveRuns}, below ${figures.attemptsBelowRuns}`,
  );
  if (figures.lost > 0) t.comment(`lost: ${(await run.describeLost()).join(" | ")}`);
  t.equal(figures.lost, 0, "no accepted job lost");
  t.equal(figures.notSucceeded, 0, "every job succeeded");
  t.equal(figures.wrong, 0, "every result is the job's own");
  // The wiped node loses its copy of the consumer's delivery state with everything else; a job it
  // redelivers as leader may run again under the same attempt (docs/guarantees.md, known limits;
  // the same todo as the SIGKILL restart in faults.test.ts). Seen in one of five CI runs.
  t.equal(figures.attemptsBelowRuns, 0, "every run is counted in attempts", {
    todo: "attempts come from the consumer's delivery count, which a node back with an empty disk can lose",
  });
  t.notOk(ClusterRun.tally(run.reads).not_found, "no read said not_found");
  t.notOk(ClusterRun.tally(run.submits).internal_error, "no submit answered internal_error");
});

t.test("replicas: detected from the cluster, an existing R1 stream reported with its fix, scaled only by an explicit --replicas; NATS_URL lists servers", async (t) => {
  const cluster = await NatsCluster.start(t);
  const { jsm } = await cluster.client(t);
  // Made R1 by hand (an older Bosun did the same): a supervisor must not keep it silently.
  await jsm.streams.add({ name: "BOSUN_DEAD", subjects: ["bosun.dead.>"], num_replicas: 1, max_msgs_per_subject: 1, allow_direct: true });
  // The first server listed is down: the supervisor must get to the others.
  const url = ["nats://127.0.0.1:1", cluster.url].join(",");
  const first = await startSupervisor(t, url, { queues: [uniqueName("rep")] });
  const provisioned = first.logsWith("topology provisioned")[0];
  t.match(provisioned, { replicas: 3, under_replicated: 1 }, "3 replicas decided from the cluster; one stream under-replicated");
  const warning = first.logsWith("stream BOSUN_DEAD has 1 replica(s), 3 asked: kept as it is")[0];
  t.match(warning, { stream: "BOSUN_DEAD", replicas: 1, wanted: 3, fix: /--replicas 3.*nats stream edit BOSUN_DEAD --replicas 3/ }, "the R1 stream is reported with how to fix it");
  t.equal((await jsm.streams.info("BOSUN_DEAD")).config.num_replicas, 1, "and kept as it was (the detected default scales nothing)");
  t.equal((await jsm.streams.info("BOSUN_JOBS")).config.num_replicas, 3, "new streams are R3");

  const second = await startSupervisor(t, cluster.url, { queues: [uniqueName("rep")], args: ["--replicas", "3"] });
  t.match(second.logsWith("topology provisioned")[0], { replicas: 3, why: "--replicas", under_replicated: 0 }, "an explicit --replicas 3 leaves nothing under-replicated");
  t.equal((await jsm.streams.info("BOSUN_DEAD")).config.num_replicas, 3, "it scaled the R1 stream to 3");
  const bad = await runCli(["supervisor"], { env: { NATS_URL: "nats://127.0.0.1:4222,not-a-url" } });
  t.not(bad.code, 0, "a malformed server in the list stops the supervisor");
  t.match(bad.stderr + bad.stdout, /NATS_URL.*comma-separated/, "with one line naming NATS_URL");
});
