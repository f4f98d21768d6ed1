"""Slack: alerts posted to an incoming webhook as Block Kit messages."""

from __future__ import annotations

from typing import Any

import httpx

from alerts.http_errors import (
    ERROR_BODY_LIMIT,
    parse_retry_after,
    retryable_status,
    transport_error,
)
from alerts.redact import REDACTOR, register_secret
from alerts.text import format_text, kst_stamp, truncate
from alerts.types import KIND_LABELS, Alert, NotifierError

SLACK_MAX_HEADER = 150
SLACK_MAX_SECTION = 3000
SLACK_MAX_FIELD = 2000
SLACK_FIELDS_PER_SECTION = 10
SLACK_MAX_TEXT = 4000


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(alert: Alert) -> dict[str, Any]:
    """Build the Slack incoming-webhook JSON: fallback `text` plus Block Kit `blocks`."""
    english, korean, icon = KIND_LABELS[alert.kind]
    header = f"{icon} {english} / {korean}" + (f" · {alert.market}" if alert.market else "")
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": truncate(header, SLACK_MAX_HEADER)},
        }
    ]
    body = "\n".join(
        part
        for part in (
            f"*{_slack_escape(alert.title)}*" if alert.title else "",
            _slack_escape(alert.text),
        )
        if part
    )
    if body:
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": truncate(body, SLACK_MAX_SECTION)},
            }
        )
    items = list(alert.fields.items())
    for start in range(0, len(items), SLACK_FIELDS_PER_SECTION):
        chunk = items[start : start + SLACK_FIELDS_PER_SECTION]
        blocks.append(
            {
                "type": "section",
                "fields": [
                    {
                        "type": "mrkdwn",
                        "text": truncate(
                            f"*{_slack_escape(key)}*\n{_slack_escape(value)}", SLACK_MAX_FIELD
                        ),
                    }
                    for key, value in chunk
                ],
            }
        )
    blocks.append(
        {"type": "context", "elements": [{"type": "mrkdwn", "text": kst_stamp(alert.ts)}]}
    )
    return {"text": truncate(format_text(alert), SLACK_MAX_TEXT), "blocks": blocks}


class SlackNotifier:
    """Posts alerts to a Slack incoming webhook (the URL itself is the secret)."""

    name = "slack"

    def __init__(self, webhook_url: str, *, client: httpx.AsyncClient) -> None:
        if not webhook_url.startswith(("https://", "http://")):
            raise ValueError("slack webhook_url must be an http(s) URL (LXA_SLACK_WEBHOOK_URL)")
        self._webhook_url = webhook_url
        self._client = client
        register_secret(webhook_url, "<slack-webhook>")

    def __repr__(self) -> str:
        return "SlackNotifier(webhook_url=<slack-webhook>)"

    async def send(self, alert: Alert) -> None:
        try:
            response = await self._client.post(self._webhook_url, json=slack_payload(alert))
        except httpx.HTTPError as exc:
            raise transport_error(self.name, exc) from None
        if response.is_success:
            return
        body = REDACTOR.redact(response.text[:ERROR_BODY_LIMIT])
        status = response.status_code
        raise NotifierError(
            self.name,
            f"webhook answered HTTP {status}: {body}",
            status=status,
            body=body,
            retry_after=parse_retry_after(response.headers.get("retry-after")),
            retryable=retryable_status(status),
        )
