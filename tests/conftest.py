"""Shared fixtures: real PostgreSQL and Redis on 127.0.0.1 for tests marked `services`.

Without the server the test is skipped with the reason; with LXA_REQUIRE_SERVICES=1 it fails.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from sqlalchemy.engine import make_url

# tests/<package>/ folders share names with the packages (tests/store, store); without the
# project root on sys.path (no editable install, plain `pytest`), `import store` would resolve
# to the namespace package tests/store. A regular package anywhere on the path wins over that.
PROJECT_ROOT = str(Path(__file__).resolve().parents[1])
if PROJECT_ROOT not in sys.path:
    sys.path.insert(0, PROJECT_ROOT)

# Overridable for other machines; the admin URL must allow CREATE DATABASE.
POSTGRES_ADMIN_URL = os.environ.get(
    "LXA_TEST_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_TEST_URL = os.environ.get("LXA_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def services_required() -> bool:
    """Whether a missing service should fail the test instead of skipping it."""
    return os.environ.get("LXA_REQUIRE_SERVICES") == "1"


def service_unavailable(reason: str) -> NoReturn:
    """Skip the test, or fail it when LXA_REQUIRE_SERVICES=1."""
    if services_required():
        pytest.fail(f"{reason} (LXA_REQUIRE_SERVICES=1)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """Yield a URL to a fresh, empty PostgreSQL database; drop it afterwards."""
    try:
        import psycopg
    except ImportError as exc:
        service_unavailable(f"psycopg is not installed: {exc}")
    try:
        admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        service_unavailable(f"PostgreSQL unreachable at {POSTGRES_ADMIN_URL}: {exc}")
    name = f"lxa_test_{secrets.token_hex(6)}"
    database_url = make_url(POSTGRES_ADMIN_URL).set(drivername="postgresql+psycopg", database=name)
    try:
        with admin:
            admin.execute(f'CREATE DATABASE "{name}"')
            try:
                yield database_url.render_as_string(hide_password=False)
            finally:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.close()


@pytest.fixture
def redis_url() -> Iterator[str]:
    """Yield the URL of Redis database 15 after checking that it answers a ping."""
    try:
        import redis
    except ImportError as exc:
        service_unavailable(f"the redis package is not installed: {exc}")
    client = redis.Redis.from_url(REDIS_TEST_URL, socket_connect_timeout=3, socket_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        service_unavailable(f"Redis unreachable at {REDIS_TEST_URL}: {exc}")
    finally:
        client.close()
    yield REDIS_TEST_URL
