"""Telegram: alerts sent as Bot API `sendMessage` calls, the bot token masked everywhere."""

from __future__ import annotations

import httpx

from alerts.http_errors import (
    ERROR_BODY_LIMIT,
    parse_retry_after,
    retryable_status,
    transport_error,
)
from alerts.redact import REDACTOR, register_secret
from alerts.text import format_text, truncate
from alerts.types import Alert, NotifierError

TELEGRAM_MAX_TEXT = 4096


def mask_token(token: str) -> str:
    """Mask a Telegram bot token, keeping the bot id before the colon."""
    bot_id, sep, _secret = token.partition(":")
    return f"{bot_id}:***" if sep and bot_id.isdigit() else "***"


class TelegramNotifier:
    """Sends alerts as Telegram Bot API `sendMessage` calls (plain text, no parse mode)."""

    name = "telegram"

    def __init__(
        self,
        bot_token: str,
        chat_id: str,
        *,
        api_base: str = "https://api.telegram.org",
        client: httpx.AsyncClient,
    ) -> None:
        if not bot_token:
            raise ValueError("telegram bot_token is empty (LXA_TELEGRAM_BOT_TOKEN)")
        if not chat_id:
            raise ValueError("telegram chat_id is empty (LXA_TELEGRAM_CHAT_ID)")
        self._url = f"{api_base.rstrip('/')}/bot{bot_token}/sendMessage"
        self.chat_id = chat_id
        self._client = client
        self._masked_token = mask_token(bot_token)
        register_secret(bot_token, self._masked_token)

    def __repr__(self) -> str:
        return f"TelegramNotifier(bot_token={self._masked_token!r}, chat_id={self.chat_id!r})"

    async def send(self, alert: Alert) -> None:
        payload = {
            "chat_id": self.chat_id,
            "text": truncate(format_text(alert), TELEGRAM_MAX_TEXT),
            "disable_web_page_preview": True,
        }
        try:
            response = await self._client.post(self._url, json=payload)
        except httpx.HTTPError as exc:
            raise transport_error(self.name, exc) from None
        status = response.status_code
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if isinstance(answer, dict) and answer.get("ok") is True and response.is_success:
            return
        if not isinstance(answer, dict):
            body = REDACTOR.redact(response.text[:ERROR_BODY_LIMIT])
            raise NotifierError(
                self.name,
                f"sendMessage answered HTTP {status} without Bot API JSON: {body}",
                status=status,
                body=body,
                retry_after=parse_retry_after(response.headers.get("retry-after")),
                retryable=retryable_status(status),
            )
        error_code = answer.get("error_code")
        code = error_code if isinstance(error_code, int) else status
        description = REDACTOR.redact(str(answer.get("description", "no description")))
        parameters = answer.get("parameters")
        retry_after: float | None = None
        if isinstance(parameters, dict) and isinstance(parameters.get("retry_after"), int | float):
            retry_after = float(parameters["retry_after"])
        raise NotifierError(
            self.name,
            f"sendMessage failed with error {code}: {description}",
            status=code,
            body=description,
            retry_after=retry_after,
            retryable=retryable_status(code) or retry_after is not None,
        )
