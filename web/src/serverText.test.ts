import { describe, expect, it } from "vitest";
import { labelsFor, type LabelKey } from "./i18n";
import { blockedOf, blockedText, codeText, eventSummary, eventType, glossKeys, modelVerdict, newsReasonText, policyText, promotionText, reasoningText, serverText } from "./serverText";

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
    expect(serverText(ko, "ko", "the model registry could not be read: JSONDecodeError: x/meta.json")).toBe(
      "모델 레지스트리를 읽을 수 없습니다. (JSONDecodeError: x/meta.json)",
    );
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
    expect(blockedText(ko, "ko", "cooldown after operator until 2025-09-19T05:00:00+00:00")).toBe(
      "운영자 매도 이후 2025-09-19 14:00까지 재진입 금지",
    );
    const fromPolicy = blockedOf({
      market: "KRW-ETH",
      nodes: { ml_signal: { proposal: { policy: { reason: "+20 bps on KRW-ETH clears the margin, but entries are barred: exchange unreachable" } } } },
    });
    expect(blockedText(ko, "ko", fromPolicy.why)).toBe("거래소 연결 불가");
  });
});

// Words that may stay in a Korean sentence: names, units and codes the server carries.
const KEPT = new Set(["ML", "LLM", "KST", "bps", "Groq", "Ollama", "ID"]);

/** English words left in a Korean text (feature names, markets, numbers and kept words aside). */
function english(text: string): string[] {
  const plain = text
    .replace(/\b[A-Z]{2,}-[A-Z0-9]+\b/g, "") // markets
    .replace(/\b[a-z]+(?:_[a-z0-9]+)+\b/g, "") // feature and node names (rsi_14, groq_check)
    .replace(/[-+]?\d[\d.,:T\-+Z]*/g, "");
  return (plain.match(/[A-Za-z][A-Za-z']+/g) ?? []).filter((word) => !KEPT.has(word));
}

describe("the engine's sentences in Korean", () => {
  // One of each sentence policy/rules.py and llm/rule_based.py write; a new form the viewer
  // does not translate fails here.
  const policy = [
    "no market has an expected return yet (warming up or no calibration)",
    "no edge: best expected net return -12.5 bps (KRW-BTC, after 14.0 bps of costs) does not clear the entry margin of 5.0 bps",
    "expected net return 20.1 bps on KRW-ETH (after 14.0 bps of costs) clears the margin 5.0",
    "exit KRW-BTC: expected return -3.2 bps is under the exit threshold -2.0 bps after 12 minutes held",
    "keep KRW-BTC: expected return 1.0 bps does not favour selling (exit threshold -2.0 bps) and no other market has a forecast",
    "exit KRW-BTC: held 240 minutes, the limit is 240",
    "keep KRW-BTC: expected return -9.0 bps favours selling, but it has been held 3 of the 10 minutes an ML exit waits",
    "expected net return 20.1 bps on KRW-ETH clears the margin, but entries are barred: exchange unreachable",
    "expected net return 20.1 bps on KRW-ETH clears the margin, but it was exited 4 minutes ago (pause: 30)",
    "expected net return 20.1 bps on KRW-ETH clears the margin, but its 6 entries for today (KST) are spent",
    "expected net return 20.1 bps on KRW-ETH clears the margin, but 2 position(s) are open already",
  ];
  const reasoning = [
    "rule-based mood check: buy refused because ret_60=-0.02 (limit -0.015), volatility_60=0.005 (limit 0.004)",
    "rule-based technical check: every check passed for sell KRW-XRP",
    "rule-based sizing: medium signal; 2 losses in a row; risk level high",
    "rule-based sizing: strong signal, low volatility; 3 wins in a row; risk level low",
    "rule-based sizing: weak or volatile signal; risk level medium",
    "no news source configured: sentiment unknown",
    "no scored news about the coin: sentiment unknown",
    "groq_check failed: TimeoutError: read timed out",
  ];

  it("find English left in a text (the check below relies on it)", () => {
    expect(english("every check passed for buy KRW-BTC: rsi_14=71.2")).toEqual(["every", "check", "passed", "for", "buy"]);
    expect(english("KRW-BTC 매수 통과: rsi_14=71.2 (20 bps, KST)")).toEqual([]);
  });

  it("translate every policy sentence, keeping its numbers and markets", () => {
    const left = policy.map((text) => [text, policyText(ko, "ko", text)]).filter(([, shown]) => english(shown).length > 0);
    expect(left).toEqual([]);
    expect(policyText(ko, "ko", policy[2])).toContain("KRW-ETH");
    expect(policyText(ko, "ko", policy[2])).toContain("20.1");
    expect(policyText(en, "en", policy[2])).toBe(policy[2]);
  });

  it("translate the rule-based reviewers' and sizer's reasoning", () => {
    const left = reasoning.map((text) => [text, reasoningText(ko, "ko", text)]).filter(([, shown]) => english(shown).length > 0);
    expect(left.filter(([text]) => !text.includes("TimeoutError"))).toEqual([]);
    expect(reasoningText(ko, "ko", reasoning[0])).toContain("ret_60=-0.02 (한도 -0.015)");
    expect(reasoningText(ko, "ko", reasoning[2])).toBe("규칙 기반 사이징: 중간 신호; 2연패; 위험 수준 높음");
    expect(reasoningText(en, "en", reasoning[0])).toBe(reasoning[0]);
  });

  it("name every live event type the API declares, and its fields", () => {
    // api/schemas.py STREAM_EVENT_TYPES, and the events the engine publishes beside them.
    const types = [
      "run_started", "node_started", "node_finished", "ml_signal", "llm_start", "llm_token", "verdict", "sizing",
      "order_sending", "order", "decision", "run_finished", "fill", "position_closed", "watchdog_trigger",
      "emergency_sell_failed", "protection", "trading_state", "monthly_cap_resumed", "model_status",
      "exchange_recovered", "replay_started", "replay_finished", "operator_sell", "gap", "overflow",
      "outage", "outage_ended", "prompt_saved", "node_skipped", "proposal", "news",
    ];
    const left = types.filter((type) => eventType("ko", type) === type || english(eventType("ko", type)).length > 0);
    expect(left).toEqual([]);
    const line = eventSummary(ko, "ko", {
      type: "decision",
      action: "buy",
      market: "KRW-BTC",
      reason: "ollama_disagreed",
      state: "halted",
      detector: "drop",
      proposal: { action: "sell", market: "KRW-ETH" },
    });
    expect(english(line)).toEqual([]);
    expect(line).toContain("KRW-BTC");
    expect(eventSummary(en, "en", { action: "buy", market: "KRW-BTC" })).toBe("action=buy market=KRW-BTC");
  });

  it("gloss every key of a run's node JSON", () => {
    const nodes = {
      input: { account: { krw: "1", equity: "2", positions: {} }, closes: { "KRW-BTC": 1 }, recent_results: [] },
      ml_signal: {
        proposal: {
          action: "buy",
          market: "KRW-BTC",
          reason: "enter",
          policy: { rule: "enter", value: 1, threshold: 2, unit: "bps", reason: "x", expected_returns_bps: {}, blocked: {} },
        },
      },
      groq_check: {
        verdict: "buy", confidence: 1, reasoning: "x", reviewer: "rule-based", risks: [], error: null, call: null, agrees: true,
        checks: [{ name: "ret_60", value: 0, limit: 0, passed: true }],
      },
      sizing: { investment_ratio: 0.3, stop_loss_pct: 1, take_profit_pct: 2, reasoning: "x", reviewer: "rule-based", clamps: [{ field: "x", proposed: 1, clamped_to: 1, rule: "x" }], refused: null },
      trade: { identifier: "x", market: "KRW-BTC", side: "bid", ord_type: "price", price: "1", state: "done", executed_volume: "1", avg_price: "1", paid_fee: "0", requested_krw: "1" },
    };
    const unglossed: string[] = [];
    const walk = (value: unknown) => {
      if (Array.isArray(value)) value.forEach(walk);
      else if (value && typeof value === "object") {
        for (const [key, item] of Object.entries(value)) {
          if (!key.startsWith("KRW-") && !/ · /.test(key)) unglossed.push(key);
          walk(item);
        }
      }
    };
    for (const output of Object.values(nodes)) walk(glossKeys(output, "ko"));
    expect(unglossed).toEqual([]);
    expect(glossKeys(nodes.trade, "en")).toBe(nodes.trade);
  });

  it("name the codes of the run page's tables", () => {
    const codes = [
      "done", "wait", "cancel", "rejected", "not_sent", "price", "market", "limit", "investment_ratio", "stop_loss_pct",
      "take_profit_pct", "min_investment_ratio", "max_investment_ratio", "medium_signal", "weak_or_volatile_signal",
      "losing_streak", "stop_loss_floor", "stop_loss_cap", "take_profit_floor", "take_profit_cap", "rule-based", "deterministic",
    ];
    expect(codes.filter((code) => codeText("ko", code) === code || english(codeText("ko", code)).length > 0)).toEqual([]);
    expect(codeText("en", "stop_loss_cap")).toBe("stop_loss_cap");
    expect(reasoningText(ko, "ko", "exit: sell the whole position")).toBe("청산: 포지션 전부 매도");
  });

  it("translate the sell-now and replay refusals", () => {
    expect(serverText(ko, "ko", "no position in KRW-BTC to sell")).toBe("KRW-BTC에 보유 중인 코인이 없어 매도할 것이 없습니다.");
    expect(english(serverText(ko, "ko", "run r1: the ML signal proposed hold, so no check ran and none runs in a fork: x"))).toEqual([]);
    const ruleBased = "groq_check rule-based here (no LLM configured): the stand-in reads no prompt, so ...";
    expect(serverText(ko, "ko", ruleBased)).toContain("groq_check");
    expect(english(serverText(ko, "ko", ruleBased))).toEqual([]);
    expect(serverText(ko, "ko", "the sell was refused: below the minimum order")).toContain("리스크 가드");
  });
});

describe("the news and the model registry's sentences in Korean", () => {
  // One of each sentence evaluation/promotion.py, app/models.py and ml/champion.py write.
  const reasons = [
    "beat the champion: +0.300% (3 entries) against lgbm-a's -0.100% (2 entries) after fees on 2025-09-18T00:00:00+00:00 .. 2025-09-20T00:00:00+00:00",
    "did not beat the champion: -1.250% (4 entries) against new's +0.300% (2 entries) after fees",
    "gain below 0.5%: +0.100% (1 entries) against new's +0.000% (0 entries) after fees on 2025-09-18T00:00:00+00:00 .. 2025-09-20T00:00:00+00:00",
    "not judged: only 120 unseen minutes after 2025-09-18T00:00:00+00:00 (at least 1440 are needed to judge)",
    "not judged: no candle after 2025-09-18T00:00:00+00:00 that neither set has trained on",
    "never judged",
    "promoted by hand",
    "replaced by lgbm-b (operator)",
    "rolled back (operator): rolled back from lgbm-b",
    "the set trading when the first challenger was judged",
  ];

  it("translate every promotion reason, keeping its figures and names", () => {
    // Model ids are names: taken out before looking for English.
    const ids = /\b(lgbm-a|lgbm-b|new)\b/g;
    const left = reasons
      .map((text) => [text, promotionText(ko, "ko", text)])
      .filter(([, shown]) => english(shown.replace(ids, "")).length > 0);
    expect(left).toEqual([]);
    const beat = promotionText(ko, "ko", reasons[0]);
    expect(beat).toContain("+0.300%");
    expect(beat).toContain("lgbm-a");
    expect(beat).toContain("2025-09-18 09:00");
    expect(promotionText(ko, "ko", reasons[2])).toContain("0.5%");
    expect(promotionText(en, "en", reasons[1])).toBe(reasons[1]);
  });

  it("label the lexicon's reasons and keep the words it scored", () => {
    expect(newsReasonText(ko, "ko", "lexicon: hack exploit")).toBe(`${ko("lexiconWords")}: hack exploit`);
    expect(english(newsReasonText(ko, "ko", "lexicon: no scored words"))).toEqual([]);
    expect(newsReasonText(en, "en", "lexicon: hack")).toBe("lexicon: hack");
  });

  it("gloss the keys of the news a decision's reviewers were shown", () => {
    const input = { news: { "KRW-BTC": [{ title: "t", source: "s", first_seen_at: "x", score: -0.7, relevance: 1, reason: "r", notice: "warning" }] } };
    const unglossed: string[] = [];
    const walk = (value: unknown) => {
      if (Array.isArray(value)) value.forEach(walk);
      else if (value && typeof value === "object") {
        for (const [key, item] of Object.entries(value)) {
          if (!key.startsWith("KRW-") && !/ · /.test(key)) unglossed.push(key);
          walk(item);
        }
      }
    };
    walk(glossKeys(input, "ko"));
    expect(unglossed).toEqual([]);
    expect(eventType("ko", "news")).toBe("뉴스");
  });
});
