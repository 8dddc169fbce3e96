/** The overview's chart: jobs finished per second and jobs waiting, over the last minutes (uPlot). */
import { html } from "htm/preact";
import { useEffect, useRef } from "preact/hooks";
import uPlot from "uplot";
import type { Sample } from "../live.js";

const WINDOW_SECONDS = 5 * 60;

export function RateChart({ samples }: { samples: Sample[] }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | undefined>(undefined);
  useEffect(() => {
    const el = box.current!;
    plot.current = new uPlot(
      {
        width: Math.max(320, el.clientWidth),
        height: 220,
        series: [
          {},
          { label: "jobs/s finished", stroke: "#1f6feb", width: 2, value: (_u, v) => (v === null ? "" : v.toFixed(1)) },
          { label: "jobs waiting", stroke: "#b35900", width: 1.5, scale: "n", value: (_u, v) => (v === null ? "" : String(v)) },
        ],
        axes: [{}, { label: "jobs/s" }, { side: 1, scale: "n", label: "waiting", grid: { show: false } }],
        // The last minutes, whatever has been sampled; at least 0-1 jobs/s so an idle system draws flat.
        scales: { x: { time: true, range: (_u, _min, max) => [(max ?? Date.now() / 1000) - WINDOW_SECONDS, max ?? Date.now() / 1000] }, y: { range: (_u, _min, max) => [0, Math.max(1, max ?? 1)] }, n: { range: (_u, _min, max) => [0, Math.max(1, max ?? 1)] } },
        legend: { live: false },
      },
      [[], [], []],
      el,
    );
    const resize = () => plot.current?.setSize({ width: Math.max(320, el.clientWidth), height: 220 });
    window.addEventListener("resize", resize);
    return () => {
      window.removeEventListener("resize", resize);
      plot.current?.destroy();
    };
  }, []);
  useEffect(() => {
    plot.current?.setData([samples.map((s) => s.t), samples.map((s) => s.finishedPerSecond), samples.map((s) => s.pending)]);
  }, [samples, samples.length]);
  const last = samples.at(-1);
  return html`<figure class="chart">
    <div ref=${box} role="img" aria-label="Chart of jobs finished per second and jobs waiting over the last minutes"></div>
    <figcaption>
      ${last ? `Now: ${last.finishedPerSecond.toFixed(1)} jobs/s finished, ${last.pending} waiting. ` : "Collecting samples… "}
      Finished jobs are counted from the supervisors' heartbeats (10 s average); waiting from the queue counts.
    </figcaption>
  </figure>`;
}
