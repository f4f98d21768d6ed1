import type { GraphOut } from "../api";
import { ActionLabel, ErrorText, Panel, num } from "../components/Bits";
import { GraphView } from "../components/GraphView";
import { PositionsPanel } from "../components/Positions";
import { runHref, useGet } from "../hooks";
import { kst, reasonLabel, useLang } from "../i18n";
import { tickPrice } from "../ticks";
import { triggerLabel } from "./RunsPage";
import { codeText, eventSummary, eventType, reasoningText } from "../serverText";
import { useStream } from "../stream";

const LLM_NODES = ["groq_check", "ollama_check", "sizing"];

/** The run streaming now: the graph lighting up, LLM text as it arrives, the decision. */
export function LivePage({ canSell = false }: { canSell?: boolean }) {
  const { t, lang } = useLang();
  const graph = useGet<GraphOut>("/api/graph");
  const { live, recent } = useStream();
  const textNodes = LLM_NODES.filter((node) => live.tokens[node] || live.reviewers[node]);
  return (
    <div className="grid">
      <Panel title={t("graph")} wide testId="live-graph">
        <ErrorText error={graph.error} />
        {graph.data ? (
          <GraphView graph={graph.data} status={live.nodes} reasons={live.skippedBecause} />
        ) : (
          <p className="muted">{t("loading")}</p>
        )}
      </Panel>
      <Panel title={t("currentRun")} testId="current-run">
        {live.runId ? (
          <>
            <p>
              <span className="muted">{t("run")}:</span>{" "}
              <a href={runHref(live.runId)} data-testid="current-run-link">
                <code>{live.runId}</code>
              </a>
              <br />
              <span className="muted">
                {t("time")}: {kst(live.barTs, lang)} · {t("trigger")}: {live.trigger ? triggerLabel(t, live.trigger) : "-"}
              </span>
            </p>
            {live.verdicts.length > 0 && (
              <>
                <h3>{t("verdicts")}</h3>
                <ul className="verdicts">
                  {live.verdicts.map((verdict) => (
                    <li key={verdict.node}>
                      <strong>{verdict.node}</strong> <span className="muted">({codeText(lang, verdict.reviewer ?? "?")})</span>:{" "}
                      <ActionLabel action={verdict.verdict} /> — {verdict.agrees ? t("agrees") : t("disagrees")}
                      <div className="reasoning">{verdict.error ? `⚠ ${verdict.error}` : reasoningText(t, lang, verdict.reasoning)}</div>
                    </li>
                  ))}
                </ul>
              </>
            )}
            <div className="decision" data-testid="live-decision">
              <span className="muted">{t("decision")}:</span>{" "}
              {live.decision ? (
                <>
                  <ActionLabel action={live.decision.action} /> {live.decision.market ?? ""}{" "}
                  <span className="muted" data-reason={live.decision.reason}>— {reasonLabel(t, live.decision.reason)}</span>
                  {live.durationMs !== null && <span className="muted"> · {Math.round(live.durationMs)} ms</span>}
                </>
              ) : (
                <span className="muted">{t("running")}</span>
              )}
            </div>
            {live.order && (
              <div className="order" data-testid="live-order">
                <span className="muted">{t("order")}:</span> <code>{String(live.order.identifier ?? "")}</code>{" "}
                {String(live.order.state ?? "sending")}
                {live.order.avg_price ? ` @ ${tickPrice(live.order.avg_price)}` : ""}
              </div>
            )}
            {live.fills.length > 0 && (
              <div className="fills">
                <span className="muted">{t("fills")}:</span>{" "}
                {live.fills.map((fill, index) => (
                  <span key={index} className="chip">
                    {String(fill.market)} <ActionLabel action={fill.side === "bid" ? "buy" : fill.side === "ask" ? "sell" : String(fill.side)} /> {num(fill.volume, 8)} @ {tickPrice(fill.price)}
                  </span>
                ))}
              </div>
            )}
          </>
        ) : (
          <p className="muted">{t("waiting")}</p>
        )}
        {live.gap && <p className="warn">{t("gap")}</p>}
      </Panel>
      <Panel title={t("llmText")} testId="llm-text">
        {textNodes.length === 0 && !live.previousLlm && <p className="muted">-</p>}
        {textNodes.map((node) => (
          <div key={node} className="llm">
            <div className="llm-head">
              <strong>{node}</strong> <span className="muted">{live.reviewers[node] ?? ""}</span>
              {live.nodes[node] === "running" && <span className="pulse" />}
            </div>
            {live.tokens[node] ? (
              <pre className="stream-text" data-node={node}>
                {live.tokens[node]}
              </pre>
            ) : (
              <p className="muted small">{live.nodes[node] === "running" ? t("running") : t("noStreamedText")}</p>
            )}
          </div>
        ))}
        {textNodes.length === 0 && live.previousLlm && (
          <div className="previous-llm" data-testid="previous-llm">
            <p className="small muted">
              {t("lastLlmRun")}{" "}
              <a href={runHref(live.previousLlm.runId)}>
                <code>{live.previousLlm.runId}</code>
              </a>
            </p>
            {Object.entries(live.previousLlm.tokens).map(([node, text]) => (
              <div key={node} className="llm">
                <div className="llm-head">
                  <strong>{node}</strong> <span className="muted">{live.previousLlm?.reviewers[node] ?? ""}</span>
                </div>
                <pre className="stream-text previous" data-previous-node={node}>
                  {text}
                </pre>
              </div>
            ))}
          </div>
        )}
      </Panel>
      <PositionsPanel canSell={canSell} />
      <Panel title={t("events")} wide>
        <ol className="events">
          {recent.slice(0, 25).map((event, index) => (
            <li key={`${event.seq ?? "x"}-${index}`}>
              <code className="seq">{event.seq ?? "·"}</code>{" "}
              <span className="etype" data-type={event.type}>
                {eventType(lang, event.type)}
              </span>{" "}
              {event.node ? <span className="muted">{String(event.node)}</span> : null}{" "}
              <span className="muted small">{eventSummary(t, lang, event)}</span>
            </li>
          ))}
        </ol>
      </Panel>
    </div>
  );
}
