import { useState } from "react";
import type { Position, SellOut } from "../api";
import { runHref, useGet } from "../hooks";
import { fill, kst, useLang } from "../i18n";
import { useStreamEvents } from "../stream";
import { tickPrice } from "../ticks";
import { ErrorText, Panel, num } from "./Bits";
import { SellNow } from "./SellNow";

/** The open positions, marked at the latest closes, each with "sell now" where the engine can
 * sell (Home and Live). */
export function PositionsPanel({ canSell }: { canSell: boolean }) {
  const { t, lang } = useLang();
  const [sold, setSold] = useState<SellOut | null>(null);
  const positions = useGet<{ positions: Position[]; source: string }>("/api/positions");
  useStreamEvents((event) => {
    if (event.type === "fill" || event.type === "position_closed" || event.type === "run_finished") {
      positions.reload();
    }
  });
  return (
    <Panel title={t("positions")} wide testId="positions">
      <ErrorText error={positions.error} />
      {sold && (
        <p className="small ok-box" data-testid="sold-notice">
          {fill(t("soldNotice"), {
            market: sold.market,
            volume: num(sold.executed_volume, 8),
            price: tickPrice(sold.avg_price),
            until: kst(sold.cooldown_until, lang),
          })}{" "}
          <a href={`#/trades`}>{t("trades")} →</a>
        </p>
      )}
      {positions.data && positions.data.positions.length === 0 && <p className="muted">{t("noPositions")}</p>}
      {positions.data && positions.data.positions.length > 0 && (
        <div className="table-wrap">
          <table>
            <thead>
              <tr>
                <th>{t("market")}</th>
                <th className="num">{t("volume")}</th>
                <th className="num">{t("avgBuy")}</th>
                <th className="num">{t("mark")}</th>
                <th className="num">{t("pl")}</th>
                <th className="num">{t("stopLoss")}</th>
                <th className="num">{t("takeProfit")}</th>
                <th>{t("run")}</th>
                {canSell && <th />}
              </tr>
            </thead>
            <tbody>
              {positions.data.positions.map((position) => (
                <tr key={position.market}>
                  <td>{position.market}</td>
                  <td className="num">{num(position.volume, 8)}</td>
                  <td className="num">{tickPrice(position.avg_buy_price)}</td>
                  <td className="num">{tickPrice(position.mark_price)}</td>
                  {/* unrealized_pct is already in percent */}
                  <td className={`num ${(position.unrealized_pct ?? 0) >= 0 ? "ok" : "bad"}`}>
                    {position.unrealized_pct === null || position.unrealized_pct === undefined
                      ? "-"
                      : `${position.unrealized_pct.toFixed(2)}%`}
                  </td>
                  <td className="num">{tickPrice(position.stop_loss_price)}</td>
                  <td className="num">{tickPrice(position.take_profit_price)}</td>
                  <td className="small">{position.run_id ? <a href={runHref(position.run_id)}>{t("openRun")}</a> : "-"}</td>
                  {canSell && (
                    <td data-testid={`sell-${position.market}`}>
                      <SellNow
                        position={position}
                        onSold={(result) => {
                          setSold(result);
                          positions.reload();
                        }}
                      />
                    </td>
                  )}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </Panel>
  );
}
