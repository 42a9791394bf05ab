"""Shared fixtures: databases (SQLite always, PostgreSQL when TEST_DATABASE_URL is set), and the
per-test time limits."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.storage.db import make_engine, migrate

pytest_plugins = ["tests.netguard", "pytester"]

# PTB's documented opt-in to timedelta retry_after (the adapter sets it too); the raw-PTB
# self-tests of the fake server would otherwise warn.
os.environ.setdefault("PTB_TIMEDELTA", "true")

PG_URL = os.environ.get("TEST_DATABASE_URL")
PG_SKIP_REASON = "PostgreSQL case: set TEST_DATABASE_URL (e.g. postgresql+asyncpg://postgres@127.0.0.1:5432/test) to run it"
# Without TEST_DATABASE_URL the PostgreSQL cases are collected and reported as skipped, with the
# reason, rather than vanishing from the count. The fixtures skip them (not a mark per test), so the
# summary shows one line: "SKIPPED [n] tests/conftest.py: PostgreSQL case: ...".
DB_KINDS = ["sqlite", "postgresql"]


def skip_without_pg(kind: str) -> None:
    if kind == "postgresql" and not PG_URL:
        pytest.skip(PG_SKIP_REASON)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    outcome = yield
    report = outcome.get_result()
    # pytest names each skipped test's own line; these all have one cause, so fold them into one line.
    if report.skipped and isinstance(report.longrepr, tuple) and PG_SKIP_REASON in str(report.longrepr[2]):
        report.longrepr = (__file__, skip_without_pg.__code__.co_firstlineno - 1, report.longrepr[2])


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("slow_timeout", "seconds allowed to a test marked slow", default="300")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    slow = float(config.getini("slow_timeout"))
    for item in items:
        if item.get_closest_marker("slow") is not None and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(slow))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # An e2e test marked both_databases runs its bot on SQLite and on PostgreSQL.
    if "db_kind" in metafunc.fixturenames and metafunc.definition.get_closest_marker("both_databases"):
        metafunc.parametrize("db_kind", DB_KINDS, indirect=True)


async def reset_pg_schema(url: str | None = None) -> None:
    """Each PostgreSQL test (or benchmark, given its `url`) starts from an empty schema."""
    url = url or PG_URL
    assert url
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
    finally:
        await engine.dispose()


async def fresh_engine(kind: str, tmp_path: Path) -> AsyncEngine:
    if kind == "sqlite":
        engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'test.sqlite3'}")
    else:
        await reset_pg_schema()
        engine = make_engine(PG_URL)  # type: ignore[arg-type]
    await migrate(engine)
    return engine


@pytest.fixture(params=DB_KINDS)
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    skip_without_pg(request.param)
    eng = await fresh_engine(request.param, tmp_path)
    try:
        yield eng
    finally:
        await eng.dispose()


@pytest.fixture
def db_kind(request: pytest.FixtureRequest) -> str:
    """sqlite, unless the test is marked both_databases (then each in turn)."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture
async def database_url(db_kind: str, tmp_path: Path) -> str:
    """The URL a bot under test (in process or spawned) uses: a file in tmp_path, or the
    PostgreSQL test database with a fresh schema."""
    skip_without_pg(db_kind)
    if db_kind == "postgresql":
        await reset_pg_schema()
        assert PG_URL
        return PG_URL
    return f"sqlite+aiosqlite:///{tmp_path / 'linli-e2e.sqlite3'}"
