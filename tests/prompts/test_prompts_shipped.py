"""The prompt files that ship in the package: valid, renderable, and saying what they must."""

from __future__ import annotations

import re
from typing import Any

import pytest

import llm.reviewers
from prompts.loader import DEFAULT_PROMPTS_DIR, PromptLibrary

# The sets the LLM reviewers render these prompts with: the files must declare exactly them.
REVIEW_VARIABLES = set(llm.reviewers.REVIEW_VARIABLES)
SIZING_VARIABLES = set(llm.reviewers.SIZING_VARIABLES)


def review_values(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "market": "KRW-BTC",
        "action": "buy",
        "entry_probability": 0.6234,
        "exit_probability": None,
        "model_id": "lgbm-20250101-000000",
        "bar_time": "2025-01-01T00:01:00+00:00",
        "features": {
            "ret_1": 0.00123456789,
            "ret_60": -0.0042,
            "volatility_60": 0.0011,
            "rsi_14": 55.2,
            "macd_hist": -1.2e-5,
            "spread_bps": float("nan"),
            "trade_intensity": None,
        },
        "recent_closes": [100_000_000.0, 100_100_000.0, 100_050_000.0],
        "position": None,
        "news": [],
        "account": {"krw": "1000000", "equity": "1000000", "positions": {}},
    }
    values.update(overrides)
    return values


def sizing_values(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "market": "KRW-ETH",
        "capital_krw": 1_234_567.8,
        "cash_krw": 1_000_000.0,
        "positions": {},
        "entry_probability": 0.66,
        "signal_strength": "strong",
        "volatility_60m": 0.0012,
        "atr_pct": 0.15,
        "bollinger_width_pct": None,
        "win_rate": 0.5,
        "recent_results": [0.012, -0.005],
        "losing_streak": 1,
        "winning_streak": 0,
        "risk_level": "medium",
        "limits": {
            "min_investment_ratio": 0.05,
            "max_investment_ratio": 1.0,
            "stop_loss_cap_pct": 3.0,
            "take_profit_cap_pct": 20.0,
        },
    }
    values.update(overrides)
    return values


@pytest.fixture
def library() -> PromptLibrary:
    return PromptLibrary(DEFAULT_PROMPTS_DIR)


def test_shipped_folder_checks_clean(library: PromptLibrary) -> None:
    problems = library.check()

    assert problems == []
    assert {"groq_check", "ollama_check", "sizing"} <= set(library.names())


def test_shipped_prompts_declare_exactly_the_agreed_variables(library: PromptLibrary) -> None:
    prompts = library.require(
        ["groq_check", "ollama_check", "sizing"],
        {
            "groq_check": REVIEW_VARIABLES,
            "ollama_check": REVIEW_VARIABLES,
            "sizing": SIZING_VARIABLES,
        },
    )

    assert set(prompts) == {"groq_check", "ollama_check", "sizing"}


@pytest.mark.parametrize("name", ["groq_check", "ollama_check"])
def test_review_prompt_renders_with_sample_values(library: PromptLibrary, name: str) -> None:
    prompt = library.get(name)

    rendered = prompt.render(review_values())

    assert re.fullmatch(rf"{name}@[0-9a-f]{{8}}", rendered.ref)
    assert "KRW-BTC" in rendered.user
    assert "62.3%" in rendered.user  # entry_probability through the pct filter
    assert "n/a" in rendered.user  # None exit probability and NaN feature
    assert "100000000" in rendered.user  # recent closes
    assert "{{" not in rendered.system + rendered.user
    assert "{%" not in rendered.system + rendered.user


@pytest.mark.parametrize("name", ["groq_check", "ollama_check"])
def test_review_prompt_states_the_answer_contract(library: PromptLibrary, name: str) -> None:
    rendered = library.get(name).render(review_values())
    text = rendered.system + rendered.user

    for field in ('"verdict"', '"confidence"', '"reasoning"', '"risks"'):
        assert field in text
    assert "JSON" in text
    assert '"hold"' in text
    assert "short selling" in text and "leverage" in text
    assert "spot" in text.lower()


@pytest.mark.parametrize("name", ["groq_check", "ollama_check"])
def test_review_prompt_says_news_is_unavailable_when_empty(
    library: PromptLibrary, name: str
) -> None:
    rendered = library.get(name).render(review_values(news=[]))

    assert "News is unavailable" in rendered.user
    assert "do not invent any" in rendered.user.lower()


@pytest.mark.parametrize("name", ["groq_check", "ollama_check"])
def test_review_prompt_lists_headlines_when_given(library: PromptLibrary, name: str) -> None:
    news = ["Bitcoin ETF inflows hit a record", {"title": "Exchange X halts withdrawals"}]

    rendered = library.get(name).render(review_values(news=news))

    assert "- Bitcoin ETF inflows hit a record" in rendered.user
    assert "Exchange X halts withdrawals" in rendered.user
    assert "News is unavailable" not in rendered.user


@pytest.mark.parametrize("name", ["groq_check", "ollama_check"])
def test_review_prompt_renders_sell_with_position_and_no_features(
    library: PromptLibrary, name: str
) -> None:
    position = {
        "volume": "0.01",
        "avg_buy_price": "99000000",
        "unrealized_pct": 1.06,
        "stop_loss_price": "97000000",
        "take_profit_price": None,
    }

    rendered = library.get(name).render(
        review_values(
            action="sell",
            entry_probability=None,
            exit_probability=0.71,
            features=None,
            recent_closes=[],
            position=position,
        )
    )

    assert "sell (exit the held coin)" in rendered.user
    assert '"avg_buy_price": "99000000"' in rendered.user
    assert "not available yet" in rendered.user
    assert 'Answer "sell"' in rendered.user


def test_sizing_prompt_renders_and_states_the_principles(library: PromptLibrary) -> None:
    rendered = library.get("sizing").render(sizing_values())
    text = rendered.system + rendered.user

    for field in (
        '"investment_ratio"',
        '"stop_loss_pct"',
        '"take_profit_pct"',
        '"max_loss_acceptable"',
        '"take_profit_target"',
        '"reasoning"',
    ):
        assert field in text
    for tier in ("50-100%", "20-50%", "5-20%", "5-10%"):
        assert tier in rendered.system
    assert "never above\n  3%" in rendered.system or "never above 3%" in rendered.system
    assert "1,234,568 KRW" in rendered.user
    assert "1.20%, -0.50%" in rendered.user
    assert "winning streak" in rendered.system.lower()


def test_sizing_stop_loss_cap_follows_the_limit(library: PromptLibrary) -> None:
    limits = {
        "min_investment_ratio": 0.05,
        "max_investment_ratio": 1.0,
        "stop_loss_cap_pct": 2.5,
        "take_profit_cap_pct": 20.0,
    }

    rendered = library.get("sizing").render(sizing_values(limits=limits))

    assert re.search(r"never above\s+2\.5%", rendered.system)


def test_review_prompt_answer_line_lists_the_fields_in_order(
    library: PromptLibrary,
) -> None:
    rendered = library.get("groq_check").render(review_values())
    line = next(x for x in rendered.system.splitlines() if x.startswith('{"verdict"'))

    keys = re.findall(r'"(\w+)":', line)

    assert keys == ["verdict", "confidence", "reasoning", "risks"]
