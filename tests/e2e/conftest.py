"""End-to-end fixtures: one suite, parametrized over both frameworks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e.harness import FRAMEWORKS, BotUnderTest
from tests.fakeapi.server import FakeTelegram


@pytest.fixture(params=FRAMEWORKS)
def framework(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(token="123456:TEST-token") as server:
        yield server
        # No request in any e2e test may be one Telegram would reject.
        assert server.rejections == [], server.describe()


@pytest.fixture
async def bot(tg: FakeTelegram, framework: str, tmp_path: Path, database_url: str) -> AsyncIterator[BotUnderTest]:
    # database_url: SQLite, or PostgreSQL too for a test marked both_databases (tests/conftest.py).
    under_test = BotUnderTest(tg, framework, tmp_path, database_url=database_url)
    await under_test.start()
    try:
        yield under_test
    finally:
        await under_test.stop()
