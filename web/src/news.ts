// News items as the viewer shows them: the journal's (GET /api/news), live ones from the
// `news` events, and what a decision's reviewers were shown (`nodes.input.news`).
import type { NewsItem, NewsScore, ShownNews } from "./api";
import type { LabelKey } from "./i18n";

/** The colour class of a score by its sign ("" for zero or none). */
export function scoreClass(score: number | null | undefined): string {
  if (score === null || score === undefined || !Number.isFinite(score) || score === 0) return "";
  return score > 0 ? "ok" : "bad";
}

/** A score with its sign and two decimals: "+0.45", "-0.70", "0.00". */
export function signedScore(score: number | null | undefined): string {
  if (score === null || score === undefined || !Number.isFinite(score)) return "-";
  const shown = score.toFixed(2);
  return `${score > 0 && Number(shown) !== 0 ? "+" : ""}${shown}`;
}

/** One score per coin: the first scorer's (the LLM's when it answered, else the lexicon's). */
export function coinScores(item: Pick<NewsItem, "scores">): NewsScore[] {
  const taken = new Map<string, NewsScore>();
  for (const score of item.scores ?? []) if (!taken.has(score.market)) taken.set(score.market, score);
  return [...taken.values()];
}

/** The label of a notice kind (warning, delisting, suspension; else "notice"). */
export function noticeLabel(kind: string | null | undefined): LabelKey | null {
  if (!kind) return null;
  if (kind === "warning" || kind === "delisting" || kind === "suspension") return `notice_${kind}` as LabelKey;
  return "notice_other";
}

/** Whether an item concerns `market` (null: every market). */
export function concerns(item: NewsItem, market: string | null): boolean {
  return market === null || item.scores.some((score) => score.market === market);
}

/** A live `news` event as an item (its fields are the journal's, less the ids). */
export function itemFromEvent(event: Record<string, unknown>): NewsItem | null {
  if (typeof event.title !== "string" || typeof event.link !== "string" || typeof event.first_seen_at !== "string") return null;
  return {
    source: String(event.source ?? ""),
    kind: String(event.kind ?? "news"),
    notice_kind: typeof event.notice_kind === "string" ? event.notice_kind : null,
    title: event.title,
    link: event.link,
    published_at: typeof event.published_at === "string" ? event.published_at : null,
    first_seen_at: event.first_seen_at,
    coins: Array.isArray(event.coins) ? event.coins.map(String) : [],
    scores: Array.isArray(event.scores) ? (event.scores as NewsScore[]) : [],
  };
}

/** The live items put before the fetched ones, newest first, each link once, at most `limit`. */
export function mergeNews(live: NewsItem[], fetched: NewsItem[], market: string | null, limit: number): NewsItem[] {
  const seen = new Set<string>();
  const out: NewsItem[] = [];
  for (const item of [...live, ...fetched].sort((a, b) => Date.parse(b.first_seen_at) - Date.parse(a.first_seen_at))) {
    if (seen.has(item.link) || !concerns(item, market)) continue;
    seen.add(item.link);
    out.push(item);
  }
  return out.slice(0, limit);
}

/** What a decision's reviewers were shown, market by market (`nodes.input.news`). */
export function shownNews(input: unknown): [string, ShownNews[]][] {
  const news = (input as { news?: unknown } | null | undefined)?.news;
  if (!news || typeof news !== "object" || Array.isArray(news)) return [];
  return Object.entries(news as Record<string, unknown>)
    .filter((entry): entry is [string, ShownNews[]] => Array.isArray(entry[1]))
    .map(([market, items]) => [market, items.filter((item) => item && typeof item.title === "string")] as [string, ShownNews[]])
    .filter(([, items]) => items.length > 0);
}
