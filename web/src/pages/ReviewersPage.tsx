import { useEffect, useState } from "react";
import { query, type ReviewerLedger } from "../api";
import { ErrorText, Panel, pct } from "../components/Bits";
import { useGet } from "../hooks";
import { fill, useLang, type LabelKey } from "../i18n";
import { judgement, meanCi, signedFraction } from "../ledger";
import { kstDayStart } from "./RunsPage";

const NAMES: Record<string, string> = { groq: "Groq", ollama: "Ollama" };

const VERDICT = /^groq (agreed|vetoed|not asked) \/ ollama (agreed|vetoed|not asked)$/;

/** What each reviewer's vetoes were worth: the veto ledger of the journal's runs. */
export function ReviewersPage({ session }: { session: string | null }) {
  const { t } = useLang();
  const [draft, setDraft] = useState({ session: session ?? "", since: "" });
  const [filters, setFilters] = useState(draft);
  const [touched, setTouched] = useState(false);
  // Opened before /api/info answered: this server's session becomes the filter once known.
  useEffect(() => {
    if (session && !touched) {
      setDraft((old) => ({ ...old, session }));
      setFilters((old) => ({ ...old, session }));
    }
  }, [session, touched]);
  const ledger = useGet<ReviewerLedger>(
    `/api/reviewers${query({ session: filters.session.trim(), since: filters.since ? kstDayStart(filters.since) : null })}`,
  );
  const data = ledger.data;
  const verdictWord = (word: string) => t(`verdict_${word.replace(" ", "_")}` as LabelKey);
  const ruleBased = data
    ? Object.values(data.labels ?? {}).some((labels) => Object.keys(labels).some((label) => !label.includes(":")))
    : false;
  return (
    <Panel title={t("reviewers")} wide testId="reviewers">
      <form
        className="filters"
        onSubmit={(event) => {
          event.preventDefault();
          setTouched(true);
          setFilters(draft);
        }}
      >
        <label>
          {t("session")}
          <input name="session" value={draft.session} onChange={(event) => setDraft({ ...draft, session: event.target.value })} placeholder={t("any")} />
        </label>
        <label>
          {t("sinceDay")}
          <input type="date" name="since" value={draft.since} onChange={(event) => setDraft({ ...draft, since: event.target.value })} />
        </label>
        <button type="submit" className="primary">
          {t("apply")}
        </button>
        <button
          type="button"
          onClick={() => {
            const cleared = { session: "", since: "" };
            setTouched(true);
            setDraft(cleared);
            setFilters(cleared);
          }}
        >
          {t("reset")}
        </button>
      </form>
      <ErrorText error={ledger.error} />
      {data && (
        <>
          <p className="small" data-testid="reviewers-intro">
            {fill(t("reviewersIntro"), { horizon: data.horizon_minutes, fee: pct(data.round_trip_fee, 2) })}
          </p>
          <p className="small muted" data-testid="reviewers-counts">
            {t("proposalsSeen")}: {data.proposals} · {t("withOutcome")}: {data.with_outcome}
          </p>
          {ruleBased && (
            <p className="warn small" data-testid="reviewers-rule-based">
              {t("ruleBasedLedger")}
            </p>
          )}
          {data.proposals === 0 && <p className="muted">{t("noProposalsYet")}</p>}
          <div className="table-wrap">
            <table data-testid="reviewers-table">
              <thead>
                <tr>
                  <th>{t("reviewers")}</th>
                  <th className="num">{t("reviewerAsked")}</th>
                  <th className="num">{t("reviewerVetoed")}</th>
                  <th className="num">{t("vetoRate")}</th>
                  <th className="num">{t("vetoedReturn")}</th>
                  <th className="num">{t("passedReturn")}</th>
                  <th className="num">{t("passedMinusVetoed")}</th>
                  <th>{t("answeredBy")}</th>
                </tr>
              </thead>
              <tbody>
                {Object.entries(data.reviewers).map(([name, figures]) => (
                  <tr key={name} data-reviewer={name}>
                    <td>
                      <strong>{NAMES[name] ?? name}</strong>
                      <div className="small muted" data-testid={`judgement-${name}`}>
                        {t(judgement(figures))}
                      </div>
                    </td>
                    <td className="num">{figures.asked}</td>
                    <td className="num">{figures.vetoed}</td>
                    <td className="num" data-testid={`veto-rate-${name}`}>
                      {pct(figures.veto_rate)}
                    </td>
                    <td className="num" data-testid={`vetoed-${name}`}>
                      {meanCi(figures.vetoed_net_return)}
                    </td>
                    <td className="num" data-testid={`passed-${name}`}>
                      {meanCi(figures.passed_net_return)}
                    </td>
                    <td className={`num ${figures.passed_minus_vetoed === null ? "" : figures.passed_minus_vetoed > 0 ? "ok" : "bad"}`}>
                      {signedFraction(figures.passed_minus_vetoed)}
                    </td>
                    <td className="small">
                      {Object.entries(data.labels?.[name] ?? {})
                        .map(([label, count]) => `${label} (${count})`)
                        .join(", ") || "-"}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <h3>{t("agreementTable")}</h3>
          <div className="table-wrap">
            <table data-testid="agreement-table">
              <thead>
                <tr>
                  <th>Groq</th>
                  <th>Ollama</th>
                  <th className="num">{t("agreementCount")}</th>
                </tr>
              </thead>
              <tbody>
                {Object.entries(data.agreement).map(([key, count]) => {
                  const found = VERDICT.exec(key);
                  return (
                    <tr key={key}>
                      <td>{found ? verdictWord(found[1]) : key}</td>
                      <td>{found ? verdictWord(found[2]) : ""}</td>
                      <td className="num">{count}</td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          </div>
        </>
      )}
    </Panel>
  );
}
