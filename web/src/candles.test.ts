import { describe, expect, it } from "vitest";
import { parseCandles, zoomRange } from "./candles";

const HOUR = 3_600_000;
const LIMITS: [number, number] = [0, 24 * HOUR];

describe("zooming the candle chart", () => {
  it("zooms in around the pointer, keeping its place on the axis", () => {
    const [low, high] = zoomRange(LIMITS, 6 * HOUR, 0.5, LIMITS);
    expect(high - low).toBe(12 * HOUR);
    expect(low).toBe(3 * HOUR); // 6h was a quarter of the way along; it still is
  });

  it("never leaves the session and never zooms below ten minutes", () => {
    expect(zoomRange([20 * HOUR, 24 * HOUR], 23 * HOUR, 2, LIMITS)).toEqual([16 * HOUR, 24 * HOUR]);
    expect(zoomRange([0, 4 * HOUR], 0, 100, LIMITS)).toEqual(LIMITS);
    const [low, high] = zoomRange([HOUR, HOUR + 20 * 60_000], HOUR, 0.01, LIMITS);
    expect(high - low).toBe(10 * 60_000);
  });
});

describe("the API's candles", () => {
  it("become numbers on a millisecond axis, volume kept null when unknown", () => {
    const [candle] = parseCandles([
      { ts: "2025-09-19T00:00:00Z", open: "1", high: "3", low: "0.5", close: "2", volume: null, bars: 5 },
    ]);
    expect(candle).toEqual({ x: Date.UTC(2025, 8, 19), open: 1, high: 3, low: 0.5, close: 2, volume: null });
  });
});
