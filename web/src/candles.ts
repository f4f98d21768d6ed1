// Candles as the chart draws them, and the zoom arithmetic (pure, tested in candles.test.ts).
import type { Candle } from "./api";

export interface ParsedCandle {
  x: number; // the bucket's start, ms
  open: number;
  high: number;
  low: number;
  close: number;
  volume: number | null;
}

/** The API's candles as numbers, their times in ms. */
export function parseCandles(candles: Candle[]): ParsedCandle[] {
  return candles.map((candle) => ({
    x: new Date(candle.ts).getTime(),
    open: Number(candle.open),
    high: Number(candle.high),
    low: Number(candle.low),
    close: Number(candle.close),
    volume: candle.volume === null ? null : Number(candle.volume),
  }));
}

/** Zoom a [min, max] range by `factor` around `at` (factor < 1 zooms in), kept inside `limits`. */
export function zoomRange(range: [number, number], at: number, factor: number, limits: [number, number], minSpan = 10 * 60_000): [number, number] {
  const span = Math.max(minSpan, (range[1] - range[0]) * factor);
  const share = range[1] > range[0] ? (at - range[0]) / (range[1] - range[0]) : 0.5;
  let low = at - span * Math.min(1, Math.max(0, share));
  let high = low + span;
  if (low < limits[0]) [low, high] = [limits[0], limits[0] + span];
  if (high > limits[1]) [low, high] = [Math.max(limits[0], limits[1] - span), limits[1]];
  return [Math.round(low), Math.round(high)];
}

