"""The JSON answers the models must give, and the grammar-safe schema sent for each."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from llm.parsing import NOT_AVAILABLE, LLMOutputError, read_number
from llm.schema import grammar_problems, grammar_safe_schema

_REASONING = "One or two short sentences."


class VerdictAnswer(BaseModel):
    """The JSON a reviewer must answer with."""

    model_config = ConfigDict(extra="ignore")

    verdict: Literal["buy", "sell", "hold"]
    confidence: float = Field(default=0.5, ge=0.0, le=1.0)
    reasoning: str = Field(default="", max_length=4000, description=_REASONING)
    risks: list[str] = Field(default_factory=list)

    @field_validator("verdict", mode="before")
    @classmethod
    def _normalise_verdict(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("confidence", mode="before")
    @classmethod
    def _read_confidence(cls, value: Any) -> Any:
        number = read_number(value, percent_means_fraction=True)
        if number is None:
            return 0.5
        written_as_percent = isinstance(value, str) and value.strip().endswith("%")
        if 1.0 < number <= 100.0 and not written_as_percent:  # "85" meant 85%
            number /= 100
        return number

    @field_validator("reasoning", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return "" if value is None else str(value)

    @field_validator("risks", mode="before")
    @classmethod
    def _risks(cls, value: Any) -> Any:
        if value is None:
            return []
        if isinstance(value, str):
            return [value] if value.strip().lower() not in NOT_AVAILABLE else []
        if isinstance(value, list):
            return [str(item) for item in value][:20]
        return [str(value)]


class SizingAnswer(BaseModel):
    """The plan's sizing JSON; percentages are in percent (2.0 means 2%)."""

    model_config = ConfigDict(extra="ignore")

    investment_ratio: float
    stop_loss_pct: float | None = None
    take_profit_pct: float | None = None
    max_loss_acceptable: float | None = None
    take_profit_target: float | None = None
    reasoning: str = Field(default="", max_length=4000, description=_REASONING)

    @field_validator("investment_ratio", mode="before")
    @classmethod
    def _ratio(cls, value: Any) -> Any:
        number = read_number(value, percent_means_fraction=True)
        if number is None:
            raise ValueError("investment_ratio is required")
        return number

    @field_validator(
        "stop_loss_pct",
        "take_profit_pct",
        "max_loss_acceptable",
        "take_profit_target",
        mode="before",
    )
    @classmethod
    def _percent(cls, value: Any) -> Any:
        return read_number(value, percent_means_fraction=False)

    @field_validator("reasoning", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return "" if value is None else str(value)

    def protections(self) -> tuple[float, float]:
        """Return (stop-loss %, take-profit %), falling back to the plan's field names."""
        stop = self.stop_loss_pct if self.stop_loss_pct is not None else self.max_loss_acceptable
        take = self.take_profit_pct if self.take_profit_pct is not None else self.take_profit_target
        if stop is None or take is None:
            raise LLMOutputError("the answer gives no stop-loss or no take-profit")
        return abs(stop), abs(take)


class CoinSentimentAnswer(BaseModel):
    """One coin's score in a news item's sentiment answer."""

    model_config = ConfigDict(extra="ignore")

    market: str = Field(
        min_length=1, max_length=20, description="The market as given, e.g. KRW-BTC."
    )
    score: float = Field(
        ge=-1.0, le=1.0, description="-1 very bad news for this coin, 0 neutral, 1 very good."
    )
    relevance: float = Field(
        ge=0.0, le=1.0, description="How much the item is about this coin: 0 not, 1 only it."
    )
    reason: str = Field(min_length=1, max_length=300, description="One short line.")

    @field_validator("score", "relevance", mode="before")
    @classmethod
    def _number(cls, value: Any) -> Any:
        number = read_number(value, percent_means_fraction=True)
        if number is None:
            raise ValueError("a number is required")
        return number

    @field_validator("reason", mode="before")
    @classmethod
    def _one_line(cls, value: Any) -> Any:
        return " ".join(str(value).split()) if value is not None else value


class NewsSentimentAnswer(BaseModel):
    """The JSON a news item's sentiment scorer must answer with: one entry per coin."""

    model_config = ConfigDict(extra="ignore")

    scores: list[CoinSentimentAnswer] = Field(min_length=1, max_length=20)


# Every model an answer is parsed into. Each one's schema goes to the providers (Ollama's
# `format`), so each must compile into a llama.cpp grammar: tests walk this tuple, and the
# provider refuses a model that is not in it.
ANSWER_MODELS: tuple[type[BaseModel], ...] = (VerdictAnswer, SizingAnswer, NewsSentimentAnswer)


class AnswerSchemaError(ValueError):
    """An answer model is not registered, or its schema cannot be compiled into a grammar."""


def answer_wire_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema sent for `model`: grammar-safe, its large bounds in descriptions."""
    if model not in ANSWER_MODELS:
        raise AnswerSchemaError(
            f"{model.__name__} is not in ANSWER_MODELS; register it so its schema is checked"
        )
    schema = grammar_safe_schema(model)
    problems = grammar_problems(schema)
    if problems:
        raise AnswerSchemaError(
            f"the {model.__name__} schema cannot be compiled by llama.cpp: " + "; ".join(problems)
        )
    return schema
