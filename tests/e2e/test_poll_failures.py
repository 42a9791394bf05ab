"""A failed getUpdates is logged the same way on both frameworks: one line on "linli.poll", at the
level the shared error table gives its kind (a passing failure a warning, a refusal an error), and
not again by the framework itself. Polling goes on afterwards."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e.harness import BotUnderTest
from tests.fakeapi.server import FakeTelegram

CASES: list[tuple[str, Callable[[FakeTelegram], Any], int, str]] = [
    ("500", lambda tg: tg.fail_next("getUpdates", status=500), logging.WARNING, "transient"),
    ("dropped", lambda tg: tg.fail_next("getUpdates", drop=True), logging.WARNING, "transient"),
    ("409", lambda tg: tg.fail_next("getUpdates", status=409,
                                    description="Conflict: terminated by other getUpdates request"),
     logging.ERROR, "refused"),
]


def _poll_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "linli.poll"]


@pytest.mark.parametrize("name,fail,level,kind", CASES, ids=[c[0] for c in CASES])
async def test_a_failed_poll_is_one_line_at_the_tables_level(
    tg: FakeTelegram, bot: BotUnderTest, caplog: pytest.LogCaptureFixture,
    name: str, fail: Callable[[FakeTelegram], Any], level: int, kind: str,
) -> None:
    alice = tg.user(1, "Alice")
    chat = tg.private_chat(alice)
    caplog.set_level(logging.DEBUG)
    fail(tg)
    for _ in range(200):  # the poll under way ends within its 1 s timeout; the next one fails
        if _poll_lines(caplog):
            break
        await asyncio.sleep(0.05)
    lines = _poll_lines(caplog)
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert lines[0].levelno == level
    assert getattr(lines[0], "error_kind", None) == kind
    assert lines[0].getMessage().startswith(f"getUpdates failed ({kind}): ")
    # The frameworks' own lines about it are not there (aiogram's error and backoff warning; PTB's).
    others = [r for r in caplog.records if r.name != "linli.poll" and r.levelno >= logging.WARNING
              and ("fetch updates" in r.getMessage() or "getUpdates" in r.getMessage())]
    assert others == []
    # Polling goes on.
    since = tg.mark()
    tg.send(alice, chat, "/help")
    await tg.wait_text(chat, "", since=since, timeout=30)
    assert len(_poll_lines(caplog)) == 1
