import { useState } from "react";
import { api, type Position, type SellOut } from "../api";
import { fill, useLang } from "../i18n";
import { serverText } from "../serverText";
import { tickPrice } from "../ticks";
import { num } from "./Bits";

/** "Sell now" for one open position: a confirmation step, then POST /api/positions/{market}/sell
 * (the engine's flatten path for that market; the trade closes as the operator's exit). */
export function SellNow({ position, onSold }: { position: Position; onSold: (sold: SellOut) => void }) {
  const { t, lang } = useLang();
  const [asking, setAsking] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const confirm = async () => {
    setBusy(true);
    setError(null);
    try {
      const sold = await api.post<SellOut>(`/api/positions/${encodeURIComponent(position.market)}/sell`, {
        reason: "sold from the viewer",
      });
      setAsking(false);
      onSold(sold);
    } catch (reason) {
      setError(serverText(t, lang, reason instanceof Error ? reason.message : String(reason)));
    } finally {
      setBusy(false);
    }
  };
  if (!asking) {
    return (
      <button type="button" className="danger small-button" data-testid="sell-now" onClick={() => setAsking(true)}>
        {t("sellNow")}
      </button>
    );
  }
  return (
    <div className="confirm-sell" role="dialog" aria-modal="false" aria-label={t("sellNow")} data-testid="sell-confirm">
      <p className="small">
        {fill(t("sellConfirm"), {
          volume: num(position.volume, 8),
          market: position.market,
          price: tickPrice(position.mark_price),
        })}
      </p>
      {error && (
        <p className="error small" role="alert" data-testid="sell-error">
          {t("error")}: {error}
        </p>
      )}
      <button type="button" className="danger" onClick={confirm} disabled={busy} data-testid="sell-confirm-yes">
        {t("sellConfirmYes")}
      </button>{" "}
      <button type="button" onClick={() => setAsking(false)} disabled={busy}>
        {t("cancel")}
      </button>
    </div>
  );
}
