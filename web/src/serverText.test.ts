import { describe, expect, it } from "vitest";
import { labelsFor, type LabelKey } from "./i18n";
import { blockedOf, blockedText, modelVerdict, serverText } from "./serverText";

const ko = (key: LabelKey) => labelsFor("ko")[key];
const en = (key: LabelKey) => labelsFor("en")[key];

describe("the server's words in Korean", () => {
  it("translate the known errors and keep the names they carry", () => {
    expect(serverText(ko, "ko", "run demo-1 not found")).toBe("해당 ID의 실행이 없습니다: demo-1");
    expect(serverText(ko, "ko", "wrong bearer token")).toBe("API 토큰이 틀렸습니다.");
    expect(serverText(ko, "ko", "prompt 'x' not found (available: groq_check)")).toContain("x");
    expect(serverText(ko, "ko", "groq_check.md: unknown variable 'markt'")).toBe(
      "유효하지 않은 프롬프트: groq_check.md: unknown variable 'markt'",
    );
    expect(serverText(ko, "ko", "something new")).toBe("something new");
    expect(serverText(en, "en", "run demo-1 not found")).toBe("run demo-1 not found");
  });

  it("translate the model's verdict", () => {
    const verdict = "its policy made no trade on its hold-out window: no evidence of an edge";
    expect(modelVerdict(ko, "ko", verdict)).toBe(ko("mv_noTrade"));
    expect(modelVerdict(ko, "ko", "its policy lost -0.12% after fees on its hold-out window")).toContain("-0.12%");
    expect(modelVerdict(en, "en", verdict)).toBe(verdict);
  });

  it("say which market a blocked run names and why", () => {
    const detail = {
      market: "KRW-BTC",
      events: [{ type: "proposal", payload: { blocked: { "KRW-BTC": "cooldown after drop until 2025-09-19T05:00:00+00:00" } } }],
    };
    const { market, why } = blockedOf(detail);
    expect(market).toBe("KRW-BTC");
    expect(blockedText(ko, "ko", why)).toBe("가격 급락 이후 2025-09-19 14:00까지 재진입 금지");
    expect(blockedText(en, "en", why)).toBe("cooldown after price drop until 2025-09-19 14:00");
    const fromPolicy = blockedOf({
      market: "KRW-ETH",
      nodes: { ml_signal: { proposal: { policy: { reason: "+20 bps on KRW-ETH clears the margin, but entries are barred: exchange unreachable" } } } },
    });
    expect(blockedText(ko, "ko", fromPolicy.why)).toBe("거래소 연결 불가");
  });
});
