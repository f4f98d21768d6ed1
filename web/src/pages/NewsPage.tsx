import { useEffect, useState } from "react";
import { query, type NewsItem, type NewsList, type NewsSources } from "../api";
import { ErrorText, Panel } from "../components/Bits";
import { NewsTable } from "../components/NewsTable";
import { useGet } from "../hooks";
import { kst, useLang } from "../i18n";
import { itemFromEvent, mergeNews } from "../news";
import { useStreamEvents } from "../stream";

const LIMIT = 100;

/** The news per coin: the journal's items with their scores, live ones as they arrive, and
 * the engine's sources when its news service runs. */
export function NewsPage({ markets, initial }: { markets: string[]; initial: string | null }) {
  const { t, lang } = useLang();
  const [market, setMarket] = useState<string | null>(initial);
  useEffect(() => setMarket(initial), [initial]);
  const news = useGet<NewsList>(`/api/news${query({ market, limit: LIMIT })}`);
  const sources = useGet<NewsSources>("/api/news/sources");
  const [live, setLive] = useState<NewsItem[]>([]);
  useEffect(() => setLive([]), [market]);
  useStreamEvents((event) => {
    if (event.type !== "news") return;
    const item = itemFromEvent(event);
    if (item) setLive((items) => [item, ...items].slice(0, LIMIT));
  });
  const items = mergeNews(live, news.data?.items ?? [], market, LIMIT);
  return (
    <>
      <Panel title={t("newsFeed")} wide testId="news">
        <div className="filters">
          <label>
            {t("market")}
            <select
              name="market"
              data-testid="news-market"
              value={market ?? ""}
              onChange={(event) => setMarket(event.target.value || null)}
            >
              <option value="">{t("allMarkets")}</option>
              {markets.map((name) => (
                <option key={name} value={name}>
                  {name}
                </option>
              ))}
            </select>
          </label>
        </div>
        <p className="small muted">{t("newsLiveNote")}</p>
        <ErrorText error={news.error} />
        {news.data && items.length === 0 && <p className="muted">{t("noNews")}</p>}
        {items.length > 0 && <NewsTable items={items} />}
      </Panel>
      <Panel title={t("newsSources")} wide testId="news-sources">
        <ErrorText error={sources.error} />
        {sources.data && !sources.data.running && (
          <p className="muted small" data-testid="no-news-service">
            {t("noNewsService")}
          </p>
        )}
        {sources.data && sources.data.sources.length > 0 && (
          <div className="table-wrap">
            <table>
              <thead>
                <tr>
                  <th>{t("newsSource")}</th>
                  <th className="num">{t("polls")}</th>
                  <th className="num">{t("newItems")}</th>
                  <th className="num">{t("errorsCol")}</th>
                  <th>{t("lastOk")}</th>
                  <th>{t("lastError")}</th>
                </tr>
              </thead>
              <tbody>
                {sources.data.sources.map((source) => (
                  <tr key={source.name} data-source={source.name}>
                    <td>
                      {source.name} <span className="small muted">{source.kind}</span>
                    </td>
                    <td className="num">{source.polls}</td>
                    <td className="num">{source.new_items}</td>
                    <td className={`num ${source.consecutive_errors > 0 ? "bad" : ""}`}>
                      {Object.values(source.errors).reduce((sum, count) => sum + count, 0)}
                    </td>
                    <td className="nowrap">{kst(source.last_ok_at, lang)}</td>
                    <td className="small">{source.last_error ?? "-"}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </Panel>
    </>
  );
}
