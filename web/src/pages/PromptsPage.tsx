import { useEffect, useState } from "react";
import {
  api,
  ApiError,
  type PromptCheck,
  type PromptOut,
  type PromptSummary,
  type PromptVersion,
  type ReplayOut,
  type ReplayOutcome,
  type Info,
  type NodeInUse,
  type ReviewersInUse,
  type RunDetail,
  llmRan,
} from "../api";
import { ActionLabel, ErrorText, Panel, num, pct } from "../components/Bits";
import { runHref, useGet } from "../hooks";
import { fill, kst, reasonLabel, useLang, type LabelKey } from "../i18n";
import { reasoningText, serverText } from "../serverText";
import { useStreamEvents } from "../stream";

/** A unified diff, one coloured line per change. */
export function Diff({ text }: { text: string }) {
  const { t } = useLang();
  if (!text.trim()) return <p className="muted">{t("noDiff")}</p>;
  return (
    <pre className="diff">
      {text.split("\n").map((line, index) => {
        const kind = line.startsWith("+++") || line.startsWith("---")
          ? "file"
          : line.startsWith("+")
            ? "add"
            : line.startsWith("-")
              ? "del"
              : line.startsWith("@@")
                ? "hunk"
                : "";
        return (
          <span key={index} className={kind}>
            {line}
            {"\n"}
          </span>
        );
      })}
    </pre>
  );
}

type Result = { kind: "ok" | "refused"; text: string } | null;

/** Edit a prompt file, validated by the server, and replay a run with the edit. */
export function PromptsPage({ name, runId }: { name: string | null; runId: string | null }) {
  const { t, lang } = useLang();
  const list = useGet<{ prompts: PromptSummary[] }>("/api/prompts");
  const current = name ?? list.data?.prompts[0]?.name ?? null;
  const prompt = useGet<PromptOut>(current ? `/api/prompts/${encodeURIComponent(current)}` : null);
  const versions = useGet<{ versions: PromptVersion[] }>(
    current ? `/api/prompts/${encodeURIComponent(current)}/versions` : null,
  );
  const [text, setText] = useState("");
  const [message, setMessage] = useState("");
  const [result, setResult] = useState<Result>(null);
  const [check, setCheck] = useState<PromptCheck | null>(null);
  const [busy, setBusy] = useState(false);
  const [replayRun, setReplayRun] = useState(runId ?? "");
  const [replay, setReplay] = useState<ReplayOut | null>(null);
  const [replayError, setReplayError] = useState<string | null>(null);
  const [replaying, setReplaying] = useState(false);
  const [groqModel, setGroqModel] = useState("");
  const inUse = useGet<ReviewersInUse>("/api/reviewers/in-use");
  const replayTarget = replayRun.trim();
  const target = useGet<RunDetail>(replayTarget ? `/api/runs/${encodeURIComponent(replayTarget)}` : null);
  const targetRun = target.data && target.data.run_id === replayTarget ? target.data : null;
  const info = useGet<Info>("/api/info");
  const node = current ? configuredNode(info.data, current) ?? inUse.data?.nodes[current] : undefined;
  const replayBlock = replayBlocker(t, targetRun, target.error !== null && replayTarget !== "", info.data);
  const [ollamaModel, setOllamaModel] = useState("");

  useStreamEvents((event) => {
    // Another tab or the CLI saved a prompt: refresh the list and this prompt's versions.
    if (event.type === "run_finished") inUse.reload();
    if (event.type !== "prompt_saved") return;
    list.reload();
    if (event.name === current) versions.reload();
  });

  useEffect(() => {
    if (prompt.data) {
      setText(prompt.data.text);
      setCheck(null);
    }
  }, [prompt.data]);
  useEffect(() => setResult(null), [current]);
  useEffect(() => setReplayRun(runId ?? ""), [runId]);

  const path = current ? `/api/prompts/${encodeURIComponent(current)}` : "";
  const edited = prompt.data !== null && text !== prompt.data.text;

  const runCheck = async () => {
    try {
      setCheck(await api.post<PromptCheck>(`${path}/check`, { text }));
    } catch (error) {
      setResult({ kind: "refused", text: error instanceof Error ? error.message : String(error) });
    }
  };

  const save = async () => {
    if (!prompt.data) return;
    setBusy(true);
    try {
      const saved = await api.put<PromptVersion>(path, {
        text,
        base_sha256: prompt.data.sha256 ?? undefined,
        message,
      });
      setResult({ kind: "ok", text: `${t("saved")} ${saved.ref}` });
      setMessage("");
      prompt.reload();
      versions.reload();
      list.reload();
    } catch (error) {
      const status = error instanceof ApiError ? ` (${error.status})` : "";
      setResult({ kind: "refused", text: `${serverText(t, lang, error instanceof Error ? error.message : String(error))}${status}` });
      void runCheck();
    } finally {
      setBusy(false);
    }
  };

  const rollback = async (version: PromptVersion) => {
    setBusy(true);
    try {
      const saved = await api.post<PromptVersion>(`${path}/rollback`, { version_id: version.id, message: "rollback from the viewer" });
      setResult({ kind: "ok", text: `${t("saved")} ${saved.ref}` });
      prompt.reload();
      versions.reload();
    } catch (error) {
      setResult({ kind: "refused", text: error instanceof Error ? error.message : String(error) });
    } finally {
      setBusy(false);
    }
  };

  const startReplay = async () => {
    if (!current || !replayRun.trim()) return;
    setReplaying(true);
    setReplay(null);
    setReplayError(null);
    try {
      const body: Record<string, unknown> = edited ? { prompts: { [current]: text } } : {};
      if (groqModel.trim()) body.groq_model = groqModel.trim();
      if (ollamaModel.trim()) body.ollama_model = ollamaModel.trim();
      setReplay(await api.post<ReplayOut>(`/api/runs/${encodeURIComponent(replayRun.trim())}/replay`, body));
    } catch (error) {
      setReplayError(serverText(t, lang, error instanceof Error ? error.message : String(error)));
    } finally {
      setReplaying(false);
    }
  };

  return (
    <div className="prompts-layout">
      <Panel title={t("prompts")}>
        <ErrorText error={list.error} />
        <ul className="prompt-list">
          {(list.data?.prompts ?? []).map((item) => (
            <li key={item.name} className={item.name === current ? "current" : ""}>
              <a href={`#/prompts/${encodeURIComponent(item.name)}${runId ? `/${encodeURIComponent(runId)}` : ""}`}>
                {item.name}
              </a>{" "}
              <span className={item.valid ? "ok small" : "bad small"}>{item.valid ? t("valid") : t("invalid")}</span>
              <div className="small muted">
                <code>{item.ref ?? "-"}</code>
              </div>
            </li>
          ))}
        </ul>
      </Panel>

      <div className="prompts-main">
        <Panel title={`${t("promptEditor")}${current ? `: ${current}` : ""}`} wide testId="prompt-editor">
          <ErrorText error={prompt.error} />
          {prompt.data && (
            <>
              <p className="small muted">
                <code>{prompt.data.ref ?? "-"}</code> — {prompt.data.description}
              </p>
              {node && current && <NodeInUseNote node={current} inUse={node} />}
              <details className="small">
                <summary>
                  {t("variables")} ({Object.keys(prompt.data.variables).length})
                </summary>
                <ul>
                  {Object.entries(prompt.data.variables).map(([variable, description]) => (
                    <li key={variable}>
                      <code>{variable}</code> — {description}
                    </li>
                  ))}
                </ul>
              </details>
              <textarea
                className="editor"
                value={text}
                onChange={(event) => {
                  setText(event.target.value);
                  setResult(null);
                  setCheck(null);
                }}
                spellCheck={false}
                data-testid="prompt-text"
              />
              <div className="row">
                <input
                  className="grow"
                  placeholder={t("message")}
                  value={message}
                  onChange={(event) => setMessage(event.target.value)}
                  maxLength={500}
                />
                <button type="button" onClick={runCheck} disabled={busy}>
                  {t("check")}
                </button>
                <button type="button" className="primary" onClick={save} disabled={busy || !edited} data-testid="prompt-save">
                  {t("saveVersion")}
                </button>
              </div>
              {result && (
                <p className={result.kind === "ok" ? "ok-box" : "error-box"} role="alert" data-testid="prompt-result">
                  {result.kind === "refused" ? `${t("refused")}: ` : ""}
                  {result.text}
                </p>
              )}
              {check && (
                <>
                  <p
                    className={check.valid ? "ok small" : "bad small"}
                    data-testid="prompt-check"
                    hidden={!check.valid && result?.kind === "refused"}
                  >
                    {check.valid ? `✓ ${t("valid")} ${check.ref ?? ""}` : `✕ ${check.error}`}
                  </p>
                  <h3>{t("diffEdit")}</h3>
                  <Diff text={check.diff} />
                </>
              )}
            </>
          )}
        </Panel>

        <Panel title={t("replayRun")} wide testId="replay">
          <div className="row">
            <label className="grow">
              {t("pickRun")}{" "}
              <input className="grow" value={replayRun} onChange={(event) => setReplayRun(event.target.value)} data-testid="replay-run" />
            </label>
            <button
              type="button"
              className="primary"
              onClick={startReplay}
              disabled={replaying || !replayTarget || replayBlock !== null}
              title={replayBlock ?? undefined}
              data-testid="replay-button"
            >
              {replaying ? t("replaying") : t("replay")}
            </button>
          </div>
          <div className="row small">
            <label>
              {t("groqModel")}{" "}
              <input value={groqModel} onChange={(event) => setGroqModel(event.target.value)} placeholder={t("sameModel")} maxLength={200} />
            </label>
            <label>
              {t("ollamaModel")}{" "}
              <input value={ollamaModel} onChange={(event) => setOllamaModel(event.target.value)} placeholder={t("sameModel")} maxLength={200} />
            </label>
            <span className="muted">{edited ? t("replayUsesEdit") : t("replayUsesSaved")}</span>
          </div>
          {replayBlock && (
            <p className="small warn" data-testid="replay-why">
              {replayBlock} {t("replayBlockedHint")}
            </p>
          )}
          {!replayBlock && node?.llm === false && current && (
            <p className="small warn" data-testid="replay-rule-based">
              {nodeNote(t, current, node)}
            </p>
          )}
          <ErrorText error={replayError} />
          {replay && (
            <div data-testid="replay-result">
              <p className={replay.changed ? "warn" : "muted"}>
                {replay.changed ? t("changed") : t("unchanged")}{" "}
                <span className="small muted">
                  fork <code>{replay.fork_id}</code> · {replay.forked_before.join(", ")}
                </span>
              </p>
              {replay.notes.length > 0 && (
                <ul className="small muted">
                  {replay.notes.map((note) => (
                    <li key={note}>{note}</li>
                  ))}
                </ul>
              )}
              <div className="side-by-side">
                <Outcome title={t("original")} outcome={replay.original} testId="replay-original" />
                <Outcome title={t("replayed")} outcome={replay.replayed} testId="replay-replayed" />
              </div>
            </div>
          )}
        </Panel>

        <Panel title={t("versions")} wide testId="prompt-versions">
          <ErrorText error={versions.error} />
          {(versions.data?.versions ?? []).map((version, index) => (
            <details key={version.id} className="version" open={index === 0 && version.previous_sha256 !== null}>
              <summary>
                <code>{version.ref}</code> <span className="muted small">{kst(version.created_at, lang)} · {version.created_by}</span>{" "}
                {version.message && <span className="small">— {version.message}</span>}
              </summary>
              <h4>{t("diffPrevious")}</h4>
              <Diff text={version.diff} />
              {index > 0 && (
                <button type="button" onClick={() => rollback(version)} disabled={busy}>
                  {t("rollback")}
                </button>
              )}
            </details>
          ))}
        </Panel>
      </div>
    </div>
  );
}

/** Why replaying `run` cannot change anything, or null when it can (an LLM reviewed it). */
function replayBlocker(t: (key: LabelKey) => string, run: RunDetail | null, missing: boolean, info: Info | null): string | null {
  if (missing) return t("replayNotLoaded");
  if (!run) return null;
  const reviewers = info?.reviewers;
  // A fork runs with the reviewers configured now: none an LLM, no edit can change it (the
  // server refuses such a replay too).
  if (reviewers && Object.values(reviewers).every((reviewer) => reviewer.kind !== "llm")) {
    const signal = run.nodes?.ml_signal as { proposal?: { action?: string } } | undefined;
    if ((signal?.proposal?.action ?? "hold") === "hold") return t("replayNoProposal");
    return fill(t("replayNoLlm"), { settings: Object.values(reviewers).map((reviewer) => reviewer.setting).join(", ") });
  }
  if (llmRan(run.reviewer_labels)) return null;
  const signal = run.nodes?.ml_signal as { proposal?: { action?: string } } | undefined;
  if ((signal?.proposal?.action ?? "hold") === "hold") return t("replayNoProposal");
  return fill(t("replayNoLlm"), { settings: "LXA_GROQ_API_KEY, LXA_OLLAMA_HOST" });
}

/** The node as the engine is configured now (GET /api/info), or undefined without an engine. */
function configuredNode(info: Info | null, name: string): NodeInUse | undefined {
  const reviewer = info?.reviewers?.[name];
  if (!reviewer) return undefined;
  return { reviewer: reviewer.label, llm: reviewer.kind === "llm", run_id: null, bar_ts: null, setting: reviewer.setting, configured: true };
}

/** What answers this prompt's node, in words: an LLM, a rule-based stand-in, or not known. */
function nodeNote(t: (key: LabelKey) => string, name: string, node: ReviewersInUse["nodes"][string]): string {
  if (node.configured && node.llm) return fill(t("configuredLlmPrompt"), { node: name, reviewer: node.reviewer ?? "-" });
  if (node.configured) return fill(t("configuredRuleBasedPrompt"), { node: name, setting: node.setting });
  if (node.llm === true) return fill(t("llmPrompt"), { node: name, reviewer: node.reviewer ?? "-" });
  if (node.llm === false) {
    return fill(t("ruleBasedPrompt"), { node: name, reviewer: node.reviewer ?? "-", run: node.run_id ?? "-", setting: node.setting });
  }
  return fill(t("notAskedPrompt"), { node: name, setting: node.setting });
}

function NodeInUseNote({ node, inUse }: { node: string; inUse: ReviewersInUse["nodes"][string] }) {
  const { t } = useLang();
  const kind = inUse.llm === true ? "llm" : inUse.llm === false ? "rule-based" : "unknown";
  return (
    <p className={`small ${inUse.llm === true ? "ok-box" : "warn"}`} data-testid="prompt-reviewer" data-reviewer-kind={kind}>
      {nodeNote(t, node, inUse)}
    </p>
  );
}

function Outcome({ title, outcome, testId }: { title: string; outcome: ReplayOutcome; testId: string }) {
  const { t, lang } = useLang();
  return (
    <div className="outcome" data-testid={testId}>
      <h3>{title}</h3>
      <p className="big">
        <ActionLabel action={outcome.action} /> {outcome.market ?? ""} <span className="muted">— {reasonLabel(t, outcome.reason)}</span>
      </p>
      <p className="small">
        {outcome.would_trade ? t("wouldTrade") : t("wouldNotTrade")}
        {outcome.order && outcome.order.requested_krw ? ` · ${num(outcome.order.requested_krw, 0)} KRW` : ""}
        {outcome.sizing?.investment_ratio !== undefined ? ` · ${t("ratio")} ${pct(outcome.sizing.investment_ratio)}` : ""}
      </p>
      {(["groq", "ollama"] as const).map((key) =>
        outcome[key] ? (
          <div key={key} className="verdict">
            <strong>{key}</strong> <span className="muted small">{outcome[key]?.reviewer}</span>:{" "}
            <ActionLabel action={outcome[key]?.verdict} />
            <div className="reasoning">{outcome[key]?.error ?? reasoningText(t, lang, outcome[key]?.reasoning)}</div>
          </div>
        ) : null,
      )}
      <p className="small muted">
        {Object.entries(outcome.prompt_refs)
          .filter(([, ref]) => ref)
          .map(([node, ref]) => `${node}: ${ref}`)
          .join(" · ")}
      </p>
      {outcome.run_id && !outcome.run_id.includes("fork") && (
        <a className="small" href={runHref(outcome.run_id)}>
          {outcome.run_id}
        </a>
      )}
    </div>
  );
}
