import { useEffect, useState } from "react";
import { query, type NewsItem, type NewsList } from "../api";
import { useGet } from "../hooks";
import { useLang } from "../i18n";
import { itemFromEvent, mergeNews } from "../news";
import { useStreamEvents } from "../stream";
import { ErrorText, Panel } from "./Bits";
import { NewsTable } from "./NewsTable";

const LIMIT = 5;

/** The latest news about one coin (the journal's, then live ones as they arrive). */
export function CoinNews({ market }: { market: string }) {
  const { t } = useLang();
  const news = useGet<NewsList>(market ? `/api/news${query({ market, limit: LIMIT })}` : null);
  const [live, setLive] = useState<NewsItem[]>([]);
  useEffect(() => setLive([]), [market]);
  useStreamEvents((event) => {
    if (event.type !== "news") return;
    const item = itemFromEvent(event);
    if (item) setLive((items) => [item, ...items].slice(0, LIMIT));
  });
  const items = mergeNews(live, news.data?.items ?? [], market, LIMIT);
  return (
    <Panel
      title={`${t("news")} · ${market}`}
      wide
      testId="coin-news"
      extra={
        <a className="small" href={`#/news/${encodeURIComponent(market)}`}>
          {t("allNews")}
        </a>
      }
    >
      <ErrorText error={news.error} />
      {news.data && items.length === 0 && <p className="muted small">{t("noNews")}</p>}
      {items.length > 0 && <NewsTable items={items} testId="coin-news-table" />}
    </Panel>
  );
}
