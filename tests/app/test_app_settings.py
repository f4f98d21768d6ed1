"""Settings: LXA_ variables, .env, and errors that name the offending variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.settings import Settings, SettingsError, load_settings


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(__import__("os").environ):
        if name.startswith("LXA_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env from the working directory


def test_defaults_are_paper_trading_on_sqlite_under_the_data_dir() -> None:
    settings = load_settings()

    assert settings.live is False
    assert settings.markets == ["KRW-BTC", "KRW-ETH", "KRW-XRP", "KRW-SOL"]
    assert settings.journal_url.endswith("/data/journal.db")
    assert settings.checkpointer_url.endswith("/data/checkpoints.db")


def test_markets_read_from_a_comma_separated_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LXA_MARKETS", "krw-btc, KRW-ETH")

    assert load_settings().markets == ["KRW-BTC", "KRW-ETH"]


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("LXA_INITIAL_CAPITAL_KRW=250000\nLXA_RISK_LEVEL=low\n")

    settings = load_settings()

    assert settings.initial_capital_krw == 250000
    assert settings.risk_level == "low"


def test_negative_capital_fails_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LXA_INITIAL_CAPITAL_KRW", "-5")

    with pytest.raises(SettingsError, match="LXA_INITIAL_CAPITAL_KRW"):
        load_settings()


def test_unknown_checkpointer_scheme_fails_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LXA_CHECKPOINT_URL", "mongodb://127.0.0.1/x")

    with pytest.raises(SettingsError, match="LXA_CHECKPOINT_URL: unknown scheme 'mongodb'"):
        load_settings()


def test_unknown_database_scheme_fails_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LXA_DATABASE_URL", "mysql://root@127.0.0.1/test")

    with pytest.raises(SettingsError, match="LXA_DATABASE_URL"):
        load_settings()


def test_bad_market_name_fails_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LXA_MARKETS", "KRW-BTC,BTCUSDT")

    with pytest.raises(SettingsError, match=r"LXA_MARKETS.*BTCUSDT"):
        load_settings()


def test_stop_loss_cap_above_the_plans_three_percent_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LXA_STOP_LOSS_CAP_PCT", "5")

    with pytest.raises(SettingsError, match="LXA_STOP_LOSS_CAP_PCT"):
        load_settings()


def test_live_trading_without_both_upbit_keys_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LXA_LIVE", "1")
    monkeypatch.setenv("LXA_UPBIT_ACCESS_KEY", "access-key-1234")

    with pytest.raises(
        SettingsError, match="LXA_LIVE: live trading needs the Upbit API keys: set LXA_UPBIT_SECRET"
    ):
        load_settings()


def test_live_trading_with_both_keys_is_allowed_and_keys_stay_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LXA_LIVE", "1")
    monkeypatch.setenv("LXA_UPBIT_ACCESS_KEY", "access-key-1234")
    monkeypatch.setenv("LXA_UPBIT_SECRET_KEY", "secret-key-5678")

    settings = load_settings()

    assert settings.live is True
    assert "access-key-1234" not in repr(settings) + str(settings.model_dump())
    assert "secret-key-5678" not in repr(settings) + str(settings.model_dump())


def test_postgres_database_url_also_becomes_the_checkpointer() -> None:
    settings = Settings(database_url="postgresql://postgres@127.0.0.1:5432/test")

    assert settings.checkpointer_url == "postgresql://postgres@127.0.0.1:5432/test"
    assert settings.journal_url == "postgresql://postgres@127.0.0.1:5432/test"


def test_api_token_is_secret_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LXA_API_TOKEN", "very-secret-token")

    settings = load_settings()

    assert "very-secret-token" not in repr(settings)
    assert settings.api_token is not None
    assert settings.api_token.get_secret_value() == "very-secret-token"


def test_env_example_is_a_valid_settings_file(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[2] / ".env.example"
    (tmp_path / ".env").write_text(example.read_text(encoding="utf-8"), encoding="utf-8")

    settings = load_settings()

    assert settings.markets == ["KRW-BTC", "KRW-ETH", "KRW-XRP", "KRW-SOL"]
    assert settings.live is False


@pytest.mark.parametrize(
    ("variable", "replacement"),
    [
        ("LXA_ENTRY_PROBABILITY_MIN", "LXA_POLICY_ENTRY_MARGIN_BPS"),
        ("LXA_EXIT_PROBABILITY_MIN", "LXA_POLICY_EXIT_MARGIN_BPS"),
    ],
)
def test_the_old_probability_thresholds_are_refused_naming_their_replacement(
    monkeypatch: pytest.MonkeyPatch, variable: str, replacement: str
) -> None:
    monkeypatch.setenv(variable, "0.25")

    with pytest.raises(SettingsError, match=replacement) as caught:
        load_settings(_env_file=None)

    assert variable in str(caught.value)


def test_a_minimum_hold_shorter_than_the_label_horizon_is_refused() -> None:
    from app.wiring import policy_params_from

    settings = load_settings(_env_file=None, policy_min_hold_minutes=5)

    with pytest.raises(SettingsError, match="LXA_POLICY_MIN_HOLD_MINUTES"):
        policy_params_from(settings, {"label": {"horizon": 10}})


def test_policy_settings_reach_the_policy_parameters() -> None:
    from app.wiring import policy_params_from

    settings = load_settings(
        _env_file=None,
        policy_entry_margin_bps=25.0,
        policy_max_hold_minutes=120,
        monthly_loss_cap_pct=2.0,
        slippage_bps=3.0,
    )

    params = policy_params_from(settings, {"label": {"horizon": 15}})

    assert (params.entry_margin_bps, params.max_hold_minutes) == (25.0, 120)
    assert (params.horizon_minutes, params.min_hold_minutes) == (15, 15)
    assert params.monthly_loss_cap_pct == 2.0
    assert params.round_trip_cost == pytest.approx(2 * (0.0005 + 0.0003))
