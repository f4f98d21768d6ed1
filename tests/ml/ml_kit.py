"""Where the small model sets of the ml tests stop training (the fixtures are in conftest.py)."""

from __future__ import annotations

from datetime import UTC, datetime

QUICK_UNTIL = datetime(2025, 9, 4, tzinfo=UTC)
"""The quick set trains on bars before this; its slice (``quick_slice``) runs a day past it."""
FULL_UNTIL = datetime(2025, 9, 5, tzinfo=UTC)
"""The full set (``full_set``) trains on the four days of Upbit bars before this."""
