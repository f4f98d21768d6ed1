import {
  Chart,
  Filler,
  Legend,
  LineController,
  LineElement,
  LinearScale,
  PointElement,
  ScatterController,
  Tooltip,
  type ChartDataset,
} from "chart.js";
import { useEffect, useRef } from "react";
import { kst, useLang } from "../i18n";

Chart.register(LineController, ScatterController, LineElement, PointElement, LinearScale, Tooltip, Legend, Filler);

export type Series = ChartDataset<"line" | "scatter", { x: number; y: number }[]>;

/** A time (x, ms since epoch) against value chart; times are labelled in KST. */
export function LineChart({
  series,
  testId,
  height = 260,
  xRange,
}: {
  series: Series[];
  testId?: string;
  height?: number;
  xRange?: [number, number] | null;
}) {
  const canvas = useRef<HTMLCanvasElement>(null);
  const chart = useRef<Chart | null>(null);
  const { lang } = useLang();
  useEffect(() => {
    if (!canvas.current) return;
    chart.current?.destroy();
    chart.current = new Chart(canvas.current, {
      type: "line",
      data: { datasets: series as ChartDataset<"line", { x: number; y: number }[]>[] },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        parsing: false,
        interaction: { mode: "nearest", intersect: false },
        scales: {
          x: {
            type: "linear",
            min: xRange?.[0],
            max: xRange?.[1],
            ticks: {
              color: "#8b98a5",
              maxTicksLimit: 8,
              callback: (value) => kst(Number(value)),
            },
            grid: { color: "rgba(140,150,160,0.12)" },
          },
          y: { ticks: { color: "#8b98a5" }, grid: { color: "rgba(140,150,160,0.12)" } },
        },
        plugins: {
          legend: { labels: { color: "#c9d3dc", usePointStyle: true } },
          tooltip: {
            callbacks: {
              title: (items) => (items[0] ? kst(new Date(items[0].parsed.x ?? 0).toISOString(), lang) : ""),
            },
          },
        },
      },
    });
    return () => {
      chart.current?.destroy();
      chart.current = null;
    };
  }, [series, lang, xRange]);
  // The time axis as drawn: the range asked for, else the data's own.
  const xs = series.flatMap((item) => item.data.map((point) => point.x));
  const xMin = xRange?.[0] ?? (xs.length ? Math.min(...xs) : null);
  const xMax = xRange?.[1] ?? (xs.length ? Math.max(...xs) : null);
  return (
    <div
      className="chart"
      data-x-min={xMin === null ? "" : new Date(xMin).toISOString()}
      data-x-max={xMax === null ? "" : new Date(xMax).toISOString()}
      style={{ height }}
      data-testid={testId}
      data-points={series.reduce((total, item) => total + item.data.length, 0)}
      data-line-points={series.reduce((total, item) => total + (item.type === "line" ? item.data.length : 0), 0)}
    >
      <canvas ref={canvas} />
    </div>
  );
}
