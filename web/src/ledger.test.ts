import { describe, expect, it } from "vitest";
import type { ReviewerFigures } from "./api";
import { judgement, meanCi, signedFraction } from "./ledger";

const figures = (vetoed: [number, number, number], passed: [number, number, number]): ReviewerFigures => ({
  asked: 10,
  vetoed: 4,
  veto_rate: 0.4,
  vetoed_net_return: { n: 4, mean: vetoed[0], ci95: [vetoed[1], vetoed[2]] },
  passed_net_return: { n: 6, mean: passed[0], ci95: [passed[1], passed[2]] },
  passed_minus_vetoed: passed[0] - vetoed[0],
});

describe("the veto ledger's figures", () => {
  it("write returns as signed percentages with their interval", () => {
    expect(signedFraction(0.00123)).toBe("+0.12%");
    expect(signedFraction(-0.0005)).toBe("-0.05%");
    expect(signedFraction(null)).toBe("-");
    expect(meanCi({ n: 3, mean: -0.001, ci95: [-0.003, 0.001] })).toBe("-0.10% [-0.30%, +0.10%] (n=3)");
    expect(meanCi({ n: 0, mean: null, ci95: null })).toBe("- (n=0)");
  });

  it("say a reviewer earns its place only when its vetoes did worse beyond the intervals", () => {
    expect(judgement(figures([-0.01, -0.012, -0.008], [0.002, 0.001, 0.003]))).toBe("earnsPlace");
    expect(judgement(figures([0.01, 0.008, 0.012], [0.002, 0.001, 0.003]))).toBe("costsMoney");
    expect(judgement(figures([-0.001, -0.01, 0.01], [0.001, -0.01, 0.01]))).toBe("tooFew");
  });
});
