import { useEffect, useState } from "react";
import type { Info } from "./api";
import { Controls, type Notice } from "./components/Controls";
import { ModelBanner } from "./components/ModelBanner";
import { runHref, useGet, useHashRoute } from "./hooks";
import { LangProvider, useLang } from "./i18n";
import { ChartsPage } from "./pages/ChartsPage";
import { HomePage } from "./pages/HomePage";
import { LivePage } from "./pages/LivePage";
import { ModelsPage } from "./pages/ModelsPage";
import { NewsPage } from "./pages/NewsPage";
import { PromptsPage } from "./pages/PromptsPage";
import { ReviewersPage } from "./pages/ReviewersPage";
import { RunPage } from "./pages/RunPage";
import { RunsPage } from "./pages/RunsPage";
import { TradesPage } from "./pages/TradesPage";
import { StreamProvider, useStream } from "./stream";

export function App() {
  return (
    <LangProvider>
      <StreamProvider>
        <Shell />
      </StreamProvider>
    </LangProvider>
  );
}

function Shell() {
  const { t, toggle } = useLang();
  const { connected } = useStream();
  const route = useHashRoute();
  const info = useGet<Info>("/api/info");
  const [page, ...rest] = route;
  const tabs: [string, string][] = [
    ["", t("home")],
    ["trades", t("trades")],
    ["live", t("live")],
    ["runs", t("runs")],
    ["charts", t("charts")],
    ["news", t("news")],
    ["prompts", t("prompts")],
    ["reviewers", t("reviewers")],
    ["models", t("models")],
  ];
  const [menuOpen, setMenuOpen] = useState(false);
  useEffect(() => setMenuOpen(false), [page]);
  const [notice, setNotice] = useState<Notice | null>(null);
  useEffect(() => {
    if (notice?.kind !== "ok") return;
    const timer = window.setTimeout(() => setNotice(null), 10_000);
    return () => window.clearTimeout(timer);
  }, [notice]);
  return (
    <>
      <header className={`topbar${menuOpen ? " open" : ""}`}>
        <h1>
          <a href="#/">{t("title")}</a>
        </h1>
        <button
          type="button"
          className="menu-toggle"
          aria-expanded={menuOpen}
          aria-label={t("menu")}
          data-testid="menu"
          onClick={() => setMenuOpen(!menuOpen)}
        >
          ☰
        </button>
        <nav>
          {tabs.map(([key, label]) => (
            <a key={key} href={`#/${key}`} className={(page ?? "") === key ? "current" : ""}>
              {label}
            </a>
          ))}
        </nav>
        <span className="spacer" />
        <span className={`conn ${connected ? "on" : ""}`} data-testid="connection" title={connected ? t("connected") : t("disconnected")}>
          <span className="dot" /> {connected ? t("connected") : t("disconnected")}
        </span>
        <button type="button" className="lang" onClick={toggle} data-testid="lang">
          {t("switchLang")}
        </button>
      </header>
      <Controls markets={info.data?.markets ?? []} canRun={info.data?.can_run ?? true} onNotice={setNotice} />
      <ModelBanner />
      {notice && (
        <div className={`notice ${notice.kind}`} role="status" data-testid="notice">
          {notice.text}
          {notice.runId && (
            <>
              {" "}
              <a href={runHref(notice.runId)} data-testid="notice-run">
                {notice.runId}
              </a>
            </>
          )}
          <button type="button" className="link" onClick={() => setNotice(null)} aria-label="close">
            ×
          </button>
        </div>
      )}
      <main>
        {page === undefined && <HomePage canSell={info.data?.can_sell ?? false} />}
        {page === "live" && <LivePage canSell={info.data?.can_sell ?? false} />}
        {page === "trades" && <TradesPage markets={info.data?.markets ?? []} />}
        {page === "runs" && rest.length === 0 && <RunsPage markets={info.data?.markets ?? []} />}
        {page === "runs" && rest.length > 0 && <RunPage runId={rest[0]} />}
        {page === "charts" && <ChartsPage markets={info.data?.markets ?? []} />}
        {page === "news" && <NewsPage markets={info.data?.markets ?? []} initial={rest[0] ?? null} />}
        {page === "models" && <ModelsPage />}
        {page === "reviewers" && <ReviewersPage session={info.data?.session_id ?? null} />}
        {page === "prompts" && <PromptsPage name={rest[0] ?? null} runId={rest[1] ?? null} />}
      </main>
    </>
  );
}
