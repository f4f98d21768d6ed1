import { useMemo, useState } from "react";
import { query, type CandleOut, type EquityOut, type Fill, type WatchdogOut } from "../api";
import { ErrorText, Panel } from "../components/Bits";
import { parseCandles } from "../candles";
import { CandleChart, type Marker } from "../components/CandleChart";
import { LineChart, type Series } from "../components/LineChart";
import { CoinNews } from "../components/CoinNews";
import { NoticeBadge, Score } from "../components/NewsTable";
import { runHref, useGet } from "../hooks";
import { detectorLabel, fill, kst, useLang, type LabelKey } from "../i18n";
import { tickPrice } from "../ticks";
import { useStreamEvents } from "../stream";

const ms = (iso: string) => new Date(iso).getTime();
// The range buttons: the last hour, six hours, day, week, or the whole session.
const RANGES: [string, number | null][] = [
  ["1h", 60],
  ["6h", 360],
  ["1d", 1440],
  ["1w", 10080],
  ["all", null],
];

/** A news trigger's item (detector "news": the headline, its notice, source and score). */
function TriggerHeadline({ details }: { details: unknown }) {
  const item = (details ?? {}) as { title?: unknown; link?: unknown; source?: unknown; item_score?: unknown; reason?: unknown; notice?: unknown };
  if (typeof item.title !== "string") return null;
  return (
    <span>
      <NoticeBadge kind={typeof item.notice === "string" ? item.notice : null} />{" "}
      {typeof item.link === "string" ? (
        <a href={item.link} target="_blank" rel="noreferrer noopener">
          {item.title}
        </a>
      ) : (
        item.title
      )}
      <span className="small muted"> · {String(item.source ?? "")} </span>
      {typeof item.item_score === "number" && <Score score={item.item_score} reason={typeof item.reason === "string" ? item.reason : null} />}
    </span>
  );
}

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
  const [zoom, setZoom] = useState<[number, number] | null>(null);
  const maxPoints = Math.round(Math.min(600, Math.max(80, window.innerWidth / 2.4)));
  const candlePath = shownMarket
    ? `/api/candles${query({
        market: shownMarket,
        max_points: maxPoints,
        since: zoom ? new Date(zoom[0]).toISOString() : null,
        // until is exclusive: the last bar of the range is included
        until: zoom ? new Date(zoom[1] + 60_000).toISOString() : null,
      })}`
    : null;
  const candles = useGet<CandleOut>(candlePath);
  useStreamEvents((event) => {
    if (event.type === "run_finished") {
      equity.reload();
      candles.reload();
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

  const markers = useMemo<Marker[]>(() => {
    const shown = (fills.data?.fills ?? []).filter((fill) => fill.market === shownMarket);
    const side = (name: string) =>
      shown.filter((fill) => fill.side === name).map((fill) => ({ x: ms(fill.ts), y: Number(fill.price) }));
    const triggers = (watchdog.data?.recent_triggers ?? []).filter((trigger) => {
      const market = trigger.payload.market;
      return (market === shownMarket || market === null || market === undefined) && Number(trigger.payload.price) > 0;
    });
    return [
      {
        type: "scatter",
        label: t("entries"),
        data: side("bid"),
        backgroundColor: "#4cc38a",
        borderColor: "#0d1117",
        pointStyle: "triangle",
        pointRadius: 7,
      },
      {
        type: "scatter",
        label: t("exits"),
        data: side("ask"),
        backgroundColor: "#f36b6b",
        borderColor: "#0d1117",
        pointStyle: "triangle",
        rotation: 180,
        pointRadius: 7,
      },
      {
        type: "scatter",
        label: t("watchdog"),
        // On the bar the trigger fell in (`ts` is the wall clock: months later in a replay).
        data: triggers.map((trigger) => ({ x: ms(trigger.bar_ts ?? trigger.ts), y: Number(trigger.payload.price) })),
        borderColor: "#f0a020",
        backgroundColor: "#f0a020",
        pointStyle: "crossRot",
        pointRadius: 9,
        borderWidth: 3,
      },
    ];
  }, [fills.data, watchdog.data, shownMarket, t]);

  const sessionRange = useMemo<[number, number] | null>(() => {
    const first = candles.data?.first_bar;
    const last = candles.data?.last_bar;
    if (first && last) return [ms(first), ms(last)];
    const points = equity.data?.points ?? [];
    return points.length >= 2 ? [ms(points[0].ts), ms(points[points.length - 1].ts)] : null;
  }, [candles.data, equity.data]);
  const shownRange = zoom ?? sessionRange;
  const parsed = useMemo(
    () => (candles.data?.market === shownMarket ? parseCandles(candles.data.candles) : []),
    [candles.data, shownMarket],
  );
  const pick = (minutes: number | null) => {
    if (minutes === null || !sessionRange) return setZoom(null);
    const low = Math.max(sessionRange[0], sessionRange[1] - minutes * 60_000);
    setZoom(low <= sessionRange[0] ? null : [low, sessionRange[1]]);
  };

  return (
    <div className="grid">
      <Panel title={t("equityChart")} wide testId="equity-chart">
        <ErrorText error={equity.error} />
        {equity.data?.note && <p className="muted small">{equity.data.note}</p>}
        <LineChart series={equitySeries} xRange={shownRange} testId="equity-canvas" />
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
        <div className="zoom-bar" data-testid="zoom-bar">
          {RANGES.map(([key, minutes]) => (
            <button
              key={key}
              type="button"
              className={`small-button${(minutes === null && zoom === null) ? " active" : ""}`}
              onClick={() => pick(minutes)}
              data-range={key}
            >
              {t(`range_${key}` as LabelKey)}
            </button>
          ))}
          <span className="muted small" data-testid="candle-note">
            {candles.data
              ? `${fill(t("candleBucket"), { minutes: candles.data.bucket_minutes, bars: candles.data.bars })}${
                  candles.data.source === "closes" ? ` · ${t("candlesFromCloses")}` : ""
                }`
              : ""}
          </span>
        </div>
        <ErrorText error={fills.error} />
        <ErrorText error={candles.error} />
        {candles.data?.market === shownMarket && candles.data.candles.length === 0 && (
          <p className="muted small">
            {shownMarket} · {t("noCloses")}
          </p>
        )}
        <CandleChart
          candles={parsed}
          bucketMinutes={candles.data?.bucket_minutes ?? 1}
          markers={markers}
          xRange={shownRange}
          limits={sessionRange}
          onZoom={(range) =>
            setZoom(sessionRange && range[0] <= sessionRange[0] && range[1] >= sessionRange[1] ? null : range)
          }
          height={340}
          testId="price-canvas"
          extra={{ zoomed: zoom ? "yes" : "no" }}
        />
      </Panel>
      {shownMarket && <CoinNews market={shownMarket} />}
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
                    <th>{t("headline")}</th>
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
                      <td data-testid="trigger-headline">
                        <TriggerHeadline details={trigger.payload.details} />
                      </td>
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
