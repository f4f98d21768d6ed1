"""Browser tests: the local LLM protocol servers of tests/integration are importable here."""

from __future__ import annotations

import sys
from pathlib import Path

_TESTS = Path(__file__).resolve().parents[1]
for folder in (_TESTS, _TESTS / "integration"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
