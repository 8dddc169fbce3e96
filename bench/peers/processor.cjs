// BullMQ processor for the benchmark, sandboxed (BullMQ loads this file in its child processes)
// or in-process (the worker host requires it): the same work as Bosun's built-ins of that name.
/* global module */
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Burns CPU time, not wall time, as Bosun's `cpu` built-in does. */
function burn(ms) {
  const start = process.cpuUsage();
  const budgetUs = ms * 1000;
  let spins = 0;
  for (;;) {
    for (let i = 0; i < 1000; i++) spins++;
    const used = process.cpuUsage(start);
    if (used.user + used.system >= budgetUs) return { spins };
  }
}

module.exports = async (job) => {
  switch (job.name) {
    case "sleep":
      await sleep(job.data.ms);
      return { slept_ms: job.data.ms };
    case "cpu":
      return burn(job.data.ms);
    default:
      return null;
  }
};
