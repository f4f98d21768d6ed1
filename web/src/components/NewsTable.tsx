import type { NewsItem, ShownNews } from "../api";
import { kst, useLang } from "../i18n";
import { coinScores, noticeLabel, scoreClass, signedScore } from "../news";
import { newsReasonText } from "../serverText";

/** A notice's badge (warning, delisting, suspension, other), nothing for plain news. */
export function NoticeBadge({ kind }: { kind: string | null | undefined }) {
  const { t } = useLang();
  const label = noticeLabel(kind);
  if (!label) return null;
  return (
    <span className={`badge notice-${kind === "warning" || kind === "delisting" || kind === "suspension" ? kind : "other"}`} data-testid="notice-badge" data-notice={kind ?? ""}>
      {t(label)}
    </span>
  );
}

/** A score coloured by its sign, its reason in the title. */
export function Score({ market, score, reason }: { market?: string; score: number | null | undefined; reason?: string | null }) {
  const { t, lang } = useLang();
  return (
    <span className={`score ${scoreClass(score)}`} title={newsReasonText(t, lang, reason)} data-score={score ?? ""}>
      {market ? `${market} ` : ""}
      {signedScore(score)}
    </span>
  );
}

/** News items newest first: when first seen and published (KST), the source, the headline
 * with its notice badge and link, and each coin's score. */
export function NewsTable({ items, testId = "news-table" }: { items: NewsItem[]; testId?: string }) {
  const { t, lang } = useLang();
  return (
    <div className="table-wrap">
      <table data-testid={testId}>
        <thead>
          <tr>
            <th>{t("firstSeen")}</th>
            <th>{t("newsSource")}</th>
            <th>{t("headline")}</th>
            <th>{t("scores")}</th>
            <th>{t("publishedAt")}</th>
          </tr>
        </thead>
        <tbody>
          {items.map((item) => (
            <tr key={item.link} data-testid="news-row" data-link={item.link}>
              <td className="nowrap">{kst(item.first_seen_at, lang)}</td>
              <td className="small">{item.source}</td>
              <td>
                <NoticeBadge kind={item.notice_kind} />{" "}
                <a href={item.link} target="_blank" rel="noreferrer noopener">
                  {item.title}
                </a>
              </td>
              <td className="scores">
                {coinScores(item).map((score) => (
                  <Score key={score.market} market={score.market} score={score.score} reason={score.reason} />
                ))}
              </td>
              <td className="nowrap small muted">{kst(item.published_at, lang)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

/** What a decision's reviewers were shown of the news, market by market. */
export function ShownNewsTable({ shown }: { shown: [string, ShownNews[]][] }) {
  const { t, lang } = useLang();
  return (
    <div className="table-wrap">
      <table data-testid="shown-news">
        <thead>
          <tr>
            <th>{t("market")}</th>
            <th>{t("firstSeen")}</th>
            <th>{t("newsSource")}</th>
            <th>{t("headline")}</th>
            <th className="num">{t("scores")}</th>
            <th className="num">{t("relevance")}</th>
          </tr>
        </thead>
        <tbody>
          {shown.flatMap(([market, items]) =>
            items.map((item, index) => (
              <tr key={`${market}-${index}`} data-market={market}>
                <td>{market}</td>
                <td className="nowrap">{kst(item.first_seen_at, lang)}</td>
                <td className="small">{item.source ?? "-"}</td>
                <td>
                  <NoticeBadge kind={item.notice} /> {item.title}
                  {item.reason && <div className="small muted">{newsReasonText(t, lang, item.reason)}</div>}
                </td>
                <td className="num">
                  <Score score={item.score} reason={item.reason} />
                </td>
                <td className="num">{typeof item.relevance === "number" ? item.relevance.toFixed(2) : "-"}</td>
              </tr>
            )),
          )}
        </tbody>
      </table>
    </div>
  );
}
