"""Alerts: formatting, the Slack and Telegram notifiers against a recording server, dispatching."""

from __future__ import annotations

import asyncio
import inspect
import logging
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import httpx
import pytest
from alert_server import AlertServer, Reply, telegram_error

from alerts.dispatcher import AlertDispatcher
from alerts.slack import SlackNotifier
from alerts.telegram import TelegramNotifier
from alerts.text import format_text
from alerts.types import Alert, NotifierError

SLACK_PATH = "/services/T000/B000/slack-secret-XYZ"
TOKEN = "123456789:AAH-secret-token_value"
TELEGRAM_PATH = f"/bot{TOKEN}/sendMessage"
TS = datetime(2025, 9, 20, 4, 30, tzinfo=UTC)  # 13:30 KST


def make_alert(kind: str = "fill", title: str = "Bought KRW-BTC", **kwargs: object) -> Alert:
    values: dict[str, object] = {"text": "0.001 BTC at 95,000,000 KRW", "ts": TS}
    values.update(kwargs)
    return Alert(kind=kind, title=title, **values)  # type: ignore[arg-type]


class RecordingSleep:
    """An injected `sleep` that records the delays and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


class MemoryNotifier:
    """An in-process notifier; `gate` (when given) holds every send until it is set."""

    def __init__(self, name: str = "memory", gate: asyncio.Event | None = None) -> None:
        self.name = name
        self.gate = gate
        self.received: list[Alert] = []

    async def send(self, alert: Alert) -> None:
        if self.gate is not None:
            await self.gate.wait()
        self.received.append(alert)


@pytest.fixture(scope="module")
def shared_server() -> Iterator[AlertServer]:
    with AlertServer() as server:
        yield server


@pytest.fixture
def server(shared_server: AlertServer) -> AlertServer:
    shared_server.reset()
    return shared_server


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0) as http:
        yield http


@pytest.fixture
def slack(server: AlertServer, client: httpx.AsyncClient) -> SlackNotifier:
    return SlackNotifier(server.url(SLACK_PATH), client=client)


@pytest.fixture
def telegram(server: AlertServer, client: httpx.AsyncClient) -> TelegramNotifier:
    return TelegramNotifier(TOKEN, "-100200300", api_base=server.base_url, client=client)


# --------------------------------------------------------------------------------------------
# Alert and formatting
# --------------------------------------------------------------------------------------------


def test_format_text_has_bilingual_label_market_fields_and_kst_time() -> None:
    alert = make_alert("emergency_sell", "Stop loss hit", market="KRW-BTC", fields={"pnl": "-3.1%"})

    text = format_text(alert)

    assert "EMERGENCY SELL / 긴급 매도" in text
    assert "KRW-BTC" in text
    assert "Stop loss hit" in text
    assert "pnl: -3.1%" in text
    assert "2025-09-20 13:30:00 KST" in text


def test_alert_with_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match=r"Alert\.ts"):
        make_alert(ts=datetime(2025, 9, 20, 4, 30))


def test_alert_with_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match=r"Alert\.kind"):
        make_alert("liquidation")


# --------------------------------------------------------------------------------------------
# Slack
# --------------------------------------------------------------------------------------------


async def test_slack_posts_text_and_blocks_to_the_webhook(
    server: AlertServer, slack: SlackNotifier
) -> None:
    alert = make_alert(market="KRW-BTC", fields={"price": "95,000,000", "fee": "<47 KRW>"})

    await slack.send(alert)

    [post] = server.posts(SLACK_PATH)
    assert post.headers["content-type"] == "application/json"
    assert post.json["text"] == format_text(alert)
    blocks = post.json["blocks"]
    assert [block["type"] for block in blocks] == ["header", "section", "section", "context"]
    assert blocks[0]["text"] == {"type": "plain_text", "text": "✅ FILL / 체결 · KRW-BTC"}
    assert blocks[1]["text"]["type"] == "mrkdwn"
    assert blocks[1]["text"]["text"].startswith("*Bought KRW-BTC*\n")
    assert [f["text"] for f in blocks[2]["fields"]] == [
        "*price*\n95,000,000",
        "*fee*\n&lt;47 KRW&gt;",
    ]
    assert blocks[3]["elements"][0]["text"] == "2025-09-20 13:30:00 KST"


async def test_slack_error_carries_status_and_body_but_not_the_webhook_url(
    server: AlertServer, slack: SlackNotifier
) -> None:
    server.script(SLACK_PATH, Reply(404, "channel_not_found"))

    with pytest.raises(NotifierError) as caught:
        await slack.send(make_alert())

    error = caught.value
    assert (error.status, error.body, error.retryable) == (404, "channel_not_found", False)
    assert "slack-secret-XYZ" not in str(error)
    assert "404" in str(error)


async def test_slack_429_carries_retry_after(server: AlertServer, slack: SlackNotifier) -> None:
    server.script(SLACK_PATH, Reply(429, "rate_limited", headers={"Retry-After": "3"}))

    with pytest.raises(NotifierError) as caught:
        await slack.send(make_alert())

    assert (caught.value.status, caught.value.retry_after) == (429, 3.0)
    assert caught.value.retryable


# --------------------------------------------------------------------------------------------
# Telegram
# --------------------------------------------------------------------------------------------


async def test_telegram_posts_send_message_under_the_bot_token_path(
    server: AlertServer, telegram: TelegramNotifier
) -> None:
    alert = make_alert("halt", "Daily loss limit reached")

    await telegram.send(alert)

    [post] = server.posts()
    assert post.path == TELEGRAM_PATH
    assert post.json == {
        "chat_id": "-100200300",
        "text": format_text(alert),
        "disable_web_page_preview": True,
    }


async def test_telegram_ok_false_raises_with_retry_after_and_masked_token(
    server: AlertServer, telegram: TelegramNotifier
) -> None:
    server.script(
        TELEGRAM_PATH,
        telegram_error(429, "Too Many Requests: retry after 3", retry_after=3),
    )

    with pytest.raises(NotifierError) as caught:
        await telegram.send(make_alert())

    error = caught.value
    assert (error.status, error.retry_after, error.retryable) == (429, 3.0, True)
    assert "Too Many Requests" in str(error)
    assert TOKEN not in str(error) and TOKEN not in repr(telegram)


async def test_telegram_ok_false_on_http_200_is_a_failure(
    server: AlertServer, telegram: TelegramNotifier
) -> None:
    server.script(TELEGRAM_PATH, Reply(200, {"ok": False, "description": "chat not found"}))

    with pytest.raises(NotifierError, match="chat not found"):
        await telegram.send(make_alert())


async def test_telegram_connection_error_and_http_log_never_show_the_token(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    notifier = TelegramNotifier(
        TOKEN, "42", api_base=f"http://127.0.0.1:{closed_port}", client=client
    )
    caplog.set_level(logging.DEBUG)

    with pytest.raises(NotifierError) as caught:
        await notifier.send(make_alert())

    assert "request failed" in str(caught.value)
    assert caught.value.__cause__ is None
    assert TOKEN not in str(caught.value)
    assert caplog.records, "httpx/httpcore should have logged the attempt"
    assert TOKEN not in caplog.text


async def test_http_client_request_log_masks_the_token(
    server: AlertServer, telegram: TelegramNotifier, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="httpx")

    await telegram.send(make_alert())

    assert "HTTP Request: POST" in caplog.text
    assert "123456789:***" in caplog.text
    assert TOKEN not in caplog.text


# --------------------------------------------------------------------------------------------
# Dispatcher: retries
# --------------------------------------------------------------------------------------------


async def test_dispatcher_retries_a_500_with_backoff_then_succeeds(
    server: AlertServer, slack: SlackNotifier
) -> None:
    server.script(SLACK_PATH, Reply(500, "rollup_error"))
    sleep = RecordingSleep()

    async with AlertDispatcher([slack], backoff_s=1.0, sleep=sleep) as dispatcher:
        dispatcher.publish(make_alert())
        await dispatcher.drain()

    assert len(server.posts(SLACK_PATH)) == 2
    assert sleep.delays == [1.0]
    assert (dispatcher.sent, dispatcher.failed, dispatcher.retried) == (1, 0, 1)


async def test_dispatcher_honours_slack_retry_after_header(
    server: AlertServer, slack: SlackNotifier
) -> None:
    server.script(SLACK_PATH, Reply(429, "rate_limited", headers={"Retry-After": "3"}))
    sleep = RecordingSleep()

    async with AlertDispatcher([slack], backoff_s=1.0, sleep=sleep) as dispatcher:
        dispatcher.publish(make_alert())
        await dispatcher.drain()

    assert sleep.delays == [3.0]
    assert dispatcher.sent == 1 and len(server.posts(SLACK_PATH)) == 2


async def test_dispatcher_honours_telegram_retry_after_parameter(
    server: AlertServer, telegram: TelegramNotifier
) -> None:
    server.script(TELEGRAM_PATH, telegram_error(429, "Too Many Requests", retry_after=7))
    sleep = RecordingSleep()

    async with AlertDispatcher([telegram], backoff_s=1.0, sleep=sleep) as dispatcher:
        dispatcher.publish(make_alert())
        await dispatcher.drain()

    assert sleep.delays == [7.0]
    assert dispatcher.sent == 1 and len(server.posts(TELEGRAM_PATH)) == 2


async def test_dispatcher_gives_up_when_retry_after_exceeds_max_backoff(
    server: AlertServer, slack: SlackNotifier
) -> None:
    server.script(SLACK_PATH, Reply(429, "rate_limited", headers={"Retry-After": "600"}))
    sleep = RecordingSleep()

    async with AlertDispatcher([slack], max_backoff_s=30.0, sleep=sleep) as dispatcher:
        dispatcher.publish(make_alert())
        await dispatcher.drain()

    assert sleep.delays == []
    assert (dispatcher.sent, dispatcher.failed) == (0, 1)


async def test_dispatcher_does_not_retry_a_permanent_4xx(
    server: AlertServer, slack: SlackNotifier
) -> None:
    server.always(SLACK_PATH, Reply(403, "invalid_token"))
    sleep = RecordingSleep()

    async with AlertDispatcher([slack], sleep=sleep) as dispatcher:
        dispatcher.publish(make_alert())
        await dispatcher.drain()

    assert len(server.posts(SLACK_PATH)) == 1
    assert (dispatcher.failed, sleep.delays) == (1, [])


async def test_failing_notifier_is_logged_and_counted_while_the_other_still_delivers(
    server: AlertServer,
    slack: SlackNotifier,
    telegram: TelegramNotifier,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server.always(TELEGRAM_PATH, telegram_error(502, "Bad Gateway"))
    sleep = RecordingSleep()
    caplog.set_level(logging.WARNING, logger="alerts.dispatcher")

    async with AlertDispatcher(
        [telegram, slack], retries=3, backoff_s=1.0, max_backoff_s=3.0, sleep=sleep
    ) as dispatcher:
        dispatcher.publish(make_alert("error", "Exchange unreachable"))
        await dispatcher.drain()

    assert len(server.posts(SLACK_PATH)) == 1
    assert len(server.posts(TELEGRAM_PATH)) == 4
    assert sleep.delays == [1.0, 2.0, 3.0]
    assert (dispatcher.sent, dispatcher.failed) == (1, 1)
    [warning] = [r for r in caplog.records if r.name == "alerts.dispatcher"]
    assert "telegram" in warning.getMessage() and "after 4 attempt(s)" in warning.getMessage()
    assert TOKEN not in caplog.text


async def test_notifier_raising_any_exception_does_not_end_the_dispatcher(
    server: AlertServer, slack: SlackNotifier
) -> None:
    class Broken:
        name = "broken"

        async def send(self, alert: Alert) -> None:
            raise RuntimeError("boom")

    sleep = RecordingSleep()

    async with AlertDispatcher([Broken(), slack], retries=1, sleep=sleep) as dispatcher:
        dispatcher.publish(make_alert(title="first"))
        dispatcher.publish(make_alert(title="second"))
        await dispatcher.drain()
        still_running = dispatcher.running

    assert still_running
    assert [p.json["blocks"][1]["text"]["text"][:8] for p in server.posts(SLACK_PATH)] == [
        "*first*\n",
        "*second*",
    ]
    assert (dispatcher.sent, dispatcher.failed) == (2, 2)


# --------------------------------------------------------------------------------------------
# Dispatcher: queueing and lifecycle
# --------------------------------------------------------------------------------------------


def test_publish_is_synchronous_and_returns_a_bool() -> None:
    dispatcher = AlertDispatcher([])

    queued = dispatcher.publish(make_alert())

    assert not inspect.iscoroutinefunction(AlertDispatcher.publish)
    assert queued is True and dispatcher.pending == 1


async def test_publish_returns_at_once_while_a_send_is_stuck() -> None:
    gate = asyncio.Event()
    stuck = MemoryNotifier(gate=gate)
    dispatcher = AlertDispatcher([stuck], max_queue=10)
    await dispatcher.start()
    dispatcher.publish(make_alert(title="in flight"))
    await asyncio.sleep(0)  # let the task pick it up and block on the gate

    results = [dispatcher.publish(make_alert(title=f"n{i}")) for i in range(50)]

    assert results.count(True) == 50
    assert dispatcher.pending == 10 and dispatcher.dropped == 40
    gate.set()
    await dispatcher.stop()
    assert len(stuck.received) == 11


def test_full_queue_drops_the_oldest_non_emergency_alert() -> None:
    dispatcher = AlertDispatcher([], max_queue=3)
    for alert in (
        make_alert("emergency_sell", "e1"),
        make_alert("fill", "f1"),
        make_alert("halt", "h1"),
    ):
        dispatcher.publish(alert)

    queued = dispatcher.publish(make_alert("daily_summary", "d1"))

    assert queued is True
    assert [a.title for a in dispatcher.queued()] == ["e1", "h1", "d1"]
    assert dispatcher.dropped == 1


def test_full_queue_of_emergencies_drops_the_new_alert() -> None:
    dispatcher = AlertDispatcher([], max_queue=2)
    dispatcher.publish(make_alert("emergency_sell", "e1"))
    dispatcher.publish(make_alert("emergency_sell", "e2"))

    queued_fill = dispatcher.publish(make_alert("fill", "f1"))
    queued_emergency = dispatcher.publish(make_alert("emergency_sell", "e3"))

    assert (queued_fill, queued_emergency) == (False, False)
    assert [a.title for a in dispatcher.queued()] == ["e1", "e2"]
    assert dispatcher.dropped == 2


async def test_stop_drains_alerts_published_before_start(server: AlertServer) -> None:
    async with httpx.AsyncClient(timeout=5.0) as http:
        slack = SlackNotifier(server.url(SLACK_PATH), client=http)
        dispatcher = AlertDispatcher([slack])
        for title in ("one", "two", "three"):
            dispatcher.publish(make_alert(title=title))

        await dispatcher.start()
        await dispatcher.stop()

    texts = [p.json["blocks"][1]["text"]["text"] for p in server.posts(SLACK_PATH)]
    assert [t.split("\n")[0] for t in texts] == ["*one*", "*two*", "*three*"]
    assert dispatcher.pending == 0 and not dispatcher.running
    assert dispatcher.publish(make_alert()) is False


async def test_stop_gives_up_after_the_drain_timeout(caplog: pytest.LogCaptureFixture) -> None:
    stuck = MemoryNotifier(gate=asyncio.Event())
    dispatcher = AlertDispatcher([stuck])
    await dispatcher.start()
    dispatcher.publish(make_alert())
    caplog.set_level(logging.WARNING, logger="alerts.dispatcher")

    await dispatcher.stop(drain_timeout_s=0.05)

    assert not dispatcher.running
    assert "1 alert(s) undelivered" in caplog.text


async def test_drain_before_start_with_queued_alerts_raises() -> None:
    dispatcher = AlertDispatcher([MemoryNotifier()])
    dispatcher.publish(make_alert())

    with pytest.raises(RuntimeError, match="start"):
        await dispatcher.drain()


async def test_publish_from_another_thread_is_delivered() -> None:
    memory = MemoryNotifier()
    async with AlertDispatcher([memory]) as dispatcher:
        await asyncio.sleep(0)  # the task is now waiting for work
        thread = threading.Thread(target=dispatcher.publish, args=(make_alert(title="t"),))
        thread.start()
        await asyncio.to_thread(thread.join)
        await dispatcher.drain()

    assert [a.title for a in memory.received] == ["t"]
