import type { ReactNode } from "react";
import { useLang, type LabelKey } from "../i18n";

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
  const { t } = useLang();
  if (!error) return null;
  return (
    <p className="error" role="alert">
      {t("error")}: {error}
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
