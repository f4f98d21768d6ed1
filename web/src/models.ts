// The learning loop's figures (GET /api/models, GET /api/reviewers/record) as the Models page
// writes them.
import type { ReviewerRecord, RightWrong } from "./api";

/** A fraction as a signed percentage with three decimals ("+0.300%"), as the promotion rule
 * writes its figures. */
export function signedReturn(value: number | null | undefined): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return "-";
  const shown = (value * 100).toFixed(3);
  return `${value > 0 && Number(shown) !== 0 ? "+" : ""}${shown}%`;
}

/** How much the challenger's return beat (or missed) the champion's, as a fraction. */
export function margin(challenger: number | null | undefined, champion: number | null | undefined): number | null {
  if (challenger === null || challenger === undefined || champion === null || champion === undefined) return null;
  return challenger - champion;
}

/** An accuracy as a whole percentage, "-" with nothing judged. */
export function accuracy(figures: RightWrong | undefined): string {
  if (!figures || figures.accuracy === null) return "-";
  return `${Math.round(figures.accuracy * 100)}%`;
}

/** The width (0-100, in %) of the right and wrong parts of a day's bar, scaled to the
 * busiest day of the record so days can be compared by eye. */
export function barWidths(record: ReviewerRecord, reviewer: string): { day: string; right: number; wrong: number }[] {
  const busiest = Math.max(
    1,
    ...record.series.map((day) => (day.reviewers[reviewer]?.right ?? 0) + (day.reviewers[reviewer]?.wrong ?? 0)),
  );
  return record.series.map((day) => {
    const figures = day.reviewers[reviewer];
    return {
      day: day.day,
      right: ((figures?.right ?? 0) / busiest) * 100,
      wrong: ((figures?.wrong ?? 0) / busiest) * 100,
    };
  });
}

/** A sample-weight summary in one line: the rule, the mean (`meanLabel`), the range of the
 * weights and how many rows the reviewers' record raised (↑) and lowered (↓). */
export function weightsLine(weights: Record<string, unknown> | null | undefined, meanLabel: string): string | null {
  if (!weights) return null;
  const figure = (key: string) => (typeof weights[key] === "number" ? (weights[key] as number).toFixed(2) : null);
  const count = (key: string) => (typeof weights[key] === "number" ? String(weights[key]) : null);
  const parts = [
    typeof weights.rule === "string" ? weights.rule : null,
    figure("mean") !== null ? `${meanLabel} ${figure("mean")}` : null,
    figure("min") !== null && figure("max") !== null ? `${figure("min")}..${figure("max")}` : null,
    count("up_weighted") !== null && count("down_weighted") !== null ? `↑${count("up_weighted")} ↓${count("down_weighted")}` : null,
  ].filter((part): part is string => part !== null);
  return parts.length ? parts.join(" · ") : null;
}
