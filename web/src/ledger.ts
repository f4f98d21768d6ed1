// The veto ledger's figures (GET /api/reviewers) as the Reviewers page writes them.
import type { MeanCi, ReviewerFigures } from "./api";
import type { LabelKey } from "./i18n";

/** A return (a fraction) as a signed percentage with two decimals: "+0.12%". */
export function signedFraction(value: number | null | undefined): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return "-";
  const shown = (value * 100).toFixed(2);
  return `${value > 0 && Number(shown) !== 0 ? "+" : ""}${shown}%`;
}

/** A mean with its 95% interval: "-0.05% [-0.12%, +0.02%] (n=14)". */
export function meanCi(figure: MeanCi): string {
  if (figure.mean === null) return `- (n=${figure.n})`;
  const interval = figure.ci95 ? ` [${signedFraction(figure.ci95[0])}, ${signedFraction(figure.ci95[1])}]` : "";
  return `${signedFraction(figure.mean)}${interval} (n=${figure.n})`;
}

/** Whether a reviewer earned its place: its vetoes did worse than its passes, beyond noise. */
export function judgement(figures: ReviewerFigures): LabelKey {
  const vetoed = figures.vetoed_net_return;
  const passed = figures.passed_net_return;
  if (figures.passed_minus_vetoed === null || vetoed.n < 2 || passed.n < 2 || !vetoed.ci95 || !passed.ci95) return "tooFew";
  if (vetoed.ci95[1] < passed.ci95[0]) return "earnsPlace";
  if (vetoed.ci95[0] > passed.ci95[1]) return "costsMoney";
  return "tooFew";
}
