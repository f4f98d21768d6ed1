"""Blind prompts: the loader hides what the front matter declares identifying."""

from __future__ import annotations

from pathlib import Path

import pytest

from prompts.loader import DEFAULT_PROMPTS_DIR, Blind, PromptError, PromptLibrary, parse_prompt

VALUES = {
    "market": "KRW-ETH",
    "action": "buy",
    "entry_probability": 0.61,
    "exit_probability": 0.2,
    "model_id": "full-20250918T2359",
    "bar_time": "2025-09-19T03:04:00+00:00",
    "features": {"ret_5": 0.0012, "rsi_14": 55.0},
    "recent_closes": [6_270_000.0, 6_280_000.0, 6_300_000.0],
    "position": {"volume": "0.1", "avg_buy_price": "6250000", "unrealized_pct": 0.8},
    "news": ["Ethereum upgrade lands on 2025-09-18"],
    "account": {"krw": "1000000", "equity": "1630000", "positions": {"KRW-ETH": {}}},
}


def test_the_check_prompts_render_blind_with_no_name_price_date_or_news() -> None:
    blind = Blind(("KRW-BTC", "KRW-ETH", "KRW-SOL", "KRW-XRP"))
    library = PromptLibrary(DEFAULT_PROMPTS_DIR)
    for name in ("groq_check", "ollama_check"):
        named = library.get(name).render(VALUES)
        hidden = library.get(name).render(VALUES, blind)
        assert "KRW-ETH" in named.user and "6300000" in named.user.replace(",", "")
        for leak in ("KRW-ETH", "ETH", "2025-09", "6300000", "6,300,000", "6250000", "Ethereum"):
            assert leak not in hidden.user and leak not in hidden.system, (name, leak)
        assert "COIN-B" in hidden.user and "100" in hidden.user
        assert hidden.input_sha256 != named.input_sha256  # cached apart


def test_prices_become_an_index_on_the_last_close() -> None:
    blind = Blind(("KRW-ETH",))
    hidden = blind.apply(
        {"recent_closes": "prices", "position": "position", "market": "market"}, VALUES
    )
    assert hidden["recent_closes"] == [99.5238, 99.6825, 100.0]
    assert hidden["position"]["avg_buy_price"] == 99.2063
    assert hidden["position"]["volume"] == "0.1"  # not a price
    assert hidden["market"] == "COIN-A" and blind.label("KRW-DOGE") == "COIN-?"


def test_front_matter_refuses_an_unknown_kind_or_an_undeclared_variable(tmp_path: Path) -> None:
    source = (DEFAULT_PROMPTS_DIR / "groq_check.md").read_text()
    wrong_kind = source.replace("  news: text\n", "  news: secret\n")
    undeclared = source.replace("  news: text\n", "  headline: text\n")

    with pytest.raises(PromptError, match="kind 'secret'"):
        parse_prompt(wrong_kind.encode(), tmp_path / "groq_check.md")
    with pytest.raises(PromptError, match="'headline' is not declared"):
        parse_prompt(undeclared.encode(), tmp_path / "groq_check.md")
