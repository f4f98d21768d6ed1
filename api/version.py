"""The API's version: shown in the OpenAPI document and by `GET /api/info`."""

from __future__ import annotations

__all__ = ["API_VERSION"]

API_VERSION = "0.2.0"
