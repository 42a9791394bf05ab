"""One table of errors for both adapters: the same failure is the same port error on aiogram and on
python-telegram-bot (bot/transport/errors.py), and a 200 the framework cannot read is a delivery."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from bot.transport.errors import ErrorKind, kind_of
from bot.transport.port import Accepted, BotApi, BotApiError, PermanentError, RetryAfter, TransientError
from tests.e2e.harness import BotUnderTest
from tests.fakeapi.server import FakeTelegram


@asynccontextmanager
async def open_api(base_url: str, token: str, framework: str) -> AsyncIterator[BotApi]:
    """The adapter's BotApi alone, talking to a server at base_url."""
    if framework == "aiogram":
        from bot.transport.aiogram_adapter import AiogramTransport

        transport = AiogramTransport(token, base_url)
        try:
            yield transport.api
        finally:
            await transport.bot.session.close()
    else:
        from bot.transport.ptb_adapter import PtbTransport

        ptb = PtbTransport(token, base_url)
        for request in ptb._requests:  # the HTTP clients only: Bot.initialize() would call getMe
            await request.initialize()
        try:
            yield ptb.api
        finally:
            for request in ptb._requests:
                await request.shutdown()


@pytest.fixture
async def api(tg: FakeTelegram, framework: str) -> AsyncIterator[BotApi]:
    async with open_api(tg.base_url, tg.token, framework) as a:
        yield a


Case = tuple[str, Callable[[FakeTelegram], Any], tuple[Any, ...]]

# (name, how Telegram fails, what the port must raise: (type, code or retry, kind, maybe_sent / migrated))
CASES: list[Case] = [
    ("429", lambda tg: tg.fail_next("sendMessage", status=429, retry_after=3), (RetryAfter, 3.0, ErrorKind.FLOOD)),
    ("400", lambda tg: tg.fail_next("sendMessage", status=400, description="Bad Request: chat not found"),
     (PermanentError, 400, ErrorKind.REFUSED)),
    ("401", lambda tg: tg.fail_next("sendMessage", status=401), (PermanentError, 401, ErrorKind.REFUSED)),
    ("403 blocked", lambda tg: tg.fail_next("sendMessage", status=403,
                                            description="Forbidden: bot was blocked by the user"),
     (PermanentError, 403, ErrorKind.USER_GONE)),
    ("403 kicked", lambda tg: tg.fail_next("sendMessage", status=403,
                                           description="Forbidden: bot was kicked from the supergroup chat"),
     (PermanentError, 403, ErrorKind.CHAT_GONE)),
    ("404", lambda tg: tg.fail_next("sendMessage", status=404), (PermanentError, 404, ErrorKind.REFUSED)),
    ("409", lambda tg: tg.fail_next("sendMessage", status=409), (PermanentError, 409, ErrorKind.REFUSED)),
    ("413", lambda tg: tg.fail_next("sendMessage", status=413, description="Request Entity Too Large"),
     (PermanentError, 413, ErrorKind.REFUSED)),
    ("418 unknown", lambda tg: tg.fail_next("sendMessage", status=418, description="I'm a teapot"),
     (PermanentError, 418, ErrorKind.REFUSED)),
    ("500", lambda tg: tg.fail_next("sendMessage", status=500), (TransientError, False, ErrorKind.TRANSIENT)),
    ("502", lambda tg: tg.fail_next("sendMessage", status=502), (TransientError, False, ErrorKind.TRANSIENT)),
    ("dropped", lambda tg: tg.fail_next("sendMessage", drop=True), (TransientError, True, ErrorKind.TRANSIENT)),
    ("200 fields missing", lambda tg: tg.fail_next("sendMessage", garble="fields"),
     (Accepted, 1, ErrorKind.ACCEPTED)),
    ("200 not json", lambda tg: tg.fail_next("sendMessage", garble="text"), (Accepted, None, ErrorKind.ACCEPTED)),
]


def shape(exc: BaseException) -> tuple[Any, ...]:
    if isinstance(exc, RetryAfter):
        return (RetryAfter, exc.seconds, kind_of(exc))
    if isinstance(exc, PermanentError):
        return (PermanentError, exc.code, kind_of(exc))
    if isinstance(exc, TransientError):
        return (TransientError, exc.maybe_sent, kind_of(exc))
    if isinstance(exc, Accepted):
        return (Accepted, exc.message_id, kind_of(exc))
    return (type(exc),)


@pytest.mark.parametrize("name,fail,expected", CASES, ids=[c[0] for c in CASES])
async def test_same_failure_same_kind_on_both_frameworks(
    tg: FakeTelegram, api: BotApi, name: str, fail: Callable[[FakeTelegram], Any], expected: tuple[Any, ...]
) -> None:
    tg.private_chat(tg.user(1, "Alice"))
    fail(tg)
    with pytest.raises(BotApiError) as caught:
        await api.send_message(1, "hello")
    assert shape(caught.value) == expected


async def test_a_migrated_group_names_its_new_id(tg: FakeTelegram, api: BotApi) -> None:
    group = tg.group("basic", basic=True)
    new = tg.migrate(group, tg.user(2, "Admin"), notify=False)
    with pytest.raises(PermanentError) as caught:
        await api.send_message(group["id"], "hello")
    assert caught.value.migrate_to_chat_id == new["id"] and kind_of(caught.value) == ErrorKind.MIGRATED
    assert (await api.send_message(new["id"], "hello")).chat_id == new["id"]


async def test_no_server_is_transient_and_not_sent(framework: str) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with open_api(f"http://127.0.0.1:{port}", "1:x", framework) as a:
        with pytest.raises(TransientError) as caught:
            await a.send_message(1, "x")
        assert caught.value.maybe_sent is False


async def test_a_200_is_a_delivery_on_both_frameworks(
    tg: FakeTelegram, bot: BotUnderTest, caplog: pytest.LogCaptureFixture
) -> None:
    """An older library meeting a newer Bot API: Telegram said 200, the framework could not read the
    answer. The message is out: recorded as delivered, a warning logged, never sent again."""
    users = [tg.user(60 + i, f"用户{i}") for i in range(3)]
    chats = [tg.private_chat(u) for u in users]
    tg.fail_next("sendMessage", garble="fields", chat_id=users[0]["id"])
    tg.fail_next("sendMessage", garble="text", chat_id=users[1]["id"])
    with caplog.at_level(logging.WARNING, logger="linli.sender"):
        for u, c in zip(users, chats, strict=True):
            tg.send(u, c, "/help")
        await bot.settle()
    for u in users:
        assert len([r for r in tg.sent if r.chat_id == u["id"] and r.method == "sendMessage"]) == 1
    assert len([c for c in tg.calls if c[0] == "sendMessage"]) == 3  # not one attempt more
    assert sum("answer was unreadable" in r.getMessage() for r in caplog.records) == 2
    assert not any("crashed" in r.getMessage() for r in caplog.records)
