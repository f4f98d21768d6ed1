import { useState } from "react";
import { query, type RunList } from "../api";
import { ActionLabel, ErrorText, Panel } from "../components/Bits";
import { runHref, useGet } from "../hooks";
import type { LabelKey } from "../i18n";
import { kst, reasonLabel, useLang } from "../i18n";
import { useStreamEvents } from "../stream";

const PAGE = 25;

interface Filters {
  market: string;
  action: string;
  since: string; // yyyy-mm-dd, a KST day
  until: string;
}

const empty: Filters = { market: "", action: "", since: "", until: "" };

/** A KST calendar day as the instant it starts, for the API's since/until. */
export function kstDayStart(day: string, plusDays = 0): string | null {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(day)) return null;
  const start = new Date(`${day}T00:00:00+09:00`);
  start.setUTCDate(start.getUTCDate() + plusDays);
  return start.toISOString();
}

/** Every decision, newest first, filtered by market, outcome and KST day. */
export function RunsPage({ markets }: { markets: string[] }) {
  const { t, lang } = useLang();
  const [draft, setDraft] = useState<Filters>(empty);
  const [filters, setFilters] = useState<Filters>(empty);
  const [offset, setOffset] = useState(0);
  const path = `/api/runs${query({
    limit: PAGE,
    offset,
    market: filters.market,
    action: filters.action,
    since: filters.since ? kstDayStart(filters.since) : null,
    until: filters.until ? kstDayStart(filters.until, 1) : null,
  })}`;
  const runs = useGet<RunList>(path);
  useStreamEvents((event) => {
    if (event.type === "run_finished" && offset === 0) runs.reload();
  });
  const apply = (next: Filters) => {
    setFilters(next);
    setOffset(0);
  };
  const total = runs.data?.total ?? 0;
  return (
    <Panel title={t("runs")} wide testId="runs">
      <form
        className="filters"
        onSubmit={(event) => {
          event.preventDefault();
          apply(draft);
        }}
      >
        <label>
          {t("market")}
          <select value={draft.market} onChange={(event) => setDraft({ ...draft, market: event.target.value })} name="market">
            <option value="">{t("any")}</option>
            {markets.map((name) => (
              <option key={name} value={name}>
                {name}
              </option>
            ))}
          </select>
        </label>
        <label>
          {t("outcome")}
          <select value={draft.action} onChange={(event) => setDraft({ ...draft, action: event.target.value })} name="action">
            <option value="">{t("any")}</option>
            <option value="buy">{t("buy")}</option>
            <option value="sell">{t("sell")}</option>
            <option value="hold">{t("hold")}</option>
          </select>
        </label>
        <label>
          {t("from")} (KST)
          <input type="date" value={draft.since} onChange={(event) => setDraft({ ...draft, since: event.target.value })} name="since" />
        </label>
        <label>
          {t("to")} (KST)
          <input type="date" value={draft.until} onChange={(event) => setDraft({ ...draft, until: event.target.value })} name="until" />
        </label>
        <button type="submit" className="primary">
          {t("apply")}
        </button>
        <button
          type="button"
          onClick={() => {
            setDraft(empty);
            apply(empty);
          }}
        >
          {t("reset")}
        </button>
      </form>
      <ErrorText error={runs.error} />
      <table className="runs">
        <thead>
          <tr>
            <th>{t("time")}</th>
            <th>{t("action")}</th>
            <th>{t("market")}</th>
            <th>{t("reason")}</th>
            <th>{t("trigger")}</th>
            <th>{t("reviewers")}</th>
            <th className="num">{t("durationMs")}</th>
          </tr>
        </thead>
        <tbody>
          {(runs.data?.runs ?? []).map((run) => (
            <tr
              key={run.run_id}
              onClick={() => {
                window.location.hash = runHref(run.run_id);
              }}
              data-run={run.run_id}
            >
              <td>
                <a href={runHref(run.run_id)}>{kst(run.bar_ts, lang)}</a>
              </td>
              <td>
                <ActionLabel action={run.action} />
              </td>
              <td>{run.market ?? "-"}</td>
              <td className="wrap" data-reason={run.reason}>
                {reasonLabel(t, run.reason)}
                {run.reason === "blocked" && run.market ? `: ${run.market}` : ""}
              </td>
              <td>{triggerLabel(t, run.trigger)}</td>
              <td className="small muted">
                {Object.values(run.reviewer_labels ?? {})
                  .filter(Boolean)
                  .join(", ") || "-"}
              </td>
              <td className="num">{Math.round(run.duration_ms)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {runs.data && runs.data.runs.length === 0 && <p className="muted">{t("noRuns")}</p>}
      <div className="pager">
        <button type="button" disabled={offset === 0} onClick={() => setOffset(Math.max(0, offset - PAGE))}>
          ← {t("previous")}
        </button>
        <span className="muted">
          {total === 0 ? 0 : offset + 1}–{Math.min(offset + PAGE, total)} {t("ofTotal")} {total}
        </span>
        <button type="button" disabled={offset + PAGE >= total} onClick={() => setOffset(offset + PAGE)}>
          {t("next")} →
        </button>
      </div>
    </Panel>
  );
}

/** A run's trigger in the viewer's language: a bar close or a manual re-evaluation. */
export function triggerLabel(t: (key: LabelKey) => string, trigger: string): string {
  if (trigger === "manual") return t("manualRun");
  if (trigger === "bar") return t("barRun");
  return trigger;
}
