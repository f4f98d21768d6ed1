"""Read a model's raw text: thinking apart from the answer, the JSON in it, numbers as written."""

from __future__ import annotations

import json
import math
import re
from typing import Any


class LLMOutputError(ValueError):
    """The model's answer could not be read as the expected JSON."""


_THINK_RE = re.compile(r"<think>(.*?)</think>", re.DOTALL | re.IGNORECASE)
_THINK_OPEN_RE = re.compile(r"<think>", re.IGNORECASE)
_THINK_CLOSE_RE = re.compile(r"</think>", re.IGNORECASE)
_FENCE_RE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)
NOT_AVAILABLE = frozenset({"", "n/a", "na", "none", "null", "unknown", "-"})


def split_thinking(text: str) -> tuple[str, str]:
    """Separate DeepSeek-R1 style `<think>` blocks from the answer that follows them."""
    thinking = "\n".join(block.strip() for block in _THINK_RE.findall(text))
    answer = _THINK_RE.sub("", text)
    # Match the tags with regexes, not on `answer.lower()`: lowering can change the length of
    # the text ("İ" becomes two characters), which would shift the offsets.
    closes = list(_THINK_CLOSE_RE.finditer(answer))
    if closes:  # a block opened in the prompt (DeepSeek-R1 templates): all before it is thinking
        thinking = (thinking + "\n" + answer[: closes[-1].start()]).strip()
        answer = answer[closes[-1].end() :]
    opened = _THINK_OPEN_RE.search(answer)
    if opened:  # an unterminated block: everything after it is thinking, not an answer
        thinking = (thinking + "\n" + answer[opened.end() :]).strip()
        answer = answer[: opened.start()]
    return thinking.strip(), answer.strip()


def extract_json(text: str) -> dict[str, Any]:
    """Return the first JSON object in `text` (bare, fenced or surrounded by prose)."""
    candidates = [m.strip() for m in _FENCE_RE.findall(text)] + [text.strip()]
    for candidate in candidates:
        start = candidate.find("{")
        while start != -1:
            try:
                value, _ = json.JSONDecoder().raw_decode(candidate[start:])
            except (ValueError, RecursionError):  # bad JSON, a 5000-digit int, deep nesting
                start = candidate.find("{", start + 1)
                continue
            if isinstance(value, dict):
                return value
            start = candidate.find("{", start + 1)
    raise LLMOutputError(f"no JSON object in the answer: {text[:200]!r}")


def read_number(value: Any, *, percent_means_fraction: bool) -> float | None:
    """Read a number the way models write them: 0.15, "0.15", "15%", "N/A"."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:  # an int beyond float range: pydantic only catches ValueError
            raise ValueError(f"not a finite number: {value!r}") from None
    elif isinstance(value, str):
        text = value.strip().lower().replace(",", "")
        if text in NOT_AVAILABLE:
            return None
        is_percent = text.endswith("%")
        try:
            number = float(text.rstrip("%").strip())
        except ValueError:
            raise ValueError(f"not a number: {value!r}") from None
        if is_percent and percent_means_fraction:
            number /= 100
    else:
        raise ValueError(f"not a number: {value!r}")
    if not math.isfinite(number):
        raise ValueError(f"not a finite number: {value!r}")
    return number
