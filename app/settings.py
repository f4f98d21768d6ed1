"""Service settings from `LXA_*` variables and `.env`; the only reader of the environment."""

from __future__ import annotations

import re
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from llm.cost import DEFAULT_PRICES
from news.sources import CRYPTOPANIC_URL, DEFAULT_FEEDS, SourceConfig, SourceKind

ENV_PREFIX = "LXA_"
DEFAULT_MARKETS = ("KRW-BTC", "KRW-ETH", "KRW-XRP", "KRW-SOL")
CHECKPOINT_SCHEMES = ("memory", "sqlite", "postgresql", "postgres", "postgresql+psycopg")
DATABASE_SCHEMES = ("sqlite", "postgresql", "postgres", "postgresql+psycopg")
_MARKET_RE = re.compile(r"^KRW-[A-Z0-9]{2,10}$")


class SettingsError(ValueError):
    """Settings failed validation; the message names each offending `LXA_*` variable."""


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else url.lower()


def _has_secret(value: Any) -> bool:
    return isinstance(value, SecretStr) and bool(value.get_secret_value().strip())


class Settings(BaseSettings):
    """Everything the service is configured by. Secrets are `SecretStr` and never printed."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    data_dir: Path = Field(
        default=Path("data"),
        description="Where the service writes journals, checkpoints, models and paper accounts.",
    )
    database_url: str | None = Field(
        default=None,
        description="Journal database URL (sqlite:///... or postgresql://...). "
        "Default: SQLite at <data_dir>/journal.db.",
    )
    checkpoint_url: str | None = Field(
        default=None,
        description="LangGraph checkpointer: 'memory', sqlite:///path or postgresql://... "
        "Default: the database URL when it is Postgres, else SQLite at <data_dir>/checkpoints.db.",
    )
    markets: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_MARKETS),
        description="Comma-separated Upbit KRW markets to trade.",
    )
    initial_capital_krw: Decimal = Field(
        default=Decimal(1_000_000), description="Starting KRW of a new paper account."
    )
    model_dir: Path | None = Field(
        default=None,
        description="A model set directory; default the newest under <data_dir>/models.",
    )
    upbit_rest_url: str = Field(
        default="https://api.upbit.com",
        description="Upbit REST base URL (`lxa download` fetches candles from it).",
    )
    upbit_ws_url: str = Field(
        default="wss://api.upbit.com/websocket/v1",
        description="Upbit public WebSocket (trades and orderbooks for the live feed).",
    )
    feed_stale_after_s: float = Field(
        default=30.0,
        ge=5.0,
        le=600.0,
        description="No trade or orderbook for this long while the stream says UP: stale.",
    )
    entry_probability_min: float | None = Field(
        default=None,
        description="Replaced by the trading policy (LXA_POLICY_ENTRY_MARGIN_BPS); setting it "
        "is an error, so an old .env cannot silently mean something else.",
    )
    exit_probability_min: float | None = Field(
        default=None,
        description="Replaced by the trading policy (LXA_POLICY_EXIT_MARGIN_BPS); setting it "
        "is an error.",
    )
    max_open_positions: int = Field(default=2, ge=1, le=4)
    # The trading policy (policy.rules): what an entry must clear, how long a position is kept.
    policy_entry_margin_bps: float = Field(
        default=10.0,
        ge=-1000.0,
        le=1000.0,
        description="An entry needs the model's expected return over the label horizon to "
        "exceed the round-trip costs (2 x fee + 2 x LXA_SLIPPAGE_BPS) by this much.",
    )
    policy_exit_margin_bps: float = Field(
        default=5.0,
        ge=-1000.0,
        le=1000.0,
        description="After the minimum hold, the model sells a held coin once its expected "
        "return falls below minus this (hysteresis against buy/sell flip-flops).",
    )
    policy_min_hold_minutes: int | None = Field(
        default=None,
        ge=1,
        le=10_080,
        description="No ML exit before this many minutes (default: the model's label horizon; "
        "never less). Stop-loss, take-profit, the watchdog and the operator exit any time.",
    )
    policy_max_hold_minutes: int = Field(
        default=0, ge=0, le=100_000, description="Close a position after this long (0: never)."
    )
    policy_reentry_pause_minutes: int = Field(
        default=30,
        ge=0,
        le=10_080,
        description="No re-entry into a market this soon after an exit.",
    )
    policy_max_entries_per_day: int = Field(
        default=3,
        ge=0,
        le=1440,
        description="Positions opened per market per KST day (a recorded hold once spent).",
    )
    allow_unproven_model: bool = Field(
        default=False,
        description="Live entries with a model set whose own out-of-sample policy result is not "
        "positive after fees (recorded; `lxa run --live --allow-unproven-model`).",
    )
    risk_level: Literal["low", "medium", "high"] = "medium"
    stop_loss_cap_pct: float = Field(
        default=3.0, gt=0.0, le=3.0, description="Hard cap on any stop-loss (the plan's -3%)."
    )
    slippage_bps: float = Field(default=2.0, ge=0.0, le=100.0)
    upbit_access_key: SecretStr | None = Field(
        default=None, description="Upbit API access key (live trading only; never logged)."
    )
    upbit_secret_key: SecretStr | None = Field(
        default=None, description="Upbit API secret key (live trading only; never logged)."
    )
    upbit_timeout_s: float = Field(
        default=5.0, gt=0.0, le=60.0, description="Timeout of each Upbit REST call (live orders)."
    )
    order_lane: bool = Field(
        default=True,
        description="Keep a connection to Upbit open for emergency sells (exchange.upbit_lane).",
    )
    live_max_slippage_bps: float = Field(
        default=30.0,
        gt=0.0,
        le=500.0,
        description="Live market orders only while spread and book impact stay within this "
        "bound; otherwise a marketable IOC limit order at the bound.",
    )
    live: bool = Field(
        default=False,
        description="Live orders on Upbit; needs LXA_UPBIT_ACCESS_KEY and LXA_UPBIT_SECRET_KEY.",
    )
    groq_api_key: SecretStr | None = Field(
        default=None, description="Groq API key; without it the first check is rule-based."
    )
    groq_base_url: str = Field(
        default="https://api.groq.com",
        description="Groq endpoint (the client appends /openai/v1/chat/completions).",
    )
    groq_model: str = Field(default="llama-3.1-8b-instant", min_length=1)
    ollama_host: str | None = Field(
        default=None,
        description="Ollama server, e.g. http://localhost:11434; without it the second check "
        "is rule-based.",
    )
    ollama_model: str = Field(default="qwen2.5:14b", min_length=1)
    ollama_num_predict: int = Field(
        default=512,
        ge=16,
        le=32768,
        description="Most tokens Ollama may generate for one answer (its num_predict): a "
        "model looping in a free-text field stops there and the answer is a recorded hold.",
    )
    groq_max_tokens: int = Field(
        default=1024,
        ge=16,
        le=32768,
        description="Most tokens Groq may generate for one answer (max_tokens; a reasoning "
        "model's thinking counts too).",
    )
    sizing_provider: Literal["rule-based", "groq", "ollama"] = Field(
        default="rule-based", description="Who proposes the size: rule-based, groq or ollama."
    )
    llm_timeout_s: float = Field(
        default=30.0,
        gt=0.0,
        le=600.0,
        description="Time allowed for one LLM call (each try), streaming included; past it the "
        "call is cut and, once the retries are spent, the check holds.",
    )
    llm_max_retries: int = Field(default=2, ge=0, le=10)
    llm_prices: dict[str, tuple[float, float]] = Field(
        default_factory=lambda: dict(DEFAULT_PRICES),
        description="USD per million (input, output) tokens per model, as JSON, e.g. "
        '{"llama-3.1-8b-instant": [0.05, 0.08]}; a model not listed (a local Ollama) costs 0.',
    )
    llm_daily_budget_usd: float | None = Field(
        default=None,
        ge=0.0,
        description="Money the LLM calls may spend per KST day; once spent the reviewers hold "
        "(recorded) until midnight in Seoul, with an alert.",
    )
    llm_daily_budget_tokens: int | None = Field(
        default=None, ge=0, description="Tokens the LLM calls may use per KST day (as above)."
    )
    llm_breaker_failures: int = Field(default=3, ge=1, le=100)
    llm_breaker_reset_s: float = Field(default=60.0, gt=0.0, le=86400.0)
    prompts_dir: Path | None = Field(
        default=None, description="Folder of prompt files; default the shipped prompts/."
    )
    # Emergency watchdog (outside the graph; sells without asking anyone).
    watchdog_enabled: bool = Field(default=True, description="Run the emergency watchdog.")
    watchdog_drop_pct: float = Field(
        default=1.0,
        gt=0.0,
        lt=50.0,
        description="Sell on a fall of more than this % below the window's high.",
    )
    watchdog_drop_window_s: int = Field(default=300, ge=10, le=3600, description="Drop window (s).")
    watchdog_volume_spike_pct: float = Field(
        default=600.0,
        ge=400.0,
        le=600.0,
        description="Sell on a volume spike of +this % (the plan: 400-600; 400 fires 3-6x a day).",
    )
    watchdog_sentiment_threshold: float = Field(default=-0.6, ge=-1.0, le=0.0)
    watchdog_network_failures: int = Field(default=3, ge=1, le=20)
    watchdog_anomaly_score: float = Field(
        default=0.95,
        gt=0.0,
        le=1.0,
        description="Autoencoder score (calibrated, ml.anomaly) at which the watchdog sells.",
    )
    watchdog_cooldown_s: int = Field(
        default=1800, ge=0, le=86400, description="No re-entry into a market after its sell."
    )
    outage_reducing_after_s: float = Field(
        default=120.0,
        ge=0.0,
        le=86400.0,
        description="While the exchange or the database keeps failing, each bar is a recorded "
        "hold; after this long the trading state turns `reducing` (exits only) until they "
        "answer again. Stops and the watchdog keep selling throughout.",
    )
    # Hard limits no LLM can override.
    daily_loss_limit_pct: float = Field(
        default=3.0, gt=0.0, le=50.0, description="Stop entries for the day after this loss."
    )
    monthly_loss_cap_pct: float = Field(
        default=3.0,
        gt=0.0,
        le=50.0,
        description="Stop entries for the calendar month (KST) once equity is this far below "
        "the month's first equity; until the 1st or `lxa resume`.",
    )
    max_exposure_pct: float = Field(default=100.0, gt=0.0, le=100.0)
    max_position_pct: float = Field(default=100.0, gt=0.0, le=100.0)
    # Alerts.
    slack_webhook_url: SecretStr | None = None
    telegram_bot_token: SecretStr | None = None
    telegram_chat_id: str | None = None
    telegram_api_base: str = "https://api.telegram.org"
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    api_token: SecretStr | None = Field(
        default=None,
        description="Bearer token for calls that change anything; default: generated on first "
        "start into <data_dir>/api_token (mode 0600).",
    )
    redis_url: str | None = Field(
        default=None,
        description="Redis for the event stream across processes (redis://host:6379/0); "
        "default: in-process.",
    )
    # Champion and challenger (ml/champion.py, app/models.py, app/retrain.py).
    retrain_at_kst: str | None = Field(
        default=None,
        description='Retrain once a day at this KST time ("HH:MM") inside the service; off unset.',
    )
    retrain_candles: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated base candle files or folders a retrain learns from (with "
        "what `lxa record` wrote under <data_dir>/ticks since).",
    )
    retrain_quick: bool = Field(
        default=True, description="Retrain the quick LightGBM pair (false: the full set)."
    )
    model_max_age_days: float | None = Field(
        default=None,
        gt=0.0,
        description="Warn in `lxa status` and GET /api/model when the set trading is older.",
    )

    @field_validator("retrain_at_kst")
    @classmethod
    def _check_retrain_at(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parts = value.strip().split(":")
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            raise ValueError(f'expected "HH:MM" (KST), got {value!r}')
        hours, minutes = int(parts[0]), int(parts[1])
        if not (0 <= hours < 24 and 0 <= minutes < 60):
            raise ValueError(f"not a time of day: {value!r}")
        return f"{hours:02d}:{minutes:02d}"

    @field_validator("retrain_candles", mode="before")
    @classmethod
    def _split_retrain_candles(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [Path(p.strip()) for p in value.split(",") if p.strip()]
        return value

    # News and sentiment (news/, app/news.py).
    news_enabled: bool = Field(
        default=True, description="Poll the news sources while trading (`lxa news` polls anyway)."
    )
    news_feeds: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: [f"{s.name}={s.url}" for s in DEFAULT_FEEDS],
        description="Comma-separated name=URL sources: RSS/Atom feeds; a URL on "
        "api-manager.upbit.com is Upbit's notice list, one on cryptopanic.com CryptoPanic.",
    )
    news_poll_interval_s: float = Field(
        default=60.0, ge=5.0, le=3600.0, description="How often the service looks for news."
    )
    news_feed_min_interval_s: float = Field(
        default=300.0,
        ge=30.0,
        le=86_400.0,
        description="A feed (and CryptoPanic) is fetched at most this often.",
    )
    news_notice_min_interval_s: float = Field(
        default=60.0,
        ge=10.0,
        le=86_400.0,
        description="Upbit's notice list is fetched at most this often.",
    )
    news_timeout_s: float = Field(default=10.0, gt=0.0, le=120.0)
    news_half_life_minutes: float = Field(
        default=360.0,
        gt=0.0,
        le=43_200.0,
        description="The sentiment index halves an item's weight every this many minutes.",
    )
    news_cryptopanic_key: SecretStr | None = Field(
        default=None, description="CryptoPanic API key; when set, its posts are polled too."
    )
    news_notice_block_hours: float = Field(
        default=168.0,
        ge=0.0,
        le=24.0 * 365,
        description="An Upbit trading warning or delisting notice bars entries into its coin "
        "for this many hours after it was first seen (and sells it at once).",
    )
    news_scorer: Literal["lexicon", "groq", "ollama"] | None = Field(
        default=None,
        description="Who scores news items per coin: groq, ollama (through prompts/"
        "news_sentiment.md, cached, costed, under the daily LLM budget) or the lexicon; "
        "default groq with a Groq key, else ollama with a host, else the lexicon.",
    )
    # Retraining weights (ml/training/weights.py): the reviewers' record per period, recency.
    retrain_weight_rule: Literal["none", "step", "linear"] = Field(
        default="linear",
        description="How the reviewers' record per period weights its training rows: 'step' "
        "(right or wrong weight by the majority), 'linear' (scaled by the share right) or 'none'.",
    )
    retrain_right_weight: float = Field(
        default=1.5, ge=1.0, le=10.0, description="Row weight in a period every verdict got right."
    )
    retrain_wrong_weight: float = Field(
        default=0.5, gt=0.0, le=1.0, description="Row weight in a period every verdict got wrong."
    )
    retrain_period_minutes: int = Field(
        default=60, ge=1, le=10080, description="Length of a period the verdicts are scored over."
    )
    retrain_min_verdicts: int = Field(
        default=1, ge=1, description="Judged verdicts a period needs before it is weighted."
    )
    retrain_recency_half_life_days: float | None = Field(
        default=None,
        gt=0.0,
        description="Recency weights: a row this many days older than the newest counts half "
        "(FreqAI-style); unset: no recency weighting.",
    )

    @field_validator("markets", mode="before")
    @classmethod
    def _split_markets(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip().startswith("["):
            return [m.strip().upper() for m in value.split(",") if m.strip()]
        return value

    @field_validator("markets")
    @classmethod
    def _check_markets(cls, value: list[str]) -> list[str]:
        bad = [m for m in value if not _MARKET_RE.match(m)]
        if bad:
            raise ValueError(f"markets must look like KRW-BTC; got {bad}")
        if not value:
            raise ValueError("at least one market is required")
        return value

    @field_validator("entry_probability_min", "exit_probability_min")
    @classmethod
    def _replaced_by_policy(cls, value: float | None, info: ValidationInfo) -> float | None:
        if value is not None:
            replacement = {
                "entry_probability_min": "LXA_POLICY_ENTRY_MARGIN_BPS",
                "exit_probability_min": "LXA_POLICY_EXIT_MARGIN_BPS",
            }[str(info.field_name)]
            raise ValueError(
                "probability thresholds no longer decide trades: the trading policy compares "
                f"the model's expected return with the costs; remove it and set {replacement}"
            )
        return value

    @field_validator("initial_capital_krw")
    @classmethod
    def _check_capital(cls, value: Decimal) -> Decimal:
        if value < Decimal(5000):
            raise ValueError(f"must be at least 5000 KRW (Upbit's minimum order); got {value}")
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value is not None and _scheme(value) not in DATABASE_SCHEMES:
            raise ValueError(
                f"unknown scheme {_scheme(value)!r}; use one of {', '.join(DATABASE_SCHEMES)}"
            )
        return value

    @field_validator("checkpoint_url")
    @classmethod
    def _check_checkpoint_url(cls, value: str | None) -> str | None:
        if value is not None and _scheme(value) not in CHECKPOINT_SCHEMES:
            raise ValueError(
                f"unknown scheme {_scheme(value)!r}; use one of {', '.join(CHECKPOINT_SCHEMES)}"
            )
        return value

    @field_validator("upbit_ws_url")
    @classmethod
    def _check_ws_url(cls, value: str) -> str:
        if not value.startswith(("ws://", "wss://")):
            raise ValueError(f"must be a ws:// or wss:// URL; got {value!r}")
        return value

    @field_validator("groq_base_url", "ollama_host")
    @classmethod
    def _check_http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"must be an http:// or https:// URL; got {value!r}")
        return value.rstrip("/") if value else value

    @field_validator("news_feeds", mode="before")
    @classmethod
    def _split_news_feeds(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip().startswith("["):
            return [entry.strip() for entry in value.split(",") if entry.strip()]
        return value

    @field_validator("news_feeds")
    @classmethod
    def _check_news_feeds(cls, value: list[str]) -> list[str]:
        names = [parse_news_source(entry).name for entry in value]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"news sources named twice: {', '.join(twice)}")
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"must be a redis://, rediss:// or unix:// URL; got {value!r}")
        return value or None

    @field_validator("sizing_provider")
    @classmethod
    def _sizing_provider_is_configured(cls, value: str, info: ValidationInfo) -> str:
        if value == "groq" and info.data.get("groq_api_key") is None:
            raise ValueError("is groq but LXA_GROQ_API_KEY is not set")
        if value == "ollama" and info.data.get("ollama_host") is None:
            raise ValueError("is ollama but LXA_OLLAMA_HOST is not set")
        return value

    @field_validator("news_scorer")
    @classmethod
    def _news_scorer_is_configured(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value == "groq" and info.data.get("groq_api_key") is None:
            raise ValueError("is groq but LXA_GROQ_API_KEY is not set")
        if value == "ollama" and info.data.get("ollama_host") is None:
            raise ValueError("is ollama but LXA_OLLAMA_HOST is not set")
        return value

    @field_validator("live")
    @classmethod
    def _live_needs_keys(cls, value: bool, info: ValidationInfo) -> bool:
        if value:
            missing = [
                f"{ENV_PREFIX}{name.upper()}"
                for name in ("upbit_access_key", "upbit_secret_key")
                if not _has_secret(info.data.get(name))
            ]
            if missing:
                raise ValueError(
                    "live trading needs the Upbit API keys: set " + " and ".join(missing)
                )
        return value

    # Derived locations -------------------------------------------------------------------
    @property
    def journal_url(self) -> str:
        """The journal database URL."""
        return self.database_url or f"sqlite:///{(self.data_dir / 'journal.db').resolve()}"

    @property
    def checkpointer_url(self) -> str:
        """The checkpointer URL (see `checkpoint_url`)."""
        if self.checkpoint_url:
            return self.checkpoint_url
        if self.database_url and _scheme(self.database_url) != "sqlite":
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'checkpoints.db').resolve()}"

    @property
    def news_sources(self) -> list[SourceConfig]:
        """The news sources: the feeds, Upbit's notices, CryptoPanic when its key is set."""
        sources = []
        for entry in self.news_feeds:
            source = parse_news_source(entry, timeout_s=self.news_timeout_s)
            floor = (
                self.news_notice_min_interval_s
                if source.kind == "upbit_notices"
                else self.news_feed_min_interval_s
            )
            sources.append(replace(source, min_interval_s=floor))
        has_cryptopanic = any(s.kind == "cryptopanic" for s in sources)
        if _has_secret(self.news_cryptopanic_key) and not has_cryptopanic:
            sources.append(
                SourceConfig(
                    "cryptopanic",
                    CRYPTOPANIC_URL,
                    "cryptopanic",
                    min_interval_s=self.news_feed_min_interval_s,
                    timeout_s=self.news_timeout_s,
                )
            )
        return sources

    @property
    def models_dir(self) -> Path:
        """Where trained model sets are kept."""
        return self.data_dir / "models"


def parse_news_source(entry: str, *, timeout_s: float = 10.0) -> SourceConfig:
    """One `name=URL` news source; its kind from the URL (Upbit notices, CryptoPanic, feed)."""
    name, sep, url = entry.partition("=")
    if not sep or not name.strip() or not url.strip():
        raise ValueError(f"news source must be name=URL, got {entry!r}")
    url = url.strip()
    host = urlsplit(url).netloc.lower()
    kind: SourceKind = "feed"
    if host == "api-manager.upbit.com" or "/api/v1/announcements" in url:
        kind = "upbit_notices"
    elif host.endswith("cryptopanic.com") or "/api/v1/posts" in url:
        kind = "cryptopanic"
    return SourceConfig(name.strip().lower(), url, kind, timeout_s=timeout_s)


def load_settings(**overrides: Any) -> Settings:
    """Read settings; raise `SettingsError` naming each bad `LXA_*` variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "settings"
            name = f"{ENV_PREFIX}{field.upper()}" if err["loc"] else "settings"
            message = str(err["msg"]).removeprefix("Value error, ")
            lines.append(f"{name}: {message} (got {err.get('input')!r})")
        raise SettingsError("invalid settings:\n  " + "\n  ".join(lines)) from None
