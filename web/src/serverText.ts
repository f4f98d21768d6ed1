// The server's words (errors, the model's verdict, why entries are barred) in the viewer's
// language. The API answers in English; known messages are matched here and translated, with
// the names and numbers they carry. An unknown message is shown as the server wrote it.
import { detectorLabel, fill, kst, type LabelKey, type Lang } from "./i18n";

type T = (key: LabelKey) => string;

const SERVER: [RegExp, LabelKey][] = [
  [/^no API token is configured/, "srv_tokenNotSet"],
  [/^missing bearer token/, "srv_tokenMissing"],
  [/^wrong bearer token/, "srv_tokenWrong"],
  [/^run (\S+) not found$/, "srv_runNotFound"],
  [/^prompt '([^']+)' not found/, "srv_promptNotFound"],
  [/^prompt '[^']+' changed since the edit began/, "srv_promptChanged"],
  [/^no engine here/, "srv_noEngine"],
  [/^no bar has closed yet/, "srv_nothingYet"],
  [/^market \S+ is not traded here/, "srv_notTraded"],
  [/has no checkpoint after ml_signal to fork from/, "srv_noCheckpoint"],
  [/^the fork failed/, "srv_forkFailed"],
  [/is not configured \(LXA_[A-Z_]+\): no model to swap$/, "srv_notConfigured"],
  [/^Failed to fetch$|^NetworkError|^Load failed$/, "srv_network"],
];

/** A server message in the viewer's language (Korean: known ones translated, with details). */
export function serverText(t: T, lang: Lang, message: string | null | undefined): string {
  if (!message) return "";
  if (lang === "en") return message;
  for (const [pattern, key] of SERVER) {
    const found = pattern.exec(message);
    if (!found) continue;
    const text = fill(t(key), { id: found[1] ?? "", name: found[1] ?? "" });
    // A fork that failed keeps the reason (names of exceptions, not words to translate).
    return key === "srv_forkFailed" ? `${text} (${message.replace(/^the fork failed:\s*/, "")})` : text;
  }
  // A prompt the loader refused: "<file>:<line>: <reason>"; the reason names the variable.
  if (/^[\w.-]+\.md(:\d+)?: /.test(message)) return `${t("srv_promptInvalid")} ${message}`;
  return message;
}

/** The model's verdict (policy/evidence.py) in the viewer's language. */
export function modelVerdict(t: T, lang: Lang, verdict: string | null | undefined): string {
  if (!verdict) return "";
  if (lang === "en") return verdict;
  if (verdict.startsWith("the model set carries no out-of-sample")) return t("mv_noEvaluation");
  if (verdict.startsWith("the model set's out-of-sample policy result is unreadable")) return t("mv_unreadable");
  if (verdict.startsWith("its policy made no trade")) return t("mv_noTrade");
  const lost = /^its policy lost (\S+%) after fees/.exec(verdict);
  if (lost) return fill(t("mv_lost"), { pct: lost[1] });
  const made = /^its policy made (\S+%) after fees/.exec(verdict);
  if (made) return fill(t("mv_made"), { pct: made[1] });
  return verdict;
}

/** Why entries into a market are barred (app/engine/control.py), in the viewer's language. */
export function blockedText(t: T, lang: Lang, why: string | null | undefined): string {
  if (!why) return t("blockedWhy");
  const cooldown = /^cooldown after (\S+) until (\S+)$/.exec(why);
  if (cooldown) return fill(t("cooldownAfter"), { detector: detectorLabel(t, cooldown[1]), until: kst(cooldown[2], lang) });
  if (why === "exchange unreachable") return t("det_network");
  if (why.startsWith("trading halted")) return `${t("halted")} (${why.replace(/^trading halted:\s*/, "")})`;
  if (why.startsWith("trading reducing")) return `${t("reducing")} (${why.replace(/^trading reducing:\s*/, "")})`;
  if (why.startsWith("unproven model")) return t("state_unproven_model_blocked");
  return why;
}

/** The market a blocked run names and why its entry was barred, from the run's proposal. */
export function blockedOf(detail: {
  market?: string | null;
  nodes?: Record<string, unknown>;
  events?: { type: string; payload: Record<string, unknown> | null }[];
}): { market: string | null; why: string | null } {
  const market = detail.market ?? null;
  for (const event of detail.events ?? []) {
    const blocked = event.payload?.blocked;
    if (event.type === "proposal" && blocked && typeof blocked === "object" && market) {
      const why = (blocked as Record<string, unknown>)[market];
      if (typeof why === "string") return { market, why };
    }
  }
  const policy = ((detail.nodes?.ml_signal as Record<string, unknown> | undefined)?.proposal as Record<string, unknown> | undefined)
    ?.policy as Record<string, unknown> | undefined;
  const explanation = typeof policy?.reason === "string" ? policy.reason : null;
  const barred = explanation ? /entries are barred: (.+)$/.exec(explanation) : null;
  return { market, why: barred ? barred[1] : null };
}
