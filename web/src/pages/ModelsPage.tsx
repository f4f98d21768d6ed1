import { useState } from "react";
import type { Models, ReviewerRecord } from "../api";
import { ErrorText, Panel } from "../components/Bits";
import { useGet } from "../hooks";
import { fill, hasLabel, kst, useLang, type LabelKey } from "../i18n";
import { accuracy, barWidths, margin, signedReturn, weightsLine } from "../models";
import { codeText, promotionText } from "../serverText";

const NAMES: Record<string, string> = { groq: "Groq", ollama: "Ollama" };
const DAYS = [7, 30, 90];

/** The learning loop: model versions and the promotion decisions with their figures, and
 * the reviewers' right/wrong record over time. */
export function ModelsPage() {
  const { t, lang } = useLang();
  const models = useGet<Models>("/api/models");
  const [days, setDays] = useState(30);
  const record = useGet<ReviewerRecord>(`/api/reviewers/record?days=${days}`);
  const data = models.data;
  const label = (key: string, fallback: string) => (hasLabel(key) ? t(key as LabelKey) : fallback);
  return (
    <>
      <Panel title={t("modelVersions")} wide testId="models">
        <ErrorText error={models.error} />
        {data && !data.available && <p className="muted">{t("noRegistry")}</p>}
        {data && data.available && (
          <>
            <p data-testid="champion">
              {t("champion")}: <strong>{data.champion ?? "-"}</strong>
              {data.pinned && (
                <span className="small warn" data-testid="pinned">
                  {" "}
                  · {fill(t("pinnedSet"), { path: data.pinned })}
                </span>
              )}
              {data.champion_pointer?.since ? (
                <span className="small muted"> · {kst(String(data.champion_pointer.since), lang)}</span>
              ) : null}
            </p>
            {data.versions.length === 0 && <p className="muted">{t("noVersions")}</p>}
            {data.versions.length > 0 && (
              <div className="table-wrap">
                <table data-testid="model-versions">
                  <thead>
                    <tr>
                      <th>ID</th>
                      <th>{t("status")}</th>
                      <th>{t("trainingWindow")}</th>
                      <th>{t("sampleWeights")}</th>
                      <th className="num">{t("holdOut")}</th>
                      <th>{t("reason")}</th>
                    </tr>
                  </thead>
                  <tbody>
                    {data.versions.map((version) => (
                      <tr key={version.model_id} data-model={version.model_id} data-status={version.status}>
                        <td>
                          <strong>{version.model_id}</strong>
                          <div className="small muted">
                            {version.kind} · {kst(version.created_at, lang)}
                          </div>
                        </td>
                        <td className={version.status === "champion" ? "ok" : ""}>{label(`status_${version.status}`, version.status)}</td>
                        <td className="nowrap small">
                          {kst(version.training_window.first_ts, lang)} .. {kst(version.training_window.last_ts, lang)}
                        </td>
                        <td className="small">{weightsLine(version.weights, t("weightMean")) ?? t("unweighted")}</td>
                        <td className="num">
                          {version.evaluation ? (
                            <>
                              {signedReturn(version.evaluation.total_return)}
                              <div className="small muted">{fill(t("entriesCount"), { n: version.evaluation.entries ?? 0 })}</div>
                            </>
                          ) : (
                            "-"
                          )}
                        </td>
                        <td className="small wrap">{promotionText(t, lang, version.reason)}</td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
            )}
          </>
        )}
        {data && (
          <>
            <h3>{t("promotionDecisions")}</h3>
            {data.decisions.length === 0 ? (
              <p className="muted">{t("noDecisions")}</p>
            ) : (
              <div className="table-wrap">
                <table data-testid="promotion-decisions">
                  <thead>
                    <tr>
                      <th>{t("decidedAt")}</th>
                      <th>ID</th>
                      <th>{t("decision")}</th>
                      <th className="num">{t("challenger")}</th>
                      <th className="num">{t("champion")}</th>
                      <th className="num">{t("marginCol")}</th>
                      <th>{t("reason")}</th>
                    </tr>
                  </thead>
                  <tbody>
                    {data.decisions.map((decision, index) => {
                      const gap = margin(decision.challenger?.total_return, decision.champion?.total_return);
                      return (
                        <tr key={`${decision.model_id}-${index}`} data-model={decision.model_id ?? ""} data-promote={String(decision.promote)}>
                          <td className="nowrap">{kst(decision.at, lang)}</td>
                          <td>{decision.model_id ?? "-"}</td>
                          <td className={decision.promote ? "ok" : "bad"}>
                            {decision.kind === "judged" ? (decision.promote ? t("promoted") : t("notPromoted")) : label(`decision_${decision.kind}`, decision.kind)}
                            {decision.by && <div className="small muted">{codeText(lang, decision.by)}</div>}
                          </td>
                          <td className="num">{signedReturn(decision.challenger?.total_return)}</td>
                          <td className="num">{signedReturn(decision.champion?.total_return)}</td>
                          <td className={`num ${gap === null ? "" : gap > 0 ? "ok" : "bad"}`}>{signedReturn(gap)}</td>
                          <td className="small wrap">{promotionText(t, lang, decision.reason)}</td>
                        </tr>
                      );
                    })}
                  </tbody>
                </table>
              </div>
            )}
          </>
        )}
      </Panel>
      <Panel
        title={t("reviewerRecord")}
        wide
        testId="reviewer-record"
        extra={
          <span className="zoom-bar">
            <span className="small muted">{t("days")}</span>
            {DAYS.map((value) => (
              <button key={value} type="button" className={`small-button${value === days ? " active" : ""}`} data-days={value} onClick={() => setDays(value)}>
                {value}
              </button>
            ))}
          </span>
        }
      >
        <ErrorText error={record.error} />
        {record.data && (
          <>
            <p className="small" data-testid="record-intro">
              {fill(t("recordIntro"), {
                horizon: record.data.horizon_minutes,
                outcomes: record.data.from_outcomes,
                ledger: record.data.from_ledger,
              })}
            </p>
            <div className="table-wrap">
              <table data-testid="record-totals">
                <thead>
                  <tr>
                    <th>{t("reviewers")}</th>
                    <th className="num">{t("right")}</th>
                    <th className="num">{t("wrong")}</th>
                    <th className="num">{t("pending")}</th>
                    <th className="num">{t("accuracyCol")}</th>
                  </tr>
                </thead>
                <tbody>
                  {Object.entries(record.data.totals).map(([name, figures]) => (
                    <tr key={name} data-reviewer={name}>
                      <td>{NAMES[name] ?? name}</td>
                      <td className="num ok">{figures.right}</td>
                      <td className="num bad">{figures.wrong}</td>
                      <td className="num muted">{figures.pending}</td>
                      <td className="num" data-testid={`accuracy-${name}`}>
                        {accuracy(figures)}
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
            {record.data.series.length === 0 ? (
              <p className="muted">{t("noRecord")}</p>
            ) : (
              <div className="table-wrap">
                <table data-testid="record-days">
                  <thead>
                    <tr>
                      <th>{t("dayKst")}</th>
                      {Object.keys(record.data.totals).map((name) => (
                        <th key={name}>
                          {NAMES[name] ?? name} ({t("right")} / {t("wrong")})
                        </th>
                      ))}
                    </tr>
                  </thead>
                  <tbody>
                    {record.data.series.map((day, index) => (
                      <tr key={day.day} data-day={day.day}>
                        <td className="nowrap">{day.day}</td>
                        {Object.keys(record.data!.totals).map((name) => {
                          const figures = day.reviewers[name];
                          const width = barWidths(record.data!, name)[index];
                          return (
                            <td key={name}>
                              <span className="record-bar" aria-hidden>
                                <span className="right" style={{ width: `${width.right}%` }} />
                                <span className="wrong" style={{ width: `${width.wrong}%` }} />
                              </span>{" "}
                              <span className="small">
                                {figures?.right ?? 0} / {figures?.wrong ?? 0} · {accuracy(figures)}
                              </span>
                            </td>
                          );
                        })}
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
            )}
          </>
        )}
      </Panel>
    </>
  );
}
