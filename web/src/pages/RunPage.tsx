import { llmRan, type GraphOut, type LlmCall, type RunDetail, type Verdict } from "../api";
import { ActionLabel, ErrorText, Json, Panel, num, pct } from "../components/Bits";
import { GraphView } from "../components/GraphView";
import { ShownNewsTable } from "../components/NewsTable";
import { useGet } from "../hooks";
import { fill, kst, reasonLabel, useLang } from "../i18n";
import { blockedOf, blockedText, codeText, glossKeys, policyText, reasoningText } from "../serverText";
import { tickPrice } from "../ticks";
import { triggerLabel } from "./RunsPage";
import type { NodeStatus } from "../liveRun";
import { shownNews } from "../news";
import { useStreamEvents } from "../stream";

/** Each node's status in a finished run, from the events the nodes recorded. */
export function statusFromEvents(detail: RunDetail): {
  status: Record<string, NodeStatus>;
  reasons: Record<string, string>;
} {
  const status: Record<string, NodeStatus> = {};
  const reasons: Record<string, string> = {};
  for (const event of detail.events) {
    const payload = event.payload ?? {};
    if (event.type === "node_skipped" && typeof payload.skipped_node === "string") {
      status[payload.skipped_node] = "skipped";
      reasons[payload.skipped_node] = String(payload.because ?? "");
    }
  }
  for (const event of detail.events) {
    const node = event.payload?.node;
    if (typeof node === "string" && status[node] !== "skipped") status[node] = "done";
  }
  for (const [node, output] of Object.entries(detail.nodes ?? {})) {
    if (output !== null && output !== undefined && node !== "input" && status[node] !== "skipped") {
      status[node] = "done";
    }
  }
  return { status, reasons };
}

const LLM_NODES: [string, string][] = [
  ["groq_check", "groq"],
  ["ollama_check", "ollama"],
];

/** One run: summary, graph, each node's inputs and outputs, reasoning, clamps, prompts. */
export function RunPage({ runId }: { runId: string }) {
  const { t, lang } = useLang();
  const run = useGet<RunDetail>(`/api/runs/${encodeURIComponent(runId)}`);
  const graph = useGet<GraphOut>("/api/graph");
  // A run opened while it is still going is journaled when it finishes: read it again then.
  useStreamEvents((event) => {
    if (event.type === "run_finished" && event.run_id === runId) run.reload();
  });
  if (run.error) {
    return (
      <Panel title={`${t("runDetail")} ${runId}`} wide>
        <ErrorText error={run.error} />
        <a href="#/runs">← {t("back")}</a>
      </Panel>
    );
  }
  const detail = run.data;
  if (!detail) return <p className="muted">{t("loading")}</p>;
  const { status, reasons } = statusFromEvents(detail);
  const calls = new Map<string, LlmCall>(detail.llm_calls.map((call) => [call.node, call]));
  const clamps = detail.clamps ?? detail.sizing?.clamps ?? [];
  const refs: Record<string, string | null> = { ...(detail.prompt_refs ?? {}) };
  for (const call of detail.llm_calls) if (!(call.node in refs)) refs[call.node] = call.prompt_ref;
  const promptNodes = Object.entries(refs).filter(([, ref]) => ref);
  const replayable = llmRan(detail.reviewer_labels);
  const blocked = blockedOf(detail);
  const shown = shownNews(detail.nodes.input);
  const nodeNames = graph.data?.nodes ?? Object.keys(detail.nodes).filter((name) => name !== "input");
  return (
    <div className="grid" data-testid="run-page">
      <Panel
        title={`${t("runDetail")}`}
        wide
        extra={
          <a href="#/runs" className="small">
            ← {t("back")}
          </a>
        }
      >
        <div className="summary">
          <code className="runid" data-testid="run-id">
            {detail.run_id}
          </code>
          <dl>
            <dt>{t("decision")}</dt>
            <dd data-testid="run-decision">
              <ActionLabel action={detail.action} /> {detail.market ?? ""}{" "}
              <span className="muted" data-reason={detail.reason}>
                — {reasonLabel(t, detail.reason)}
              </span>
              {detail.reason === "blocked" && (
                <div className="small warn" data-testid="run-blocked">
                  {t("blockedWhy")}: {blocked.market ?? "-"} — {blockedText(t, lang, blocked.why)}
                </div>
              )}
            </dd>
            {policyReason(detail) && (
              <>
                <dt>{t("policyLabel")}</dt>
                <dd className="small" data-testid="run-policy">
                  {policyText(t, lang, policyReason(detail))}
                </dd>
              </>
            )}
            <dt>{t("time")}</dt>
            <dd>{kst(detail.bar_ts, lang)}</dd>
            <dt>{t("trigger")}</dt>
            <dd>{triggerLabel(t, detail.trigger)}</dd>
            <dt>{t("durationMs")}</dt>
            <dd>{Math.round(detail.duration_ms)}</dd>
            <dt>{t("session")}</dt>
            <dd className="small">{detail.session_id}</dd>
          </dl>
          {replayable ? (
            <a className="button" href={`#/prompts/groq_check/${encodeURIComponent(detail.run_id)}`} data-testid="replay-link">
              {t("replayWithEdit")}
            </a>
          ) : (
            <p className="small muted" data-testid="replay-why">
              {replayWhy(t, detail)} {t("replayBlockedHint")}
            </p>
          )}
        </div>
        {graph.data && <GraphView graph={graph.data} status={status} reasons={reasons} />}
      </Panel>

      <Panel title={t("reasoning")} testId="reasoning">
        {LLM_NODES.map(([node, key]) => (
          <VerdictBlock key={node} node={node} verdict={detail.verdicts?.[key] ?? null} call={calls.get(node)} skipped={status[node] === "skipped"} />
        ))}
      </Panel>

      <Panel title={t("clamps")} testId="clamps">
        {detail.sizing ? (
          <p className="small">
            {t("ratio")} {pct(detail.sizing.investment_ratio)} · {t("stopLoss")} {num(detail.sizing.stop_loss_pct)}% · {t("takeProfit")}{" "}
            {num(detail.sizing.take_profit_pct)}%{detail.sizing.refused ? ` · ${t("sizingRefused")}: ${reasonLabel(t, detail.sizing.refused)}` : ""}
            <br />
            <span className="muted" data-testid="sizing-reasoning">
              {reasoningText(t, lang, detail.sizing.reasoning)}
            </span>
          </p>
        ) : null}
        {clamps.length === 0 ? (
          <p className="muted">{t("noClamps")}</p>
        ) : (
          <table>
            <thead>
              <tr>
                <th>{t("field")}</th>
                <th className="num">{t("proposed")}</th>
                <th className="num">{t("clampedTo")}</th>
                <th>{t("rule")}</th>
              </tr>
            </thead>
            <tbody>
              {clamps.map((clamp, index) => (
                <tr key={index}>
                  <td>{codeText(lang, clamp.field)}</td>
                  <td className="num">{num(clamp.proposed, 4)}</td>
                  <td className="num">{num(clamp.clamped_to, 4)}</td>
                  <td>{codeText(lang, clamp.rule)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
        <h3>{t("promptVersions")}</h3>
        {promptNodes.length === 0 ? (
          <p className="muted">{t("noPrompts")}</p>
        ) : (
          <ul className="refs" data-testid="prompt-refs">
            {promptNodes.map(([node, ref]) => (
              <li key={node}>
                {node}: <a href={`#/prompts/${encodeURIComponent(String(ref).split("@")[0])}/${encodeURIComponent(detail.run_id)}`}><code>{ref}</code></a>
              </li>
            ))}
          </ul>
        )}
      </Panel>

      <Panel title={t("orders")} wide>
        {detail.orders.length === 0 ? (
          <p className="muted">{t("noOrders")}</p>
        ) : (
          <table>
            <thead>
              <tr>
                <th>{t("orderIdentifier")}</th>
                <th>{t("market")}</th>
                <th>{t("side")}</th>
                <th>{t("orderType")}</th>
                <th>{t("orderState")}</th>
                <th className="num">{t("priceKrw")}</th>
                <th className="num">{t("executed")}</th>
                <th className="num">{t("fee")}</th>
              </tr>
            </thead>
            <tbody>
              {detail.orders.map((order) => (
                <tr key={order.identifier}>
                  <td className="small">
                    <code>{order.identifier}</code>
                  </td>
                  <td>{order.market}</td>
                  <td>
                    <ActionLabel action={order.side === "bid" ? "buy" : "sell"} />
                  </td>
                  <td>{codeText(lang, order.ord_type)}</td>
                  <td>{codeText(lang, order.state)}</td>
                  <td className="num">{order.ord_type === "price" ? num(order.price, 0) : tickPrice(order.price)}</td>
                  <td className="num">{num(order.executed_volume, 8)}</td>
                  <td className="num">{num(order.paid_fee, 2)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
        {(detail.fills ?? []).length > 0 && (
          <p className="small">
            {t("fills")}:{" "}
            {(detail.fills ?? []).map((fill) => (
              <span className="chip" key={fill.id}>
                {fill.market} <ActionLabel action={fill.side === "bid" ? "buy" : "sell"} /> {num(fill.volume, 8)} @ {tickPrice(fill.price)}
              </span>
            ))}
          </p>
        )}
      </Panel>

      <Panel title={t("nodeIO")} wide testId="node-io">
        <details className="node-io" open>
          <summary>
            <strong>{t("input")}</strong> <span className="muted">({t("inputNote")})</span>
          </summary>
          <Json value={glossKeys(detail.nodes.input, lang)} />
        </details>
        <details className="node-io" open data-testid="run-news">
          <summary>
            <strong>{t("shownNews")}</strong>
          </summary>
          {shown.length > 0 ? <ShownNewsTable shown={shown} /> : <p className="muted small">{t("noShownNews")}</p>}
        </details>
        {nodeNames.map((node) => {
          const call = calls.get(node);
          return (
            <details key={node} className="node-io" data-node={node}>
              <summary>
                <strong>{node}</strong>{" "}
                <span className={`status ${status[node] ?? "idle"}`}>
                  {status[node] === "skipped"
                    ? `${t("skipped")}${reasons[node] ? `: ${reasons[node]}` : ""}`
                    : status[node] === "done"
                      ? "✓"
                      : t("notReached")}
                </span>
              </summary>
              <div className="io">
                <div>
                  <h4>{t("input")}</h4>
                  {node === "ml_signal" ? (
                    <Json value={glossKeys({ model_id: detail.ml.model_id, features: detail.ml.features }, lang)} />
                  ) : call ? (
                    <Json value={call.request} />
                  ) : (
                    <span className="muted">{node === "ml_signal" ? "" : t("graphState")}</span>
                  )}
                </div>
                <div>
                  <h4>{t("output")}</h4>
                  <Json value={glossKeys(detail.nodes[node], lang)} />
                </div>
              </div>
            </details>
          );
        })}
      </Panel>
    </div>
  );
}

/** The policy's sentence for the run's proposal (policy/rules.py), if it has one. */
function policyReason(detail: RunDetail): string | null {
  const signal = detail.nodes?.ml_signal as { proposal?: { policy?: { reason?: unknown } } } | undefined;
  const reason = signal?.proposal?.policy?.reason;
  return typeof reason === "string" ? reason : null;
}

/** Why replaying this run with an edited prompt cannot change its outcome. */
function replayWhy(t: ReturnType<typeof useLang>["t"], detail: RunDetail): string {
  const signal = detail.nodes?.ml_signal as { proposal?: { action?: string } } | undefined;
  if ((signal?.proposal?.action ?? "hold") === "hold") return t("replayNoProposal");
  return fill(t("replayNoLlm"), { settings: "LXA_GROQ_API_KEY, LXA_OLLAMA_HOST" });
}

function VerdictBlock({
  node,
  verdict,
  call,
  skipped,
}: {
  node: string;
  verdict: Verdict | null;
  call: LlmCall | undefined;
  skipped: boolean;
}) {
  const { t, lang } = useLang();
  const raw = call?.response && typeof call.response.raw === "string" ? call.response.raw : null;
  return (
    <div className="verdict" data-node={node}>
      <h3>
        {node} <span className="muted small">{codeText(lang, verdict?.reviewer ?? call?.provider ?? "")}</span>
        {call?.prompt_ref && <code className="small"> {call.prompt_ref}</code>}
      </h3>
      {!verdict ? (
        <p className="muted">{skipped ? t("skipped") : t("notReached")}</p>
      ) : (
        <>
          <p>
            <ActionLabel action={verdict.verdict} /> — {verdict.agrees ? t("agrees") : t("disagrees")}
            <span className="muted">
              {" "}
              · {t("confidence")} <span data-testid="confidence">{pct(verdict.confidence, 0)}</span>
            </span>
          </p>
          <p className="reasoning" data-testid="verdict-reasoning">
            {verdict.error ? `⚠ ${verdict.error}` : reasoningText(t, lang, verdict.reasoning)}
          </p>
          {verdict.risks && verdict.risks.length > 0 && (
            <p className="small muted">
              {t("risks")}: {verdict.risks.map((risk) => reasoningText(t, lang, risk)).join("; ")}
            </p>
          )}
          {raw && (
            <details>
              <summary className="small">{t("rawAnswer")}</summary>
              <pre className="json">{raw}</pre>
            </details>
          )}
        </>
      )}
    </div>
  );
}
