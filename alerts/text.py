"""Alerts as plain text for people: a bilingual headline, the details, the time in KST."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from alerts.types import KIND_LABELS, Alert, kind_label

KST = timezone(timedelta(hours=9), "KST")


def kst_stamp(ts: datetime) -> str:
    """Show a time in KST, to the second."""
    return ts.astimezone(KST).strftime("%Y-%m-%d %H:%M:%S KST")


def headline(alert: Alert) -> str:
    """Return the icon, the bilingual kind label and the market of an alert."""
    icon = KIND_LABELS[alert.kind][2]
    market = f" {alert.market}" if alert.market else ""
    return f"{icon} [{kind_label(alert.kind)}]{market}"


def format_text(alert: Alert) -> str:
    """Format an alert as a compact plain-text message (times shown in KST)."""
    lines = [headline(alert)]
    if alert.title:
        lines.append(alert.title)
    if alert.text:
        lines.append(alert.text)
    if alert.fields:
        lines.append(" · ".join(f"{key}: {value}" for key, value in alert.fields.items()))
    lines.append(kst_stamp(alert.ts))
    return "\n".join(lines)


def truncate(text: str, limit: int) -> str:
    """Cut `text` to `limit` characters, ending with an ellipsis when it was longer."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
