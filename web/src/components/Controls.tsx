import { useMemo, useState } from "react";
import { api, getToken, setToken, type RunAccepted, type TradingState } from "../api";
import { useGet } from "../hooks";
import { useLang, type LabelKey } from "../i18n";
import { serverText } from "../serverText";
import { capLevel, effectiveReason, effectiveState, formatChange, monthlyBanner, throttle } from "../riskState";
import { useStreamEvents } from "../stream";

interface Props {
  markets: string[];
  canRun: boolean;
  onNotice: (notice: Notice | null) => void;
}

/** A message under the header; `runId` (a run just started) is shown as a link to it. */
export interface Notice {
  kind: "ok" | "error";
  text: string;
  runId?: string;
}

type Pending = { kind: "halt" | "resume" } | null;

/** The trading state and the monthly loss cap, the token field, re-evaluate now, and halt /
 * resume with a confirmation step. */
export function Controls({ markets, canRun, onNotice }: Props) {
  const { t, lang } = useLang();
  const state = useGet<TradingState>("/api/trading-state");
  const [tokenDraft, setTokenDraft] = useState(getToken());
  const [market, setMarket] = useState("");
  const [pending, setPending] = useState<Pending>(null);
  const [reason, setReason] = useState("");
  const [flatten, setFlatten] = useState(false);
  const [busy, setBusy] = useState(false);

  // The monthly figures move with every bar: refresh them with the runs, at most every 5 s.
  const barReload = useMemo(() => throttle(5000), []);
  useStreamEvents((event) => {
    if (event.type === "trading_state" || event.type === "monthly_cap_resumed") state.reload();
    else if (event.type === "run_finished" && barReload(Date.now())) state.reload();
  });

  const fail = (error: unknown) =>
    onNotice({ kind: "error", text: `${t("error")}: ${serverText(t, lang, error instanceof Error ? error.message : String(error))}` });

  const evaluate = async () => {
    setBusy(true);
    try {
      const accepted = await api.post<RunAccepted>("/api/runs", market ? { market } : {});
      onNotice({ kind: "ok", text: t("started"), runId: accepted.run_id });
      window.location.hash = "#/live";
    } catch (error) {
      fail(error);
    } finally {
      setBusy(false);
    }
  };

  const confirm = async () => {
    if (!pending) return;
    setBusy(true);
    try {
      const body =
        pending.kind === "halt"
          ? { reason: reason || "halted from the viewer", flatten }
          : { reason: reason || "resumed from the viewer" };
      const next = await api.post<TradingState>(`/api/${pending.kind}`, body);
      onNotice({ kind: "ok", text: `${t("tradingState")}: ${t(next.state as LabelKey) ?? next.state}` });
      setPending(null);
      setReason("");
      setFlatten(false);
      state.reload();
    } catch (error) {
      fail(error);
    } finally {
      setBusy(false);
    }
  };

  const current = effectiveState(state.data);
  const chosen = state.data?.state ?? "active";
  const monthly = state.data?.monthly ?? null;
  const banner = monthlyBanner(monthly);
  return (
    <>
      <div className="controls">
        <span className={`state ${current}`} data-testid="trading-state" title={effectiveReason(state.data)}>
          {t("tradingState")}: <strong>{t(current as LabelKey) ?? current}</strong>
          {chosen !== current && (
            <span className="muted">
              {" "}
              ({t("operatorSet")}: {t(chosen as LabelKey) ?? chosen})
            </span>
          )}
          {current === "active" && state.data?.entries_allowed === false && (
            <span className="muted" data-testid="entries-refused">
              {" "}
              · {t("entriesRefused")}
            </span>
          )}
        </span>
        {monthly && (
          <span
            className={`cap ${capLevel(monthly)}`}
            data-testid="monthly-cap"
            title={monthly.how_to_clear ?? `${monthly.start_equity ?? "-"} → ${monthly.last_equity ?? "-"} KRW`}
          >
            {t("month")} {monthly.month}: <strong>{formatChange(monthly.loss_pct)}</strong> / {t("lossCap")}{" "}
            {formatChange(monthly.cap_pct)}
          </span>
        )}
        <span className="group">
          <select value={market} onChange={(event) => setMarket(event.target.value)} aria-label={t("market")}>
            <option value="">{t("allMarkets")}</option>
            {markets.map((name) => (
              <option key={name} value={name}>
                {name}
              </option>
            ))}
          </select>
          <button
            type="button"
            onClick={evaluate}
            disabled={busy || !canRun}
            title={canRun ? "" : t("noEngine")}
            data-testid="evaluate"
          >
            {t("evaluateNow")}
          </button>
        </span>
        <span className="group">
          <button type="button" className="danger" onClick={() => setPending({ kind: "halt" })} disabled={busy}>
            {t("halt")}
          </button>
          <button type="button" onClick={() => setPending({ kind: "resume" })} disabled={busy}>
            {t("resume")}
          </button>
        </span>
        <span className="spacer" />
        <form
          className="group token"
          onSubmit={async (event) => {
            event.preventDefault();
            setToken(tokenDraft.trim());
            if (!tokenDraft.trim()) {
              onNotice({ kind: "ok", text: `${t("token")}: -` });
              return;
            }
            try {
              await api.post("/api/auth/check");
              onNotice({ kind: "ok", text: t("tokenAccepted") });
            } catch (error) {
              fail(error);
            }
          }}
        >
          <label title={t("tokenHint")}>
            {t("token")}{" "}
            <input
              type="password"
              value={tokenDraft}
              onChange={(event) => setTokenDraft(event.target.value)}
              placeholder="LXA_API_TOKEN"
              autoComplete="off"
              data-testid="token"
            />
          </label>
          <button type="submit">{t("save")}</button>
        </form>
        {pending && (
          <div className="modal" role="dialog" aria-modal="true">
            <div className="modal-box">
              <p>{pending.kind === "halt" ? t("confirmHalt") : t("confirmResume")}</p>
              <label>
                {t("reasonPrompt")}
                <input value={reason} onChange={(event) => setReason(event.target.value)} maxLength={200} />
              </label>
              {pending.kind === "halt" && (
                <label className="check">
                  <input type="checkbox" checked={flatten} onChange={(event) => setFlatten(event.target.checked)} />{" "}
                  {t("flatten")}
                </label>
              )}
              <div className="row end">
                <button type="button" onClick={() => setPending(null)}>
                  {t("cancel")}
                </button>
                <button
                  type="button"
                  className={pending.kind === "halt" ? "danger" : "primary"}
                  onClick={confirm}
                  disabled={busy}
                  data-testid="confirm"
                >
                  {pending.kind === "halt" ? t("halt") : t("resume")}
                </button>
              </div>
            </div>
          </div>
        )}
      </div>
      {banner && (
        <div
          className={`banner ${banner.kind === "breached" ? "danger" : "warn"}`}
          role="alert"
          data-testid="monthly-cap-banner"
          data-kind={banner.kind}
        >
          <strong>{t("entriesStopped")}</strong> — {banner.reason}.{" "}
          {banner.kind === "pending"
            ? t("resumePending")
            : banner.clearsOn && (
                <>
                  {t("entriesResumeOn")} {banner.clearsOn} {t("resumeNowHint")}
                </>
              )}
        </div>
      )}
    </>
  );
}
