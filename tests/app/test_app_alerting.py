"""Alerting from settings: only the configured notifiers are built, half a config is refused."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from app.alerting import build_notifiers

TOKEN = "123456789:AAH-secret-token_value"


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0) as http:
        yield http


async def test_build_notifiers_returns_only_configured_ones(client: httpx.AsyncClient) -> None:
    none = build_notifiers(
        slack_webhook_url=None,
        telegram_bot_token=None,
        telegram_chat_id=None,
        telegram_api_base="https://api.telegram.org",
        client=client,
    )
    both = build_notifiers(
        slack_webhook_url="https://hooks.slack.com/services/T/B/X",
        telegram_bot_token=TOKEN,
        telegram_chat_id="42",
        telegram_api_base="https://api.telegram.org",
        client=client,
    )

    assert none == []
    assert [n.name for n in both] == ["slack", "telegram"]


@pytest.mark.parametrize(
    ("token", "chat_id", "missing"),
    [(TOKEN, None, "LXA_TELEGRAM_CHAT_ID"), (None, "42", "LXA_TELEGRAM_BOT_TOKEN")],
)
async def test_build_notifiers_with_half_a_telegram_config_names_the_missing_variable(
    client: httpx.AsyncClient, token: str | None, chat_id: str | None, missing: str
) -> None:
    with pytest.raises(ValueError, match=f"{missing} is not set") as caught:
        build_notifiers(
            slack_webhook_url=None,
            telegram_bot_token=token,
            telegram_chat_id=chat_id,
            telegram_api_base="https://api.telegram.org",
            client=client,
        )

    assert TOKEN not in str(caught.value)
