import { useState } from "react";
import { query, type Trade, type TradeList } from "../api";
import { ErrorText, Panel, krw, num, signClass, signedKrw, signedPct } from "../components/Bits";
import { runHref, useGet } from "../hooks";
import { detectorLabel, hasLabel, kst, reasonLabel, useLang, type LabelKey } from "../i18n";
import { tickPrice } from "../ticks";
import { useStreamEvents } from "../stream";
import { kstDayStart } from "./RunsPage";

const EXIT_KINDS = ["ml_exit", "stop_loss", "take_profit", "watchdog", "flatten", "adopted", "other"] as const;

interface Filters {
  market: string;
  exit_kind: string;
  status: string;
  since: string;
  until: string;
}

const empty: Filters = { market: "", exit_kind: "", status: "", since: "", until: "" };

/** Why a trip closed, in words: the exit kind, with the policy's rule or the watchdog's detector. */
export function ExitReason({ trade }: { trade: Trade }) {
  const { t } = useLang();
  if (!trade.exit_kind) return <span className="muted">-</span>;
  const kind = `exit_${trade.exit_kind}`;
  const label = hasLabel(kind) ? t(kind) : trade.exit_kind;
  let detail = "";
  if (trade.exit_kind === "watchdog") detail = detectorLabel(t, trade.exit_detail);
  else if (trade.exit_kind === "ml_exit" && trade.exit_detail) detail = reasonLabel(t, trade.exit_detail);
  return (
    <span className={`exit ${trade.exit_kind}`} data-exit-kind={trade.exit_kind}>
      {label}
      {detail && <span className="muted"> · {detail}</span>}
    </span>
  );
}

/** Every round trip, newest first: entry and exit, size, fees, realised P&L and why it closed. */
export function TradesPage({ markets }: { markets: string[] }) {
  const { t, lang } = useLang();
  const [draft, setDraft] = useState<Filters>(empty);
  const [filters, setFilters] = useState<Filters>(empty);
  const params = query({
    market: filters.market,
    exit_kind: filters.exit_kind,
    status: filters.status,
    since: filters.since ? kstDayStart(filters.since) : null,
    until: filters.until ? kstDayStart(filters.until, 1) : null,
  });
  const trades = useGet<TradeList>(`/api/trades${params}`);
  useStreamEvents((event) => {
    if (event.type === "position_closed" || event.type === "fill") trades.reload();
  });
  const status = (value: string) => (hasLabel(value) ? t(value as LabelKey) : value);
  return (
    <Panel
      title={t("trades")}
      wide
      testId="trades"
      extra={
        <a className="button" href={`/api/trades.csv${params}`} download data-testid="trades-csv">
          {t("exportCsv")}
        </a>
      }
    >
      <form
        className="filters"
        onSubmit={(event) => {
          event.preventDefault();
          setFilters(draft);
        }}
      >
        <label>
          {t("market")}
          <select name="market" value={draft.market} onChange={(event) => setDraft({ ...draft, market: event.target.value })}>
            <option value="">{t("any")}</option>
            {markets.map((name) => (
              <option key={name} value={name}>
                {name}
              </option>
            ))}
          </select>
        </label>
        <label>
          {t("exitKind")}
          <select name="exit_kind" value={draft.exit_kind} onChange={(event) => setDraft({ ...draft, exit_kind: event.target.value })}>
            <option value="">{t("any")}</option>
            {EXIT_KINDS.map((kind) => (
              <option key={kind} value={kind}>
                {t(`exit_${kind}` as LabelKey)}
              </option>
            ))}
          </select>
        </label>
        <label>
          {t("statusLabel")}
          <select name="status" value={draft.status} onChange={(event) => setDraft({ ...draft, status: event.target.value })}>
            <option value="">{t("any")}</option>
            <option value="closed">{t("closed")}</option>
            <option value="open">{t("open")}</option>
            <option value="unmatched">{t("unmatched")}</option>
          </select>
        </label>
        <label>
          {t("from")} (KST)
          <input type="date" name="since" value={draft.since} onChange={(event) => setDraft({ ...draft, since: event.target.value })} />
        </label>
        <label>
          {t("to")} (KST)
          <input type="date" name="until" value={draft.until} onChange={(event) => setDraft({ ...draft, until: event.target.value })} />
        </label>
        <button type="submit" className="primary">
          {t("apply")}
        </button>
        <button
          type="button"
          onClick={() => {
            setDraft(empty);
            setFilters(empty);
          }}
        >
          {t("reset")}
        </button>
      </form>
      <ErrorText error={trades.error} />
      {trades.data && (
        <p className="small" data-testid="trades-totals">
          {trades.data.total} {t("tradesTotal")} · {t("realisedPnl")}{" "}
          <span className={signClass(trades.data.realised_pnl)}>{signedKrw(trades.data.realised_pnl)}</span> · {t("feesLabel")}{" "}
          {krw(trades.data.fees)}
        </p>
      )}
      <div className="table-wrap">
        <table className="trades">
          <thead>
            <tr>
              <th>{t("market")}</th>
              <th>{t("entry")} (KST)</th>
              <th className="num">{t("entryPrice")}</th>
              <th>{t("exit")} (KST)</th>
              <th className="num">{t("exitPrice")}</th>
              <th className="num">{t("size")}</th>
              <th className="num">{t("feesLabel")}</th>
              <th className="num">{t("pnl")}</th>
              <th className="num">%</th>
              <th>{t("exitReason")}</th>
              <th>{t("statusLabel")}</th>
            </tr>
          </thead>
          <tbody>
            {(trades.data?.trades ?? []).map((trade) => (
              <tr key={`${trade.market}-${trade.entry_order ?? ""}-${trade.exit_order ?? ""}`} data-exit-order={trade.exit_order ?? ""} data-row-exit={trade.exit_kind ?? ""} data-testid="trade-row">
                <td>{trade.market}</td>
                <td>
                  {trade.entry_kind === "adopted" ? (
                    <span title={t("adoptedEntry")}>{kst(trade.entry_ts, lang)} ({t("exit_adopted")})</span>
                  ) : trade.entry_run_id ? (
                    <a href={runHref(trade.entry_run_id)}>{kst(trade.entry_ts, lang)}</a>
                  ) : (
                    kst(trade.entry_ts, lang)
                  )}
                </td>
                <td className="num">{tickPrice(trade.entry_price)}</td>
                <td>
                  {trade.exit_run_id ? (
                    <a href={runHref(trade.exit_run_id)}>{kst(trade.exit_ts, lang)}</a>
                  ) : (
                    <span title={trade.exit_order ?? ""}>{kst(trade.exit_ts, lang)}</span>
                  )}
                </td>
                <td className="num">{tickPrice(trade.exit_price)}</td>
                <td className="num">{num(trade.volume, 8)}</td>
                <td className="num">{krw(trade.fees)}</td>
                <td className={`num ${signClass(trade.realised_pnl)}`}>{signedKrw(trade.realised_pnl)}</td>
                <td className={`num ${signClass(trade.return_pct)}`}>{signedPct(trade.return_pct)}</td>
                <td data-testid="trade-exit">
                  <ExitReason trade={trade} />
                </td>
                <td>{status(trade.status)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {trades.data && trades.data.trades.length === 0 && <p className="muted">{t("noTrades")}</p>}
    </Panel>
  );
}
