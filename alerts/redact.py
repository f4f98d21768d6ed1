"""Notifier secrets (a webhook URL, a bot token) masked in errors and in httpx's log lines."""

from __future__ import annotations

import logging
import threading


class Redactor:
    """Replaces registered secrets by their masks in text."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._masks: dict[str, str] = {}

    def register(self, secret: str, mask: str) -> None:
        if secret:
            with self._lock:
                self._masks[secret] = mask

    def redact(self, text: str) -> str:
        with self._lock:
            masks = list(self._masks.items())
        for secret, mask in masks:
            if secret in text:
                text = text.replace(secret, mask)
        return text


REDACTOR = Redactor()


class _RedactingFilter(logging.Filter):
    """Masks notifier secrets in records of loggers that see URLs (httpx logs each request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = REDACTOR.redact(message)
        if masked != message:
            record.msg = masked
            record.args = None
        return True


_FILTER = _RedactingFilter()
_FILTERED_LOGGERS = ("httpx",)  # httpx logs each request URL at INFO; httpcore logs no paths


def register_secret(secret: str, mask: str) -> None:
    """Mask `secret` in our errors and in the HTTP client's own log lines."""
    REDACTOR.register(secret, mask)
    for name in _FILTERED_LOGGERS:
        http_logger = logging.getLogger(name)
        if _FILTER not in http_logger.filters:
            http_logger.addFilter(_FILTER)
