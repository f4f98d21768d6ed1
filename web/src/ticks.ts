// Upbit's KRW tick table (exchange/rules.py `_KRW_TICKS`): prices are shown on the tick.

/** (lowest price of the band, tick size, decimals of the tick), highest band first. */
const KRW_TICKS: [number, number, number][] = [
  [1_000_000, 1000, 0],
  [500_000, 500, 0],
  [100_000, 100, 0],
  [50_000, 50, 0],
  [10_000, 10, 0],
  [5_000, 5, 0],
  [100, 1, 0],
  [10, 0.1, 1],
  [1, 0.01, 2],
  [0.1, 0.001, 3],
  [0.01, 0.0001, 4],
  [0.001, 0.00001, 5],
  [0.0001, 0.000001, 6],
  [0.00001, 0.0000001, 7],
];

/** The KRW-market tick of a price and the decimals it is written with. */
export function tickOf(price: number): [number, number] {
  for (const [floor, tick, decimals] of KRW_TICKS) if (price >= floor) return [tick, decimals];
  return [0.00000001, 8];
}

/** A KRW price rounded to the nearest tick and written with the tick's decimals, grouped. */
export function tickPrice(value: unknown): string {
  const parsed = typeof value === "string" ? Number(value) : value;
  if (typeof parsed !== "number" || !Number.isFinite(parsed) || value === "" || value === null) return "-";
  const [tick, decimals] = tickOf(Math.abs(parsed));
  const rounded = Math.round(parsed / tick) * tick;
  return rounded.toLocaleString("en-US", { minimumFractionDigits: decimals, maximumFractionDigits: decimals });
}
