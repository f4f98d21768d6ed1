// What the trading state and the model status mean for the banners (pure; see riskState.test.ts).
import type { ModelStatus, MonthlyCap, TradingState } from "./api";

export type TradingStateName = "active" | "reducing" | "halted";

/** What the engine applies: the effective state, or the operator's one from an older server. */
export function effectiveState(state: TradingState | null | undefined): string {
  return state?.effective_state ?? state?.state ?? "active";
}

/** Why the effective state is what it is (or why entries are refused); "" when nothing. */
export function effectiveReason(state: TradingState | null | undefined): string {
  return state?.effective_reason ?? state?.reason ?? "";
}

/** A loss in % as the signed change of equity: a 3.2 loss reads "-3.20%", a gain "+1.00%". */
export function formatChange(lossPct: number | null | undefined): string {
  if (lossPct === null || lossPct === undefined || !Number.isFinite(lossPct)) return "-";
  const change = -lossPct;
  const sign = change > 0 ? "+" : change < 0 ? "-" : "";
  return `${sign}${Math.abs(change).toFixed(2)}%`;
}

/** A return as a fraction (0.0194) in signed % ("+1.94%"); "-" when unknown. */
export function formatReturn(fraction: number | null | undefined): string {
  if (fraction === null || fraction === undefined || !Number.isFinite(fraction)) return "-";
  return formatChange(-fraction * 100);
}

export type CapLevel = "ok" | "near" | "breached";

/** How close the month is to its loss cap: breached, near (two thirds used or more), ok. */
export function capLevel(monthly: MonthlyCap | null | undefined): CapLevel {
  if (!monthly) return "ok";
  if (monthly.breached) return "breached";
  const { loss_pct: loss, cap_pct: cap } = monthly;
  if (loss === null || cap === null || !(cap > 0)) return "ok";
  return loss / cap >= 2 / 3 ? "near" : "ok";
}

/** The breach banner to show, or null: entries stopped, or a resume waiting for the engine. */
export function monthlyBanner(
  monthly: MonthlyCap | null | undefined,
): { kind: "breached" | "pending"; reason: string; clearsOn: string | null } | null {
  if (!monthly?.breached) return null;
  return {
    kind: monthly.resume_pending ? "pending" : "breached",
    reason: monthly.reason ?? "",
    clearsOn: monthly.clears_on,
  };
}

export type UnprovenConsequence = "blocked" | "overridden" | "paper";

/** What an unproven model means for this engine; null when it is proven or unknown. */
export function unprovenConsequence(status: ModelStatus | null | undefined): UnprovenConsequence | null {
  if (!status || status.proven) return null;
  if (status.block_entries) return "blocked";
  if (status.live) return "overridden";
  return "paper";
}

/** Allow one call per `intervalMs` (reloads on every bar would flood a fast replay). */
export function throttle(intervalMs: number): (now: number) => boolean {
  let last = Number.NEGATIVE_INFINITY;
  return (now) => {
    if (now - last < intervalMs) return false;
    last = now;
    return true;
  };
}
