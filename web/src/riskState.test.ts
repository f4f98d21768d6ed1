import { describe, expect, it } from "vitest";
import type { ModelStatus, MonthlyCap, TradingState } from "./api";
import {
  capLevel,
  effectiveReason,
  effectiveState,
  formatChange,
  formatReturn,
  monthlyBanner,
  throttle,
  unprovenConsequence,
} from "./riskState";

const monthly = (overrides: Partial<MonthlyCap> = {}): MonthlyCap => ({
  month: "2026-12",
  start_equity: "1000000",
  last_equity: "990000",
  loss_pct: 1.0,
  cap_pct: 3.0,
  breached: false,
  reason: null,
  breached_at: null,
  resumed_at: null,
  resumed_by: null,
  resume_pending: false,
  clears_on: "2027-01-01",
  how_to_clear: null,
  updated_at: "2026-12-14T03:21:00Z",
  ...overrides,
});

const model = (overrides: Partial<ModelStatus> = {}): ModelStatus => ({
  model_id: "lgbm-quick-x",
  proven: false,
  verdict: "its policy made no trade on its hold-out window: no evidence of an edge",
  live: false,
  allow_unproven_model: false,
  block_entries: false,
  evaluation_window: null,
  evaluation_return: 0,
  evaluation_entries: 0,
  buy_and_hold_return: 0.019,
  ...overrides,
});

const operator: TradingState = {
  state: "active",
  reason: "",
  flatten_requested: false,
  updated_at: null,
  updated_by: null,
};

describe("effectiveState", () => {
  it("shows what the engine applies, not the operator's choice", () => {
    const state = { ...operator, effective_state: "reducing" as const, effective_reason: "monthly loss cap" };
    expect(effectiveState(state)).toBe("reducing");
    expect(effectiveReason(state)).toBe("monthly loss cap");
  });

  it("falls back to the operator's state from a server without the effective one", () => {
    expect(effectiveState({ ...operator, state: "halted", reason: "storm" })).toBe("halted");
    expect(effectiveReason({ ...operator, state: "halted", reason: "storm" })).toBe("storm");
    expect(effectiveState(null)).toBe("active");
  });
});

describe("formatChange", () => {
  it("reads a loss as a negative change and a gain as a positive one", () => {
    expect(formatChange(3.2)).toBe("-3.20%");
    expect(formatChange(-1)).toBe("+1.00%");
    expect(formatChange(0)).toBe("0.00%");
    expect(formatChange(null)).toBe("-");
    expect(formatChange(Number.NaN)).toBe("-");
  });
});

describe("formatReturn", () => {
  it("shows a fraction as a signed percentage", () => {
    expect(formatReturn(0.0194)).toBe("+1.94%");
    expect(formatReturn(-0.005)).toBe("-0.50%");
    expect(formatReturn(null)).toBe("-");
  });
});

describe("capLevel", () => {
  it("is breached, near from two thirds of the cap, else ok", () => {
    expect(capLevel(monthly({ breached: true, loss_pct: 3.2 }))).toBe("breached");
    expect(capLevel(monthly({ loss_pct: 2.0 }))).toBe("near");
    expect(capLevel(monthly({ loss_pct: 1.9 }))).toBe("ok");
    expect(capLevel(monthly({ loss_pct: -5 }))).toBe("ok");
    expect(capLevel(null)).toBe("ok");
  });
});

describe("monthlyBanner", () => {
  it("says entries stopped with the reason and the day they resume", () => {
    const banner = monthlyBanner(monthly({ breached: true, reason: "monthly loss cap: -3.2%" }));
    expect(banner).toEqual({ kind: "breached", reason: "monthly loss cap: -3.2%", clearsOn: "2027-01-01" });
  });

  it("says a resume is pending once the operator resumed after the breach", () => {
    expect(monthlyBanner(monthly({ breached: true, resume_pending: true }))?.kind).toBe("pending");
  });

  it("shows nothing while the cap holds or before any figures", () => {
    expect(monthlyBanner(monthly())).toBeNull();
    expect(monthlyBanner(null)).toBeNull();
  });
});

describe("unprovenConsequence", () => {
  it("is paper for a paper run, blocked live without the override, overridden with it", () => {
    expect(unprovenConsequence(model())).toBe("paper");
    expect(unprovenConsequence(model({ live: true, block_entries: true }))).toBe("blocked");
    expect(unprovenConsequence(model({ live: true, allow_unproven_model: true }))).toBe("overridden");
  });

  it("is null for a proven model or none known", () => {
    expect(unprovenConsequence(model({ proven: true }))).toBeNull();
    expect(unprovenConsequence(null)).toBeNull();
  });
});

describe("throttle", () => {
  it("lets one call through per interval", () => {
    const allow = throttle(5000);
    expect([allow(0), allow(100), allow(4999), allow(5000), allow(6000), allow(10_001)]).toEqual([
      true,
      false,
      false,
      true,
      false,
      true,
    ]);
  });
});
