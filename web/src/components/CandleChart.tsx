import {
  Chart,
  Legend,
  LinearScale,
  LineController,
  LineElement,
  PointElement,
  ScatterController,
  Tooltip,
  type ChartDataset,
  type Plugin,
} from "chart.js";
import { useEffect, useRef, useState } from "react";
import { zoomRange, type ParsedCandle } from "../candles";
import { kst, useLang } from "../i18n";
import { tickPrice } from "../ticks";

Chart.register(LineController, ScatterController, LineElement, PointElement, LinearScale, Tooltip, Legend);

export type Marker = ChartDataset<"scatter", { x: number; y: number }[]>;

const UP = "#4cc38a";
const DOWN = "#f36b6b";

// Draws each candle (wick and body) on the price scale and its volume on the volume scale.
const candlePlugin: Plugin<"line"> = {
  id: "lxaCandles",
  beforeDatasetsDraw(chart, _args, options) {
    const candles = (options as { candles?: ParsedCandle[] }).candles ?? [];
    const bucketMs = (options as { bucketMs?: number }).bucketMs ?? 60_000;
    const x = chart.scales.x;
    const price = chart.scales.y;
    const volume = chart.scales.volume;
    if (!x || !price || candles.length === 0) return;
    const ctx = chart.ctx;
    // Pixels per bucket, measured inside the axis (Chart.js clamps far-off pixels to 16 bits).
    const width = Math.max(1, Math.min(14, (x.getPixelForValue(x.min + bucketMs) - x.getPixelForValue(x.min)) * 0.7));
    ctx.save();
    ctx.beginPath();
    ctx.rect(chart.chartArea.left, chart.chartArea.top, chart.chartArea.right - chart.chartArea.left, chart.chartArea.bottom - chart.chartArea.top);
    ctx.clip();
    for (const candle of candles) {
      const middle = x.getPixelForValue(candle.x + bucketMs / 2);
      if (middle < chart.chartArea.left - width || middle > chart.chartArea.right + width) continue;
      const colour = candle.close >= candle.open ? UP : DOWN;
      ctx.strokeStyle = colour;
      ctx.fillStyle = colour;
      ctx.lineWidth = 1;
      ctx.beginPath();
      ctx.moveTo(middle, price.getPixelForValue(candle.high));
      ctx.lineTo(middle, price.getPixelForValue(candle.low));
      ctx.stroke();
      const top = price.getPixelForValue(Math.max(candle.open, candle.close));
      const bottom = price.getPixelForValue(Math.min(candle.open, candle.close));
      ctx.fillRect(middle - width / 2, top, width, Math.max(1, bottom - top));
      if (volume && candle.volume !== null) {
        ctx.globalAlpha = 0.45;
        const height = volume.getPixelForValue(0) - volume.getPixelForValue(candle.volume);
        ctx.fillRect(middle - width / 2, volume.getPixelForValue(0) - height, width, height);
        ctx.globalAlpha = 1;
      }
    }
    ctx.restore();
  },
};

/** Candlesticks with volume under them and markers (entries, exits, watchdog triggers) on the
 * same bar-time axis. Drag across the chart or turn the wheel to zoom; `onZoom` is told the
 * new range, and the page asks the server again for finer candles. */
export function CandleChart({
  candles,
  bucketMinutes,
  markers,
  xRange,
  limits,
  onZoom,
  testId,
  height = 320,
  extra,
}: {
  candles: ParsedCandle[];
  bucketMinutes: number;
  markers: Marker[];
  xRange: [number, number] | null;
  limits: [number, number] | null;
  onZoom: (range: [number, number]) => void;
  testId?: string;
  height?: number;
  extra?: Record<string, string | number>;
}) {
  const canvas = useRef<HTMLCanvasElement>(null);
  const box = useRef<HTMLDivElement>(null);
  const chart = useRef<Chart | null>(null);
  const [drag, setDrag] = useState<{ from: number; to: number } | null>(null);
  const { t, lang } = useLang();
  const hasVolume = candles.some((candle) => candle.volume !== null);
  useEffect(() => {
    if (!canvas.current) return;
    chart.current?.destroy();
    const bucketMs = bucketMinutes * 60_000;
    const datasets: ChartDataset<"line", { x: number; y: number }[]>[] = [
      {
        // The candles' extremes, not drawn: they size the price scale.
        label: "range",
        data: candles.flatMap((candle) => [
          { x: candle.x, y: candle.high },
          { x: candle.x, y: candle.low },
        ]),
        pointRadius: 0,
        showLine: false,
        yAxisID: "y",
      },
      {
        label: "volume",
        data: hasVolume ? candles.map((candle) => ({ x: candle.x, y: candle.volume ?? 0 })) : [],
        pointRadius: 0,
        showLine: false,
        yAxisID: "volume",
      },
      ...(markers as unknown as ChartDataset<"line", { x: number; y: number }[]>[]).map((marker) => ({ ...marker, yAxisID: "y" })),
    ];
    chart.current = new Chart(canvas.current, {
      type: "line",
      data: { datasets },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        parsing: false,
        interaction: { mode: "nearest", intersect: true },
        scales: {
          x: {
            type: "linear",
            // The last candle's bucket ends one bucket after its start.
            min: xRange?.[0],
            max: xRange ? xRange[1] + bucketMs : undefined,
            ticks: { color: "#8b98a5", maxTicksLimit: 7, callback: (value) => kst(Number(value)) },
            grid: { color: "rgba(140,150,160,0.12)" },
          },
          volume: {
            type: "linear",
            position: "left",
            stack: "price",
            stackWeight: hasVolume ? 1 : 0.01,
            beginAtZero: true,
            display: hasVolume,
            offset: true,
            ticks: { color: "#8b98a5", maxTicksLimit: 2 },
            grid: { display: false },
          },
          y: {
            type: "linear",
            position: "left",
            stack: "price",
            stackWeight: 3,
            ticks: { color: "#8b98a5", callback: (value) => tickPrice(Number(value)) },
            grid: { color: "rgba(140,150,160,0.12)" },
          },
        },
        plugins: {
          legend: {
            labels: { color: "#c9d3dc", usePointStyle: true, filter: (item) => item.text !== "range" && item.text !== "volume" },
          },
          tooltip: {
            filter: (item) => item.dataset.label !== "range" && item.dataset.label !== "volume",
            callbacks: {
              title: (items) => (items[0] ? kst(new Date(items[0].parsed.x ?? 0).toISOString(), lang) : ""),
              label: (item) => `${item.dataset.label ?? ""}: ${tickPrice(item.parsed.y)}`,
            },
          },
          // @ts-expect-error: the plugin's own options
          lxaCandles: { candles, bucketMs },
        },
      },
      plugins: [candlePlugin],
    });
    return () => {
      chart.current?.destroy();
      chart.current = null;
    };
  }, [candles, bucketMinutes, markers, xRange, lang, hasVolume]);

  const valueAt = (clientX: number): number | null => {
    const scale = chart.current?.scales.x;
    const box = canvas.current?.getBoundingClientRect();
    if (!scale || !box) return null;
    return scale.getValueForPixel(clientX - box.left) ?? null;
  };
  const shown: [number, number] | null = xRange ?? (candles.length ? [candles[0].x, candles[candles.length - 1].x] : null);
  const within = (value: number): number => (limits ? Math.min(limits[1], Math.max(limits[0], value)) : value);
  // The wheel zooms around the pointer (a native listener: React's is passive and the page
  // would scroll too).
  const wheel = useRef<(event: WheelEvent) => void>(() => undefined);
  wheel.current = (event: WheelEvent) => {
    if (!shown || !limits) return;
    const at = valueAt(event.clientX);
    if (at === null) return;
    event.preventDefault();
    onZoom(zoomRange(shown, at, event.deltaY < 0 ? 0.7 : 1 / 0.7, limits));
  };
  useEffect(() => {
    const element = box.current;
    if (!element) return;
    const listener = (event: WheelEvent) => wheel.current(event);
    element.addEventListener("wheel", listener, { passive: false });
    return () => element.removeEventListener("wheel", listener);
  }, []);

  return (
    <div
      ref={box}
      className="chart candle-chart"
      style={{ height }}
      data-testid={testId}
      data-x-min={shown ? new Date(shown[0]).toISOString() : ""}
      data-x-max={shown ? new Date(shown[1]).toISOString() : ""}
      data-points={candles.length + markers.reduce((total, marker) => total + marker.data.length, 0)}
      data-line-points={candles.length}
      data-candles={candles.length}
      data-bucket-minutes={bucketMinutes}
      data-volume={hasVolume ? "yes" : "no"}
      {...Object.fromEntries(Object.entries(extra ?? {}).map(([key, value]) => [`data-${key}`, value]))}
      onPointerDown={(event) => {
        if (event.button !== 0) return;
        const at = valueAt(event.clientX);
        if (at !== null) setDrag({ from: at, to: at });
      }}
      onPointerMove={(event) => {
        if (!drag) return;
        const at = valueAt(event.clientX);
        if (at !== null) setDrag({ ...drag, to: at });
      }}
      onPointerUp={() => {
        if (!drag) return;
        const low = within(Math.min(drag.from, drag.to));
        const high = within(Math.max(drag.from, drag.to));
        setDrag(null);
        if (high - low >= 5 * 60_000) onZoom([Math.round(low), Math.round(high)]);
      }}
      onPointerLeave={() => setDrag(null)}
      title={t("zoomHint")}
    >
      <canvas ref={canvas} />
      {drag && chart.current && Math.abs(drag.to - drag.from) > 0 && (
        <div
          className="zoom-box"
          style={{
            left: Math.min(chart.current.scales.x.getPixelForValue(drag.from), chart.current.scales.x.getPixelForValue(drag.to)),
            width: Math.abs(chart.current.scales.x.getPixelForValue(drag.to) - chart.current.scales.x.getPixelForValue(drag.from)),
          }}
        />
      )}
    </div>
  );
}
