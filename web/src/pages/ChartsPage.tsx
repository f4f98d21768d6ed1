import { useMemo, useState } from "react";
import type { EquityOut, Fill, PriceOut, WatchdogOut } from "../api";
import { ErrorText, Panel } from "../components/Bits";
import { LineChart, type Series } from "../components/LineChart";
import { runHref, useGet } from "../hooks";
import { detectorLabel, kst, useLang } from "../i18n";
import { tickPrice } from "../ticks";
import { useStreamEvents } from "../stream";

const ms = (iso: string) => new Date(iso).getTime();

/** Price with entries and exits, equity against buy-and-hold, and the watchdog's triggers. */
export function ChartsPage({ markets }: { markets: string[] }) {
  const { t, lang } = useLang();
  const [market, setMarket] = useState("");
  const equity = useGet<EquityOut>("/api/equity");
  const fills = useGet<{ fills: Fill[] }>("/api/fills");
  const watchdog = useGet<WatchdogOut>("/api/watchdog");
  // One market at a time (their prices differ by orders of magnitude): the chosen one, else
  // the market of the latest fill.
  const latestMarket = fills.data?.fills.at(-1)?.market ?? markets[0] ?? "";
  const shownMarket = market || latestMarket;
  const prices = useGet<PriceOut>(shownMarket ? `/api/prices?market=${encodeURIComponent(shownMarket)}` : null);
  useStreamEvents((event) => {
    if (event.type === "run_finished") {
      equity.reload();
      prices.reload();
    }
    if (event.type === "fill") fills.reload();
    if (event.type === "watchdog_trigger") watchdog.reload();
  });

  const equitySeries = useMemo<Series[]>(() => {
    const points = equity.data?.points ?? [];
    const triggers = watchdog.data?.recent_triggers ?? [];
    const equityAt = (time: number) => {
      let value = points.length ? Number(points[0].equity) : 0;
      for (const point of points) if (ms(point.ts) <= time) value = Number(point.equity);
      return value;
    };
    return [
      {
        type: "line",
        label: t("equity"),
        data: points.map((point) => ({ x: ms(point.ts), y: Number(point.equity) })),
        borderColor: "#4cc38a",
        backgroundColor: "#4cc38a",
        pointRadius: 0,
        borderWidth: 2,
      },
      {
        type: "line",
        label: t("buyAndHold"),
        data: points
          .filter((point) => point.buy_and_hold !== null)
          .map((point) => ({ x: ms(point.ts), y: Number(point.buy_and_hold) })),
        borderColor: "#7aa2f7",
        backgroundColor: "#7aa2f7",
        borderDash: [6, 4],
        pointRadius: 0,
        borderWidth: 2,
      },
      {
        type: "scatter",
        label: t("watchdog"),
        // On the bar the trigger fell in (`ts` is the wall clock: months later in a replay).
        data: triggers.map((trigger) => {
          const at = ms(trigger.bar_ts ?? trigger.ts);
          return { x: at, y: equityAt(at) };
        }),
        borderColor: "#f0a020",
        backgroundColor: "#f0a020",
        pointStyle: "crossRot",
        pointRadius: 8,
        borderWidth: 3,
      },
    ];
  }, [equity.data, watchdog.data, t]);

  const priceSeries = useMemo<Series[]>(() => {
    const shown = (fills.data?.fills ?? []).filter((fill) => fill.market === shownMarket);
    const line = (side: string) =>
      shown.filter((fill) => fill.side === side).map((fill) => ({ x: ms(fill.ts), y: Number(fill.price) }));
    // The closes of another market (a stale answer while the new one loads) are not drawn.
    const closes = prices.data?.market === shownMarket ? prices.data.points : [];
    return [
      {
        type: "line",
        label: t("closePrice"),
        data: closes.map((point) => ({ x: ms(point.ts), y: Number(point.close) })),
        borderColor: "#c9d3dc",
        backgroundColor: "#c9d3dc",
        pointRadius: 0,
        borderWidth: 1.5,
        order: 2,
      },
      {
        type: "scatter",
        label: t("entries"),
        data: line("bid"),
        backgroundColor: "#4cc38a",
        borderColor: "#4cc38a",
        pointStyle: "triangle",
        pointRadius: 8,
      },
      {
        type: "scatter",
        label: t("exits"),
        data: line("ask"),
        backgroundColor: "#f36b6b",
        borderColor: "#f36b6b",
        pointStyle: "triangle",
        rotation: 180,
        pointRadius: 8,
      },
    ];
  }, [fills.data, prices.data, shownMarket, t]);

  const sessionRange = useMemo<[number, number] | null>(() => {
    const points = equity.data?.points ?? [];
    return points.length >= 2 ? [ms(points[0].ts), ms(points[points.length - 1].ts)] : null;
  }, [equity.data]);

  return (
    <div className="grid">
      <Panel title={t("equityChart")} wide testId="equity-chart">
        <ErrorText error={equity.error} />
        {equity.data?.note && <p className="muted small">{equity.data.note}</p>}
        <LineChart series={equitySeries} xRange={sessionRange} testId="equity-canvas" />
      </Panel>
      <Panel
        title={t("priceChart")}
        wide
        testId="price-chart"
        extra={
          <select value={shownMarket} onChange={(event) => setMarket(event.target.value)} aria-label={t("market")}>
            {markets.map((name) => (
              <option key={name} value={name}>
                {name}
              </option>
            ))}
          </select>
        }
      >
        <ErrorText error={fills.error} />
        <ErrorText error={prices.error} />
        {prices.data?.market === shownMarket && prices.data.points.length === 0 && (
          <p className="muted small">
            {shownMarket} · {t("noCloses")}
          </p>
        )}
        <LineChart series={priceSeries} height={220} xRange={sessionRange} testId="price-canvas" />
      </Panel>
      <Panel title={t("watchdog")} wide testId="watchdog">
        <ErrorText error={watchdog.error} />
        {watchdog.data && (
          <>
            <p className="small">
              {watchdog.data.enabled ? t("watchdogOn") : t("watchdogOff")} · {t("source")}:{" "}
              {watchdog.data.source === "engine" ? t("fromEngine") : t("fromJournal")}
              {watchdog.data.exchange_healthy !== null && ` · ${watchdog.data.exchange_healthy ? t("exchangeOk") : t("exchangeFailing")}`}
              {watchdog.data.consecutive_failures !== null && ` (${watchdog.data.consecutive_failures})`}
            </p>
            <ul className="small">
              {watchdog.data.markets
                .filter((row) => row.cooldown_until)
                .map((row) => (
                  <li key={row.market}>
                    {row.market}: {t("cooldown")} {kst(row.cooldown_until, lang)} ({detectorLabel(t, row.cooldown_detector)})
                  </li>
                ))}
            </ul>
            <h3>{t("triggers")}</h3>
            {watchdog.data.recent_triggers.length === 0 ? (
              <p className="muted">{t("noTriggers")}</p>
            ) : (
              <table data-testid="triggers">
                <thead>
                  <tr>
                    <th>{t("time")}</th>
                    <th>{t("market")}</th>
                    <th>{t("watchdog")}</th>
                    <th className="num">{t("closePrice")}</th>
                    <th />
                  </tr>
                </thead>
                <tbody>
                  {watchdog.data.recent_triggers.map((trigger) => (
                    <tr key={trigger.id} data-bar={trigger.bar_ts ?? ""}>
                      <td>{kst(trigger.bar_ts ?? trigger.ts, lang)}</td>
                      <td>{String(trigger.payload.market ?? "")}</td>
                      <td>{detectorLabel(t, String(trigger.payload.detector ?? trigger.type))}</td>
                      <td className="num">{tickPrice(trigger.payload.price)}</td>
                      <td>{trigger.run_id ? <a href={runHref(trigger.run_id)}>{t("openRunLink")}</a> : null}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            )}
          </>
        )}
      </Panel>
    </div>
  );
}
