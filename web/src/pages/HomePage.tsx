import type { Period, Summary } from "../api";
import { ErrorText, Panel, krw, signClass, signedKrw, signedPct } from "../components/Bits";
import { PositionsPanel } from "../components/Positions";
import { useGet } from "../hooks";
import { hasLabel, kst, useLang } from "../i18n";
import { useStreamEvents } from "../stream";
import { throttle } from "../riskState";
import { useMemo } from "react";

function Figure({ label, value, sub, tone, testId }: { label: string; value: string; sub?: string; tone?: string; testId: string }) {
  return (
    <div className="figure" data-testid={testId}>
      <div className="figure-label">{label}</div>
      <div className={`figure-value ${tone ?? ""}`} data-testid={`${testId}-value`}>
        {value}
      </div>
      {sub && <div className="figure-sub muted">{sub}</div>}
    </div>
  );
}

/** The money first: equity against buy-and-hold and cash, P&L, fees, drawdown, win rate, and
 * what the engine may do now, in words. Every figure comes from GET /api/summary. */
export function HomePage({ canSell = false }: { canSell?: boolean }) {
  const { t, lang } = useLang();
  const summary = useGet<Summary>("/api/summary");
  const reload = useMemo(() => throttle(3000), []);
  useStreamEvents((event) => {
    if (event.type === "position_closed" || event.type === "fill" || event.type === "trading_state") summary.reload();
    else if (event.type === "run_finished" && reload(Date.now())) summary.reload();
  });
  const data = summary.data;
  const stateKey = data ? `state_${data.state.code}` : "";
  return (
    <div className="grid">
      <Panel title={t("moneyTitle")} wide testId="home-money">
        <ErrorText error={summary.error} />
        {data && data.equity === null && <p className="muted">{t("noEquityYet")}</p>}
        {data && (
          <>
            <div className="figures">
              <Figure
                testId="fig-equity"
                label={t("equityLabel")}
                value={`₩${krw(data.equity)}`}
                sub={`${t("startEquity")} ₩${krw(data.start_equity)}`}
              />
              <Figure
                testId="fig-return"
                label={t("returnLabel")}
                value={signedPct(data.return_pct)}
                tone={signClass(data.return_pct)}
                sub={`${t("vsBuyAndHold")} ${signedPct(data.vs_buy_and_hold_pct)} · ${t("vsCash")} ${signedPct(
                  data.return_pct === null ? null : data.return_pct - data.cash_return_pct,
                )}`}
              />
              <Figure
                testId="fig-buy-and-hold"
                label={t("buyAndHold")}
                value={signedPct(data.buy_and_hold_return_pct)}
                tone={signClass(data.buy_and_hold_return_pct)}
                sub={`₩${krw(data.buy_and_hold_equity)}`}
              />
              <Figure testId="fig-realised" label={t("realisedPnl")} value={signedKrw(data.realised_pnl)} tone={signClass(data.realised_pnl)} />
              <Figure
                testId="fig-unrealised"
                label={t("unrealisedPnl")}
                value={signedKrw(data.unrealised_pnl)}
                tone={signClass(data.unrealised_pnl)}
                sub={`${t("openPositions")} ${data.open_positions}`}
              />
              <Figure testId="fig-fees" label={t("feesLabel")} value={krw(data.fees)} />
              <Figure
                testId="fig-drawdown"
                label={t("drawdown")}
                value={signedPct(-data.drawdown_pct)}
                sub={`${t("maxDrawdown")} ${signedPct(-data.since_start.max_drawdown_pct)}`}
              />
              <Figure
                testId="fig-win-rate"
                label={t("winRate")}
                value={data.since_start.win_rate_pct === null ? "-" : `${data.since_start.win_rate_pct.toFixed(1)}%`}
                sub={`${data.since_start.wins} / ${data.since_start.trades_closed} ${t("tradesClosed")}`}
              />
            </div>
            <p className="muted small">
              {data.source === "engine" ? t("fromEngine") : t("fromJournal")} · {t("lastBar")} {kst(data.last_bar, lang)} (KST)
            </p>
          </>
        )}
      </Panel>
      <Panel title={t("stateNow")} testId="home-state">
        {data && (
          <div className={`state-card ${data.state.effective_state}`} data-code={data.state.code}>
            <p className="big" data-testid="home-state-words">
              {hasLabel(stateKey) ? t(stateKey) : data.state.code}
            </p>
            <p className="small">
              <strong>{data.state.entries_allowed ? t("entriesAllowed") : t("entriesNotAllowed")}</strong>
            </p>
            {/* The operator's own words are shown as written; the engine's reasons are in the
                sentence above in every language, and in English for the figures. */}
            {data.state.reason && (lang === "en" || data.state.code === "halted" || data.state.code === "reducing") && (
              <p className="small muted" data-testid="home-state-reason">
                {data.state.reason}
              </p>
            )}
          </div>
        )}
      </Panel>
      <Panel title={`${t("sinceStart")} / ${t("today")}`} testId="home-periods">
        {data && (
          <div className="table-wrap">
            <table className="periods">
              <thead>
                <tr>
                  <th />
                  <th className="num">{t("sinceStart")}</th>
                  <th className="num">
                    {t("today")} {data.today_date ?? ""}
                  </th>
                </tr>
              </thead>
              <tbody>
                <PeriodRow label={t("returnLabel")} pick={(p) => signedPct(p.return_pct)} data={data} testId="period-return" />
                <PeriodRow label={t("realisedPnl")} pick={(p) => signedKrw(p.realised_pnl)} data={data} testId="period-realised" />
                <PeriodRow label={t("feesLabel")} pick={(p) => krw(p.fees)} data={data} testId="period-fees" />
                <PeriodRow label={t("tradesClosed")} pick={(p) => String(p.trades_closed)} data={data} testId="period-trades" />
                <PeriodRow
                  label={t("winRate")}
                  pick={(p) => (p.win_rate_pct === null ? "-" : `${p.win_rate_pct.toFixed(1)}%`)}
                  data={data}
                  testId="period-win-rate"
                />
                <PeriodRow label={t("maxDrawdown")} pick={(p) => signedPct(-p.max_drawdown_pct)} data={data} testId="period-drawdown" />
              </tbody>
            </table>
          </div>
        )}
        <p className="small">
          <a href="#/trades">{t("trades")} →</a>
        </p>
      </Panel>
      <PositionsPanel canSell={canSell} />
    </div>
  );
}

function PeriodRow({ label, pick, data, testId }: { label: string; pick: (p: Period) => string; data: Summary; testId: string }) {
  return (
    <tr data-testid={testId}>
      <td>{label}</td>
      <td className="num">{pick(data.since_start)}</td>
      <td className="num">{pick(data.today)}</td>
    </tr>
  );
}
