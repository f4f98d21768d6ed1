import { describe, expect, it } from "vitest";
import { tickOf, tickPrice } from "./ticks";

describe("prices on Upbit's KRW tick", () => {
  it("rounds to the tick of the price's band", () => {
    expect(tickPrice(163_051_234.5678)).toBe("163,051,000");
    expect(tickPrice("6389123.4")).toBe("6,389,000");
    expect(tickPrice(612_345)).toBe("612,500");
    expect(tickPrice(4_321.87)).toBe("4,322");
    expect(tickPrice(12_347)).toBe("12,350");
    expect(tickPrice(3_212.4567)).toBe("3,212");
    expect(tickPrice(45.678)).toBe("45.7");
    expect(tickPrice(1.23456)).toBe("1.23");
  });

  it("says nothing for what is not a price", () => {
    expect(tickPrice(null)).toBe("-");
    expect(tickPrice("")).toBe("-");
    expect(tickPrice("abc")).toBe("-");
  });

  it("follows the bands' edges", () => {
    expect(tickOf(2_000_000)[0]).toBe(1000);
    expect(tickOf(999_999)[0]).toBe(500);
    expect(tickOf(100)[0]).toBe(1);
    expect(tickOf(99.9)[0]).toBe(0.1);
  });
});
