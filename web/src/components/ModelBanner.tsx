import type { ModelStatus } from "../api";
import { useGet } from "../hooks";
import { useLang, type LabelKey } from "../i18n";
import { modelVerdict } from "../serverText";
import { formatReturn, unprovenConsequence, type UnprovenConsequence } from "../riskState";
import { useStreamEvents } from "../stream";

const CONSEQUENCE: Record<UnprovenConsequence, LabelKey> = {
  blocked: "unprovenBlocked",
  overridden: "unprovenOverridden",
  paper: "unprovenPaper",
};

/** A warning while the engine trades with a model set whose policy has shown no edge. */
export function ModelBanner() {
  const { t, lang } = useLang();
  // 404 until an engine started on this journal: nothing to show then.
  const status = useGet<ModelStatus>("/api/model");
  useStreamEvents((event) => {
    if (event.type === "model_status") status.reload();
  });
  const model = status.data;
  const consequence = unprovenConsequence(model);
  if (!model || !consequence) return null;
  return (
    <div
      className={`banner ${consequence === "paper" ? "warn" : "danger"}`}
      role="alert"
      data-testid="model-warning"
      data-consequence={consequence}
    >
      <strong>⚠ {t("unprovenModel")}</strong> <code>{model.model_id ?? "?"}</code>: {modelVerdict(t, lang, model.verdict)}.{" "}
      {t(CONSEQUENCE[consequence])}
      {model.evaluation_return !== null && (
        <span className="muted">
          {" "}
          ({t("holdOutResult")}: {formatReturn(model.evaluation_return)} · {t("entries")}:{" "}
          {model.evaluation_entries ?? "-"} · {t("buyAndHold")}: {formatReturn(model.buy_and_hold_return)})
        </span>
      )}
    </div>
  );
}
