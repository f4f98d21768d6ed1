import type { ReactNode } from "react";
import { useLang, type LabelKey } from "../i18n";
import { serverText } from "../serverText";

/** An action (buy / sell / hold) in its colour and the current language. */
export function ActionLabel({ action }: { action: string | null | undefined }) {
  const { t } = useLang();
  const name = action ?? "hold";
  const known = name === "buy" || name === "sell" || name === "hold";
  return <span className={`action ${name}`}>{known ? t(name as LabelKey) : name}</span>;
}

export function Panel({
  title,
  children,
  wide = false,
  testId,
  extra,
}: {
  title: string;
  children: ReactNode;
  wide?: boolean;
  testId?: string;
  extra?: ReactNode;
}) {
  return (
    <section className={`panel${wide ? " wide" : ""}`} data-testid={testId}>
      <h2>
        <span>{title}</span>
        {extra}
      </h2>
      {children}
    </section>
  );
}

export function Json({ value }: { value: unknown }) {
  if (value === undefined || value === null) return <span className="muted">-</span>;
  return <pre className="json">{JSON.stringify(value, null, 2)}</pre>;
}

export function ErrorText({ error }: { error: string | null }) {
  const { t, lang } = useLang();
  if (!error) return null;
  return (
    <p className="error" role="alert">
      {t("error")}: {serverText(t, lang, error)}
    </p>
  );
}

export function pct(value: unknown, digits = 1): string {
  return typeof value === "number" ? `${(value * 100).toFixed(digits)}%` : "-";
}

export function num(value: unknown, digits = 2): string {
  const parsed = typeof value === "string" ? Number(value) : value;
  return typeof parsed === "number" && Number.isFinite(parsed)
    ? parsed.toLocaleString(undefined, { maximumFractionDigits: digits })
    : "-";
}

/** KRW rounded to the won, grouped: "1,234,567". */
export function krw(value: unknown): string {
  const parsed = typeof value === "string" ? Number(value) : value;
  if (typeof parsed !== "number" || !Number.isFinite(parsed)) return "-";
  return Math.round(parsed).toLocaleString("en-US");
}

/** Signed KRW: "+1,234" / "-1,234" / "0". */
export function signedKrw(value: unknown): string {
  const parsed = typeof value === "string" ? Number(value) : value;
  if (typeof parsed !== "number" || !Number.isFinite(parsed)) return "-";
  const rounded = Math.round(parsed);
  return `${rounded > 0 ? "+" : ""}${rounded.toLocaleString("en-US")}`;
}

/** A percentage (already in %) with its sign: "+1.23%". */
export function signedPct(value: number | null | undefined, digits = 2): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return "-";
  const shown = Number(value.toFixed(digits));
  return `${shown > 0 ? "+" : ""}${shown.toFixed(digits)}%`;
}

/** The colour class of a signed amount. */
export function signClass(value: unknown): string {
  const parsed = typeof value === "string" ? Number(value) : value;
  if (typeof parsed !== "number" || !Number.isFinite(parsed) || parsed === 0) return "";
  return parsed > 0 ? "ok" : "bad";
}
