// The viewer's only contract: the JSON of the LXA API (api/schemas.py).

export type Json = Record<string, unknown>;

export interface RunSummary {
  run_id: string;
  session_id: string;
  bar_ts: string;
  created_at: string;
  trigger: string;
  action: string;
  market: string | null;
  reason: string;
  duration_ms: number;
  reviewer_labels: Record<string, string | null>;
}

export interface RunList {
  runs: RunSummary[];
  limit: number;
  offset: number;
  total: number;
}

export interface LlmCall {
  id: number;
  run_id: string;
  node: string;
  provider: string;
  model: string;
  prompt_ref: string | null;
  request: Json;
  response: Json | null;
  verdict: string | null;
  latency_ms: number;
  created_at: string;
  error: string | null;
  input_tokens?: number | null;
  output_tokens?: number | null;
  cached?: boolean;
}

export interface Order {
  identifier: string;
  run_id: string | null;
  market: string;
  side: string;
  ord_type: string;
  price: string | null;
  volume: string | null;
  state: string;
  reason: string | null;
  created_at: string;
  updated_at: string;
  executed_volume: string;
  paid_fee: string;
}

export interface Fill {
  id: number;
  order_identifier: string;
  market: string;
  side: string;
  price: string;
  volume: string;
  fee: string;
  ts: string;
}

export interface StoredEvent {
  id: number;
  run_id: string | null;
  ts: string;
  type: string;
  payload: Json;
  /** The bar the event fell in (watchdog triggers; `ts` is the wall clock). */
  bar_ts?: string | null;
}

export interface RunDetail extends RunSummary {
  nodes: Record<string, unknown>;
  ml: Json;
  verdicts: Record<string, Verdict | null>;
  sizing: Sizing | null;
  clamps?: Clamp[];
  prompt_refs?: Record<string, string | null>;
  events: StoredEvent[];
  orders: Order[];
  fills?: Fill[];
  llm_calls: LlmCall[];
}

export interface Verdict {
  verdict?: string;
  agrees?: boolean;
  confidence?: number;
  reasoning?: string;
  risks?: string[];
  reviewer?: string;
  error?: string | null;
  latency_ms?: number;
  call?: Json | null;
}

export interface Clamp {
  field: string;
  proposed: number;
  clamped_to: number;
  rule: string;
}

export interface Sizing {
  investment_ratio?: number;
  stop_loss_pct?: number;
  take_profit_pct?: number;
  reasoning?: string;
  reviewer?: string;
  proposed?: Record<string, number>;
  clamps?: Clamp[];
  order_krw?: string | null;
  volume?: string | null;
  refused?: string | null;
}

export interface GraphEdge {
  source: string;
  target: string;
  conditional: boolean;
}

export interface GraphOut {
  mermaid: string;
  nodes: string[];
  edges: GraphEdge[];
}

/** The monthly loss cap as the engine last wrote it (api/schemas.py MonthlyCapOut). */
export interface MonthlyCap {
  month: string;
  start_equity: string | null;
  last_equity: string | null;
  loss_pct: number | null;
  cap_pct: number | null;
  breached: boolean;
  reason: string | null;
  breached_at: string | null;
  resumed_at: string | null;
  resumed_by: string | null;
  resume_pending: boolean;
  clears_on: string | null;
  how_to_clear: string | null;
  updated_at: string;
}

/** The daily loss limit, from an engine running in the API's process (DailyLimitOut). */
export interface DailyLimit {
  trading_day: string | null;
  start_equity: string | null;
  last_equity: string | null;
  loss_pct: number | null;
  limit_pct: number;
  breached: boolean;
}

export interface TradingState {
  state: string;
  reason: string;
  flatten_requested: boolean;
  updated_at: string | null;
  updated_by: string | null;
  // Added by newer servers (absent from the halt/resume events of older ones).
  effective_state?: "active" | "reducing" | "halted";
  effective_reason?: string;
  entries_allowed?: boolean;
  monthly?: MonthlyCap | null;
  daily?: DailyLimit | null;
}

/** The model set the engine trades with (GET /api/model, the `model_status` event). */
export interface ModelStatus {
  model_id: string | null;
  proven: boolean;
  verdict: string;
  live: boolean;
  allow_unproven_model: boolean;
  block_entries: boolean;
  evaluation_window: { first_ts?: string | null; last_ts?: string | null; bars?: number | null; markets?: string[] } | null;
  evaluation_return: number | null;
  evaluation_entries: number | null;
  buy_and_hold_return: number | null;
  recorded_at?: string;
}

export interface Info {
  session_id: string | null;
  mode: string;
  feed: string;
  markets: string[];
  can_run: boolean;
  can_replay: boolean;
  token_configured: boolean;
  reads_need_token: boolean;
  bus: string;
  version: string;
  /** Who answers each LLM node in the running engine (null without one). */
  reviewers?: Record<string, ReviewerInfo> | null;
  can_sell?: boolean;
}

export interface ReviewerInfo {
  kind: "llm" | "rule_based";
  label: string;
  provider: string | null;
  model: string | null;
  setting: string;
}

export interface SellOut {
  market: string;
  identifier: string;
  state: string;
  volume: string;
  executed_volume: string;
  avg_price: string | null;
  reason: string;
  exit_reason: "operator";
  cooldown_until?: string | null;
}

export interface Candle {
  ts: string;
  open: string;
  high: string;
  low: string;
  close: string;
  volume: string | null;
  bars: number;
}

export interface CandleOut {
  market: string;
  source: "bars" | "closes";
  bucket_minutes: number;
  bars: number;
  since: string | null;
  until: string | null;
  first_bar: string | null;
  last_bar: string | null;
  candles: Candle[];
}

export interface RunAccepted {
  run_id: string;
  market?: string | null;
  stream_url?: string;
}

export interface ReplayOutcome {
  run_id: string;
  action: string;
  market: string | null;
  reason: string;
  groq: Verdict | null;
  ollama: Verdict | null;
  sizing: Sizing | null;
  order: Json | null;
  would_trade: boolean;
  prompt_refs: Record<string, string | null>;
  reviewers: Record<string, string | null>;
}

export interface ReplayOut {
  run_id: string;
  fork_id: string;
  forked_from_checkpoint: string;
  forked_before: string[];
  original: ReplayOutcome;
  replayed: ReplayOutcome;
  changed: boolean;
  notes: string[];
}

export interface PromptSummary {
  name: string;
  ref: string | null;
  sha256: string | null;
  description: string | null;
  variables: Record<string, string>;
  valid: boolean;
  error?: string | null;
}

export interface PromptOut extends PromptSummary {
  text: string;
  required_variables?: string[];
}

export interface PromptVersion {
  id: number;
  name: string;
  sha256: string;
  ref: string;
  created_at: string;
  created_by: string;
  message: string;
  previous_sha256: string | null;
  diff: string;
  text?: string | null;
}

export interface PromptCheck {
  valid: boolean;
  error: string | null;
  ref: string | null;
  diff: string;
}

export interface EquityPoint {
  ts: string;
  equity: string;
  buy_and_hold: string | null;
  run_id: string;
}

export interface EquityOut {
  session_id: string | null;
  points: EquityPoint[];
  note: string;
}

export interface PricePoint {
  ts: string;
  close: string;
  open?: string | null;
  high?: string | null;
  low?: string | null;
  bars?: number;
}

export interface PriceOut {
  market: string;
  points: PricePoint[];
}

export interface WatchdogOut {
  enabled: boolean;
  source: string;
  config: Json;
  exchange_healthy: boolean | null;
  consecutive_failures: number | null;
  markets: { market: string; cooldown_until: string | null; cooldown_detector: string | null }[];
  recent_triggers: StoredEvent[];
}

export interface Position {
  market: string;
  volume: string;
  avg_buy_price: string;
  stop_loss_price: string | null;
  take_profit_price: string | null;
  mark_price?: number | null;
  unrealized_pct?: number | null;
  run_id?: string | null;
}

export interface AccountOut {
  krw: string;
  equity: string;
  balances: { currency: string; balance: string; value_krw?: string | null }[];
  as_of: string | null;
}

/** An answer other than 2xx, with the server's message (`detail`) in words. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** Turn FastAPI's `detail` (a string, or pydantic's list of errors) into one message. */
export function detailMessage(body: unknown, fallback: string): string {
  if (body && typeof body === "object" && "detail" in body) {
    const detail = (body as { detail: unknown }).detail;
    if (typeof detail === "string") return detail;
    if (Array.isArray(detail)) {
      return detail
        .map((item) => {
          const entry = item as { loc?: unknown[]; msg?: string };
          const where = (entry.loc ?? []).filter((part) => part !== "body").join(".");
          return where ? `${where}: ${entry.msg ?? ""}` : (entry.msg ?? "");
        })
        .join("; ");
    }
  }
  return fallback;
}

const TOKEN_KEY = "lxa-token";

export function getToken(): string {
  return localStorage.getItem(TOKEN_KEY) ?? "";
}

export function setToken(token: string): void {
  if (token) localStorage.setItem(TOKEN_KEY, token);
  else localStorage.removeItem(TOKEN_KEY);
}

async function request<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json" };
  const token = getToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let parsed: unknown = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = null;
  }
  if (!response.ok) {
    throw new ApiError(response.status, detailMessage(parsed, `${response.status} ${text}`.trim()));
  }
  return parsed as T;
}

export const api = {
  get: <T>(path: string) => request<T>("GET", path),
  post: <T>(path: string, body?: unknown) => request<T>("POST", path, body ?? {}),
  put: <T>(path: string, body: unknown) => request<T>("PUT", path, body),
};

export function query(params: Record<string, string | number | null | undefined>): string {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

export type ExitKind = "ml_exit" | "stop_loss" | "take_profit" | "watchdog" | "flatten" | "adopted" | "other";

export interface Trade {
  market: string;
  status: "closed" | "open" | "unmatched";
  entry_ts: string | null;
  entry_kind: "entry" | "adopted" | null;
  entry_price: string | null;
  entry_run_id: string | null;
  entry_order: string | null;
  exit_ts: string | null;
  exit_price: string | null;
  exit_run_id: string | null;
  exit_order: string | null;
  exit_kind: ExitKind | null;
  exit_detail: string | null;
  closed_event_id: number | null;
  volume: string;
  volume_open: string;
  cost: string;
  fees: string;
  realised_pnl: string;
  return_pct: number | null;
}

export interface TradeList {
  trades: Trade[];
  total: number;
  closed: number;
  realised_pnl: string;
  fees: string;
}

export interface Period {
  start: string | null;
  start_equity: string | null;
  equity: string | null;
  return_pct: number | null;
  realised_pnl: string;
  fees: string;
  trades_closed: number;
  wins: number;
  win_rate_pct: number | null;
  max_drawdown_pct: number;
}

export interface Summary {
  session_id: string | null;
  source: "engine" | "journal";
  first_bar: string | null;
  last_bar: string | null;
  start_equity: string | null;
  equity: string | null;
  return_pct: number | null;
  buy_and_hold_equity: string | null;
  buy_and_hold_return_pct: number | null;
  cash_return_pct: number;
  vs_buy_and_hold_pct: number | null;
  realised_pnl: string;
  unrealised_pnl: string;
  fees: string;
  drawdown_pct: number;
  open_positions: number;
  since_start: Period;
  today: Period;
  today_date: string | null;
  state: {
    code: string;
    effective_state: string;
    entries_allowed: boolean;
    reason: string;
    model_proven: boolean | null;
    model_verdict: string | null;
  };
  note: string;
}

export interface MeanCi {
  n: number;
  mean: number | null;
  ci95: [number, number] | null;
}

export interface ReviewerFigures {
  asked: number;
  vetoed: number;
  veto_rate: number | null;
  vetoed_net_return: MeanCi;
  passed_net_return: MeanCi;
  passed_minus_vetoed: number | null;
}

/** GET /api/reviewers: the veto ledger (store/reviewer_ledger.py). */
export interface ReviewerLedger {
  horizon_minutes: number;
  round_trip_fee: number;
  proposals: number;
  with_outcome: number;
  reviewers: Record<string, ReviewerFigures>;
  agreement: Record<string, number>;
  /** Who answered each reviewer: label (rule-based or provider:model) -> runs. */
  labels?: Record<string, Record<string, number>>;
}

export interface NodeInUse {
  reviewer: string | null;
  /** false: a rule-based stand-in (its prompt is not read); null: no run asked it yet. */
  llm: boolean | null;
  run_id: string | null;
  bar_ts: string | null;
  setting: string;
  /** true: from the engine's configuration (GET /api/info), not from a past run. */
  configured?: boolean;
}

/** GET /api/reviewers/in-use: who answered each LLM node in the latest run that asked it. */
export interface ReviewersInUse {
  session_id: string | null;
  runs_scanned: number;
  nodes: Record<string, NodeInUse>;
}

/** An LLM names itself provider:model; rule-based, deterministic and llm-off do not. */
export function isLlmLabel(label: string | null | undefined): boolean {
  return typeof label === "string" && label.includes(":");
}

/** Whether an LLM answered any review or the sizing of this run. */
export function llmRan(labels: Record<string, string | null> | null | undefined): boolean {
  return Object.values(labels ?? {}).some((label) => isLlmLabel(label));
}

export interface NewsScore {
  market: string;
  scorer: string;
  score: number;
  relevance: number;
  reason: string;
  scored_at?: string;
}

/** One item of GET /api/news (or a live `news` event): the journal's row with its scores. */
export interface NewsItem {
  id?: number;
  source: string;
  kind: string;
  notice_kind: string | null;
  title: string;
  link: string;
  published_at: string | null;
  first_seen_at: string;
  coins: string[];
  scores: NewsScore[];
}

export interface NewsList {
  items: NewsItem[];
  market: string | null;
  since: string | null;
  limit: number;
}

export interface NewsSource {
  name: string;
  kind: string;
  url: string;
  polls: number;
  fetched: number;
  not_modified: number;
  items: number;
  new_items: number;
  errors: Record<string, number>;
  consecutive_errors: number;
  last_error: string | null;
  last_polled_at: string | null;
  last_ok_at: string | null;
}

/** GET /api/news/sources: the engine's news service, when one runs. */
export interface NewsSources {
  running: boolean;
  note: string;
  sources: NewsSource[];
}

/** What a decision's reviewers were shown of an item (`nodes.input.news[market]`). */
export interface ShownNews {
  title: string;
  source?: string;
  first_seen_at?: string;
  score?: number | null;
  relevance?: number | null;
  reason?: string | null;
  notice?: string | null;
}

export interface PolicyFigures {
  window?: { first_ts?: string | null; last_ts?: string | null; bars?: number } | null;
  total_return?: number | null;
  entries?: number | null;
  buy_and_hold_return?: number | null;
  proven?: boolean | null;
  [key: string]: unknown;
}

export interface ModelVersion {
  model_id: string;
  created_at: string;
  kind: string;
  status: string;
  reason: string | null;
  training_window: { first_ts: string | null; last_ts: string | null };
  until: string | null;
  weights: Record<string, unknown> | null;
  evaluation: PolicyFigures | null;
  judged: { promote?: boolean; reason?: string; champion?: PolicyFigures; challenger?: PolicyFigures } | null;
}

export interface PromotionDecision {
  kind: string;
  model_id: string | null;
  at: string | null;
  promote: boolean | null;
  reason: string | null;
  status: string | null;
  challenger: PolicyFigures | null;
  champion: PolicyFigures | null;
  by?: string | null;
  previous?: string | null;
}

/** GET /api/models: the registry (ml/champion.py) as `lxa models` lists it. */
export interface Models {
  available: boolean;
  note?: string | null;
  models_dir: string | null;
  champion: string | null;
  champion_pointer: Record<string, unknown> | null;
  pinned: string | null;
  versions: ModelVersion[];
  history: Record<string, unknown>[];
  decisions: PromotionDecision[];
  retrain: Record<string, unknown>;
}

export interface RightWrong {
  right: number;
  wrong: number;
  pending: number;
  accuracy: number | null;
}

/** GET /api/reviewers/record: each reviewer's right/wrong verdicts per KST day. */
export interface ReviewerRecord {
  days: number;
  since: string;
  until: string;
  horizon_minutes: number;
  totals: Record<string, RightWrong>;
  series: { day: string; reviewers: Record<string, RightWrong> }[];
  from_outcomes: number;
  from_ledger: number;
}
