// The server's words (errors, the model's verdict, why entries are barred) in the viewer's
// language. The API answers in English; known messages are matched here and translated, with
// the names and numbers they carry. An unknown message is shown as the server wrote it.
import { detectorLabel, fill, kst, reasonLabel, type LabelKey, type Lang } from "./i18n";

type T = (key: LabelKey) => string;

const SERVER: [RegExp, LabelKey][] = [
  [/^no API token is configured/, "srv_tokenNotSet"],
  [/^missing bearer token/, "srv_tokenMissing"],
  [/^wrong bearer token/, "srv_tokenWrong"],
  [/^run (\S+) not found$/, "srv_runNotFound"],
  [/^prompt '([^']+)' not found/, "srv_promptNotFound"],
  [/^prompt '[^']+' changed since the edit began/, "srv_promptChanged"],
  [/^no engine here: this server cannot sell$/, "srv_cannotSell"],
  [/^no engine here/, "srv_noEngine"],
  [/^no bar has closed yet/, "srv_nothingYet"],
  [/^market \S+ is not traded here/, "srv_notTraded"],
  [/has no checkpoint after ml_signal to fork from/, "srv_noCheckpoint"],
  [/^the fork failed/, "srv_forkFailed"],
  [/is not configured \(LXA_[A-Z_]+\): no model to swap$/, "srv_notConfigured"],
  [/^Failed to fetch$|^NetworkError|^Load failed$/, "srv_network"],
  [/^no position in (\S+) to sell$/, "srv_noPosition"],
  [/^run \S+: the ML signal proposed hold, so no check ran/, "srv_replayHold"],
  [/^([\w, ]+) rule-based here \(no LLM configured\)/, "srv_replayRuleBased"],
  [/^the model registry could not be read/, "srv_registryUnreadable"],
];

/** A server message in the viewer's language (Korean: known ones translated, with details). */
export function serverText(t: T, lang: Lang, message: string | null | undefined): string {
  if (!message) return "";
  if (lang === "en") return message;
  for (const [pattern, key] of SERVER) {
    const found = pattern.exec(message);
    if (!found) continue;
    const text = fill(t(key), { id: found[1] ?? "", name: found[1] ?? "" });
    // A fork that failed keeps the reason (names of exceptions, not words to translate).
    // A fork that failed or a refused sell keeps the reason (names, not words to translate).
    if (key === "srv_forkFailed") return `${text} (${message.replace(/^the fork failed:\s*/, "")})`;
    if (key === "srv_registryUnreadable") return `${text} (${message.replace(/^the model registry could not be read:\s*/, "")})`;
    return text;
  }
  const refused = /^the sell was refused: (.+)$/.exec(message);
  if (refused) return `${t("srv_sellRefused")} ${refused[1]}`;
  // A prompt the loader refused: "<file>:<line>: <reason>"; the reason names the variable.
  if (/^[\w.-]+\.md(:\d+)?: /.test(message)) return `${t("srv_promptInvalid")} ${message}`;
  return message;
}

/** The model's verdict (policy/evidence.py) in the viewer's language. */
export function modelVerdict(t: T, lang: Lang, verdict: string | null | undefined): string {
  if (!verdict) return "";
  if (lang === "en") return verdict;
  if (verdict.startsWith("the model set carries no out-of-sample")) return t("mv_noEvaluation");
  if (verdict.startsWith("the model set's out-of-sample policy result is unreadable")) return t("mv_unreadable");
  if (verdict.startsWith("its policy made no trade")) return t("mv_noTrade");
  const lost = /^its policy lost (\S+%) after fees/.exec(verdict);
  if (lost) return fill(t("mv_lost"), { pct: lost[1] });
  const made = /^its policy made (\S+%) after fees/.exec(verdict);
  if (made) return fill(t("mv_made"), { pct: made[1] });
  return verdict;
}

/** Why entries into a market are barred (app/engine/control.py), in the viewer's language. */
export function blockedText(t: T, lang: Lang, why: string | null | undefined): string {
  if (!why) return t("blockedWhy");
  const cooldown = /^cooldown after (\S+) until (\S+)$/.exec(why);
  if (cooldown) return fill(t("cooldownAfter"), { detector: detectorLabel(t, cooldown[1]), until: kst(cooldown[2], lang) });
  if (why === "exchange unreachable") return t("det_network");
  if (why.startsWith("trading halted")) return `${t("halted")} (${why.replace(/^trading halted:\s*/, "")})`;
  if (why.startsWith("trading reducing")) return `${t("reducing")} (${why.replace(/^trading reducing:\s*/, "")})`;
  if (why.startsWith("unproven model")) return t("state_unproven_model_blocked");
  return why;
}

/** The market a blocked run names and why its entry was barred, from the run's proposal. */
export function blockedOf(detail: {
  market?: string | null;
  nodes?: Record<string, unknown>;
  events?: { type: string; payload: Record<string, unknown> | null }[];
}): { market: string | null; why: string | null } {
  const market = detail.market ?? null;
  for (const event of detail.events ?? []) {
    const blocked = event.payload?.blocked;
    if (event.type === "proposal" && blocked && typeof blocked === "object" && market) {
      const why = (blocked as Record<string, unknown>)[market];
      if (typeof why === "string") return { market, why };
    }
  }
  const policy = ((detail.nodes?.ml_signal as Record<string, unknown> | undefined)?.proposal as Record<string, unknown> | undefined)
    ?.policy as Record<string, unknown> | undefined;
  const explanation = typeof policy?.reason === "string" ? policy.reason : null;
  const barred = explanation ? /entries are barred: (.+)$/.exec(explanation) : null;
  return { market, why: barred ? barred[1] : null };
}

// ---- Sentences the engine writes (policy/rules.py, llm/rule_based.py) and the live events ----
// The English view shows them as the server wrote them; the Korean view translates the known
// forms, keeping the numbers, markets and feature names they carry.

const ACTION_KO: Record<string, string> = { buy: "매수", sell: "매도", hold: "보류" };
const CHECK_KO: Record<string, string> = { "mood check": "분위기 검토", "technical check": "기술적 검토" };
const RISK_LEVEL_KO: Record<string, string> = { low: "낮음", medium: "중간", high: "높음" };

type Rule = [RegExp, (found: RegExpExecArray, t: T, lang: Lang) => string];

const NET = String.raw`expected net return (\S+) bps`;
const POLICY: Rule[] = [
  [/^no market has an expected return yet \(warming up or no calibration\)$/, () => "아직 기대수익이 있는 마켓이 없습니다 (준비 중이거나 보정 없음)"],
  [
    new RegExp(String.raw`^no edge: best ${NET} \((\S+), after (\S+) bps of costs\) does not clear the entry margin of (\S+) bps$`),
    (f) => `우위 없음: 최선의 기대 순수익 ${f[1]} bps (${f[2]}, 비용 ${f[3]} bps 차감 후)가 진입 기준 ${f[4]} bps를 넘지 못함`,
  ],
  [
    new RegExp(String.raw`^${NET} on (\S+) \(after (\S+) bps of costs\) clears the margin (\S+)$`),
    (f) => `${f[2]}의 기대 순수익 ${f[1]} bps (비용 ${f[3]} bps 차감 후)가 기준 ${f[4]} bps를 넘음`,
  ],
  [
    /^exit (\S+): expected return (\S+) bps is under the exit threshold (\S+) bps after (\S+) minutes held$/,
    (f) => `${f[1]} 청산: 기대수익 ${f[2]} bps가 청산 기준 ${f[3]} bps보다 낮음 (${f[4]}분 보유 후)`,
  ],
  [
    /^keep (\S+): expected return (\S+) bps does not favour selling \(exit threshold (\S+) bps\) and no other market has a forecast$/,
    (f) => `${f[1]} 유지: 기대수익 ${f[2]} bps는 매도할 만하지 않고 (청산 기준 ${f[3]} bps), 다른 마켓에는 예측이 없음`,
  ],
  [/^exit (\S+): held (\S+) minutes, the limit is (\S+)$/, (f) => `${f[1]} 청산: ${f[2]}분 보유, 한도는 ${f[3]}분`],
  [
    /^keep (\S+): expected return (\S+) bps favours selling, but it has been held (\S+) of the (\S+) minutes an ML exit waits$/,
    (f) => `${f[1]} 유지: 기대수익 ${f[2]} bps는 매도 쪽이지만, ML 청산 전 대기 ${f[4]}분 중 ${f[3]}분만 보유함`,
  ],
  [
    new RegExp(String.raw`^${NET} on (\S+) clears the margin, but entries are barred: (.+)$`),
    (f, t, lang) => `${f[2]}의 기대 순수익 ${f[1]} bps가 기준을 넘지만 진입이 막혀 있음: ${blockedText(t, lang, f[3])}`,
  ],
  [
    new RegExp(String.raw`^${NET} on (\S+) clears the margin, but it was exited (\S+) minutes ago \(pause: (\S+)\)$`),
    (f) => `${f[2]}의 기대 순수익 ${f[1]} bps가 기준을 넘지만 ${f[3]}분 전에 청산함 (재진입 대기 ${f[4]}분)`,
  ],
  [
    new RegExp(String.raw`^${NET} on (\S+) clears the margin, but its (\S+) entries for today \(KST\) are spent$`),
    (f) => `${f[2]}의 기대 순수익 ${f[1]} bps가 기준을 넘지만 오늘(KST) 진입 ${f[3]}회를 모두 씀`,
  ],
  [
    new RegExp(String.raw`^${NET} on (\S+) clears the margin, but (\S+) position\(s\) are open already$`),
    (f) => `${f[2]}의 기대 순수익 ${f[1]} bps가 기준을 넘지만 이미 포지션 ${f[3]}개가 열려 있음`,
  ],
];

function sizingTier(tier: string): string {
  return tier
    .split("; ")
    .map((part) => {
      if (part === "strong signal, low volatility") return "강한 신호, 낮은 변동성";
      if (part === "medium signal") return "중간 신호";
      if (part === "weak or volatile signal") return "약하거나 변동성 큰 신호";
      const losses = /^(\d+) losses in a row$/.exec(part);
      if (losses) return `${losses[1]}연패`;
      const wins = /^(\d+) wins in a row$/.exec(part);
      if (wins) return `${wins[1]}연승`;
      return part;
    })
    .join("; ");
}

const REASONING: Rule[] = [
  [
    /^rule-based (mood check|technical check): (buy|sell|hold) refused because (.+)$/,
    (f) => `규칙 기반 ${CHECK_KO[f[1]]}: ${ACTION_KO[f[2]]} 거부 — ${f[3].replace(/\(limit /g, "(한도 ")}`,
  ],
  [
    /^rule-based (mood check|technical check): every check passed for (buy|sell|hold) (\S+)$/,
    (f) => `규칙 기반 ${CHECK_KO[f[1]]}: ${f[3]} ${ACTION_KO[f[2]]}에 대한 모든 점검 통과`,
  ],
  [
    /^rule-based sizing: (.+); risk level (low|medium|high)$/,
    (f) => `규칙 기반 사이징: ${sizingTier(f[1])}; 위험 수준 ${RISK_LEVEL_KO[f[2]]}`,
  ],
  [/^no news source configured: sentiment unknown$/, () => "뉴스 소스 없음: 시장 심리 알 수 없음"],
  [
    /^no scored news about the coin: sentiment unknown$/,
    () => "이 코인에 대한 점수 매긴 뉴스 없음: 시장 심리 알 수 없음",
  ],
  [/^exit: sell the whole position$/, () => "청산: 포지션 전부 매도"],
  [/^(groq_check|ollama_check|sizing) failed: (.+)$/, (f) => `${f[1]} 실패: ${f[2]}`],
];

function translated(rules: Rule[], t: T, lang: Lang, text: string | null | undefined): string {
  if (!text) return "";
  if (lang === "en") return text;
  for (const [pattern, render] of rules) {
    const found = pattern.exec(text);
    if (found) return render(found, t, lang);
  }
  return text;
}

/** The policy's sentence for its proposal (policy/rules.py `_reason`), in the viewer's language. */
export function policyText(t: T, lang: Lang, text: string | null | undefined): string {
  return translated(POLICY, t, lang, text);
}

/** A reviewer's or the sizer's reasoning and risks (the rule-based stand-ins' sentences). */
export function reasoningText(t: T, lang: Lang, text: string | null | undefined): string {
  return translated(REASONING, t, lang, text);
}

const EVENT_KO: Record<string, string> = {
  run_started: "실행 시작",
  node_started: "노드 시작",
  node_finished: "노드 완료",
  ml_signal: "ML 신호",
  proposal: "제안",
  llm_start: "LLM 호출 시작",
  llm_token: "LLM 텍스트",
  verdict: "판정",
  sizing: "사이징",
  order_sending: "주문 전송",
  order: "주문",
  decision: "결정",
  run_finished: "실행 완료",
  fill: "체결",
  position_closed: "포지션 청산",
  watchdog_trigger: "감시 장치 발동",
  emergency_sell_failed: "긴급 매도 실패",
  protection: "손절/익절",
  trading_state: "거래 상태",
  monthly_cap_resumed: "월간 손실 한도 해제",
  model_status: "모델 상태",
  exchange_recovered: "거래소 복구",
  replay_started: "재실행 시작",
  replay_finished: "재실행 완료",
  prompt_saved: "프롬프트 저장",
  operator_sell: "운영자 매도",
  outage: "장애",
  outage_ended: "장애 종료",
  node_skipped: "노드 건너뜀",
  gap: "이벤트 누락",
  overflow: "연결 지연으로 끊김",
  feed_stale: "시세 지연",
  feed_reconnected: "시세 재연결",
  feed_backfill_failed: "시세 보충 실패",
  news: "뉴스",
};

const FIELD_KO: Record<string, string> = {
  action: "행동",
  market: "마켓",
  reason: "사유",
  verdict: "판정",
  skipped_node: "건너뛴 노드",
  because: "이유",
  state: "상태",
  detector: "감지기",
  proposal: "제안",
  title: "제목",
  source: "출처",
};

const STATE_KO: Record<string, string> = {
  active: "활성",
  halted: "중지",
  reducing: "축소",
  done: "완료",
  wait: "대기",
  cancel: "취소",
  rejected: "거부",
  not_sent: "미전송",
  sending: "전송 중",
};

/** A live event's type in the viewer's language (an unknown type is shown as sent). */
export function eventType(lang: Lang, type: string): string {
  return lang === "en" ? type : (EVENT_KO[type] ?? type);
}

/** A live event's fields in one line (`key=value ...`), in the viewer's language. */
export function eventSummary(t: T, lang: Lang, event: Record<string, unknown>): string {
  const parts: string[] = [];
  for (const key of Object.keys(FIELD_KO)) {
    const raw = event[key];
    if (raw === undefined || raw === null) continue;
    const value = typeof raw === "object" ? JSON.stringify(raw) : String(raw);
    if (lang === "en") {
      parts.push(`${key}=${value}`);
      continue;
    }
    let shown = value;
    if (key === "action" || key === "verdict") shown = ACTION_KO[value] ?? value;
    else if (key === "reason" || key === "because") shown = reasonLabel(t, value);
    else if (key === "detector") shown = detectorLabel(t, value);
    else if (key === "state") shown = STATE_KO[value] ?? value;
    else if (key === "proposal" && typeof raw === "object") {
      const proposal = raw as Record<string, unknown>;
      shown = `${ACTION_KO[String(proposal.action)] ?? String(proposal.action ?? "")} ${String(proposal.market ?? "")}`.trim();
    }
    parts.push(`${FIELD_KO[key]}=${shown}`);
  }
  return parts.join(" ");
}

// The keys of the run page's node JSON, glossed in Korean (the key itself is kept: it is
// what the API and the journal call it).
export const KEY_KO: Record<string, string> = {
  news: "뉴스",
  title: "제목",
  source: "출처",
  first_seen_at: "처음 본 시각",
  score: "점수",
  relevance: "관련도",
  notice: "공지",
  account: "계좌",
  krw: "원화",
  equity: "평가액",
  positions: "보유 포지션",
  volume: "수량",
  avg_buy_price: "평균 매수가",
  unrealized_pct: "미실현 손익(%)",
  stop_loss_price: "손절가",
  take_profit_price: "익절가",
  closes: "종가",
  recent_results: "최근 결과",
  proposal: "제안",
  signals: "신호",
  action: "행동",
  market: "마켓",
  reason: "사유",
  rule: "규칙",
  value: "값",
  threshold: "기준",
  unit: "단위",
  expected_returns_bps: "기대수익(bps)",
  policy: "정책",
  blocked: "진입 차단",
  entry_probability: "진입 확률",
  exit_probability: "청산 확률",
  p_buy: "매수 확률",
  p_sell: "매도 확률",
  p_hold: "보류 확률",
  expected_return_bps: "기대수익(bps)",
  verdict: "판정",
  confidence: "확신도",
  reasoning: "판단 근거",
  reviewer: "검토자",
  risks: "위험 요인",
  checks: "점검",
  name: "이름",
  limit: "한도",
  passed: "통과",
  error: "오류",
  call: "LLM 호출",
  agrees: "동의",
  investment_ratio: "투자 비율",
  stop_loss_pct: "손절(%)",
  take_profit_pct: "익절(%)",
  clamps: "제한 적용",
  field: "항목",
  proposed: "제안값",
  clamped_to: "제한값",
  refused: "거부",
  identifier: "주문 ID",
  side: "방향",
  ord_type: "주문 유형",
  price: "가격",
  state: "상태",
  executed_volume: "체결 수량",
  avg_price: "평균 체결가",
  paid_fee: "수수료",
  requested_krw: "요청 금액(원)",
  model_id: "모델 ID",
  features: "특성값",
};

/** The node JSON with its keys glossed in Korean ("proposal · 제안"); English as it is. */
export function glossKeys(value: unknown, lang: Lang): unknown {
  if (lang === "en") return value;
  if (Array.isArray(value)) return value.map((item) => glossKeys(item, lang));
  if (value && typeof value === "object") {
    return Object.fromEntries(
      Object.entries(value as Record<string, unknown>).map(([key, item]) => [
        KEY_KO[key] ? `${key} · ${KEY_KO[key]}` : key,
        // Feature values and per-market maps keep their own names (rsi_14, KRW-BTC).
        key === "features" ? item : glossKeys(item, lang),
      ]),
    );
  }
  return value;
}

// Codes the run page shows in tables: order states and types, sizing clamps, reviewer labels.
const CODE_KO: Record<string, string> = {
  ...STATE_KO,
  price: "시장가 매수 (금액)",
  market: "시장가 매도",
  limit: "지정가",
  best: "최유리",
  investment_ratio: "투자 비율",
  stop_loss_pct: "손절(%)",
  take_profit_pct: "익절(%)",
  min_investment_ratio: "최소 투자 비율",
  max_investment_ratio: "최대 투자 비율",
  medium_signal: "중간 신호 상한",
  weak_or_volatile_signal: "약하거나 변동성 큰 신호 상한",
  losing_streak: "연패 상한",
  stop_loss_floor: "손절 하한",
  stop_loss_cap: "손절 상한",
  take_profit_floor: "익절 하한",
  take_profit_cap: "익절 상한",
  "rule-based": "규칙 기반",
  deterministic: "결정적 규칙",
  operator: "운영자",
  retrain: "재학습",
};

/** A code the engine writes (order state or type, clamp field or rule, reviewer label). */
export function codeText(lang: Lang, code: string | null | undefined): string {
  if (!code) return "";
  return lang === "en" ? code : (CODE_KO[code] ?? code);
}

/** A news score's reason in the viewer's language: the lexicon scorer's ("lexicon: words") is
 * labelled, the words themselves (the headline's) kept; an LLM's reason is shown as written. */
export function newsReasonText(t: T, lang: Lang, reason: string | null | undefined): string {
  if (!reason) return "";
  if (lang === "en") return reason;
  const lexicon = /^lexicon: (.*)$/.exec(reason);
  if (!lexicon) return reason;
  return lexicon[1] === "no scored words" ? t("lexiconNone") : `${t("lexiconWords")}: ${lexicon[1]}`;
}

const FIGURES = String.raw`(\S+%) \((\d+) entries\) against (\S+)'s (\S+%) \((\d+) entries\) after fees(?: on (\S+) \.\. (\S+))?`;
const PROMOTION: [RegExp, LabelKey][] = [
  [new RegExp(`^beat the champion: ${FIGURES}$`), "promo_beat"],
  [new RegExp(`^did not beat the champion: ${FIGURES}$`), "promo_notBeat"],
  [new RegExp(`^gain below (\\S+%): ${FIGURES}$`), "promo_gainBelow"],
];

/** Why a model version was promoted, kept or retired (evaluation/promotion.py, ml/champion.py)
 * in the viewer's language, with its figures and names. */
export function promotionText(t: T, lang: Lang, reason: string | null | undefined): string {
  if (!reason) return "";
  if (lang === "en") return reason;
  for (const [pattern, key] of PROMOTION) {
    const found = pattern.exec(reason);
    if (!found) continue;
    const figures = key === "promo_gainBelow" ? found.slice(2) : found.slice(1);
    const [ours, entries, champion, theirs, theirEntries, first, last] = figures;
    const window = first ? fill(t("promo_window"), { first: kst(first, lang), last: kst(last, lang) }) : "";
    return (
      fill(t(key), { ours, entries, champion, theirs, theirEntries, gain: found[1] }) + window
    );
  }
  if (reason === "never judged") return t("promo_never");
  if (reason === "promoted by hand") return t("promo_byHand");
  if (reason === "the set trading when the first challenger was judged") return t("promo_adopted");
  const replaced = /^replaced by (\S+) \((\S+)\)$/.exec(reason);
  if (replaced) return fill(t("promo_replaced"), { id: replaced[1], by: codeText(lang, replaced[2]) });
  const rolled = /^rolled back \((\S+)\): rolled back from (\S+)$/.exec(reason);
  if (rolled) return fill(t("promo_rolledBack"), { id: rolled[2] });
  const short = /^not judged: only (\d+) unseen minutes after (\S+) \(at least (\d+) are needed to judge\)$/.exec(reason);
  if (short) return fill(t("promo_tooShort"), { minutes: short[1], after: kst(short[2], lang), needed: short[3] });
  const none = /^not judged: no candle after (\S+) that neither set has trained on$/.exec(reason);
  if (none) return fill(t("promo_noCandle"), { after: kst(none[1], lang) });
  return reason;
}
