import { describe, expect, it } from "vitest";
import type { ReviewerRecord } from "./api";
import { accuracy, barWidths, margin, signedReturn, weightsLine } from "./models";

describe("the models page's figures", () => {
  it("write returns as the promotion rule does, and the challenger's margin", () => {
    expect(signedReturn(0.003)).toBe("+0.300%");
    expect(signedReturn(-0.0125)).toBe("-1.250%");
    expect(signedReturn(null)).toBe("-");
    expect(margin(-0.0125, 0.003)).toBeCloseTo(-0.0155);
    expect(margin(null, 0.003)).toBeNull();
  });

  it("summarise the sample weights, or say nothing for an unweighted set", () => {
    const weights = { rule: "reviewers", mean: 1, min: 0.5, max: 1.75, up_weighted: 12, down_weighted: 3 };
    expect(weightsLine(weights, "평균")).toBe("reviewers · 평균 1.00 · 0.50..1.75 · ↑12 ↓3");
    expect(weightsLine(null, "mean")).toBeNull();
  });

  it("scale each day's right and wrong to the busiest day", () => {
    const record: ReviewerRecord = {
      days: 2, since: "", until: "", horizon_minutes: 10, from_outcomes: 0, from_ledger: 6,
      totals: { groq: { right: 4, wrong: 2, pending: 0, accuracy: 4 / 6 } },
      series: [
        { day: "2026-03-01", reviewers: { groq: { right: 3, wrong: 1, pending: 0, accuracy: 0.75 } } },
        { day: "2026-03-02", reviewers: { groq: { right: 1, wrong: 1, pending: 2, accuracy: 0.5 } } },
      ],
    };
    expect(barWidths(record, "groq")).toEqual([
      { day: "2026-03-01", right: 75, wrong: 25 },
      { day: "2026-03-02", right: 25, wrong: 25 },
    ]);
    expect(barWidths(record, "ollama")).toEqual([
      { day: "2026-03-01", right: 0, wrong: 0 },
      { day: "2026-03-02", right: 0, wrong: 0 },
    ]);
    expect(accuracy(record.totals.groq)).toBe("67%");
    expect(accuracy(undefined)).toBe("-");
  });
});
