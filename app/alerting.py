"""Alerting from settings: which notifiers run, and the dispatcher that delivers to them."""

from __future__ import annotations

import httpx
from pydantic import SecretStr

from alerts.dispatcher import AlertDispatcher
from alerts.slack import SlackNotifier
from alerts.telegram import TelegramNotifier
from alerts.types import Notifier
from app.settings import Settings


def build_notifiers(
    *,
    slack_webhook_url: str | None,
    telegram_bot_token: str | None,
    telegram_chat_id: str | None,
    telegram_api_base: str,
    client: httpx.AsyncClient,
) -> list[Notifier]:
    """Build the configured notifiers; empty values count as not configured."""
    notifiers: list[Notifier] = []
    if slack_webhook_url:
        notifiers.append(SlackNotifier(slack_webhook_url, client=client))
    if bool(telegram_bot_token) != bool(telegram_chat_id):
        missing = "LXA_TELEGRAM_CHAT_ID" if telegram_bot_token else "LXA_TELEGRAM_BOT_TOKEN"
        raise ValueError(
            "Telegram alerts need both LXA_TELEGRAM_BOT_TOKEN and LXA_TELEGRAM_CHAT_ID; "
            f"{missing} is not set"
        )
    if telegram_bot_token and telegram_chat_id:
        notifiers.append(
            TelegramNotifier(
                telegram_bot_token, telegram_chat_id, api_base=telegram_api_base, client=client
            )
        )
    return notifiers


async def start_alerts(
    settings: Settings,
) -> tuple[httpx.AsyncClient | None, AlertDispatcher | None]:
    """Start Slack/Telegram alerting when configured."""
    client = httpx.AsyncClient(timeout=10.0)
    notifiers = build_notifiers(
        slack_webhook_url=_secret(settings.slack_webhook_url),
        telegram_bot_token=_secret(settings.telegram_bot_token),
        telegram_chat_id=settings.telegram_chat_id,
        telegram_api_base=settings.telegram_api_base,
        client=client,
    )
    if not notifiers:
        await client.aclose()
        return None, None
    dispatcher = AlertDispatcher(notifiers)
    await dispatcher.start()
    return client, dispatcher


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None
