"""A failing handler logs the update's id and the error, never what was typed or who typed it."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from bot.dispatch import Dispatcher
from bot.handlers.base import Context, Router
from bot.services.people import Observed
from bot.transport.port import Chat, Event, EventKind, User

SECRET = "秘密：3号楼502的家暴求助"
NAME = "Zelda Quimby"


@dataclass
class FakeSender:
    sent: list[Any] = field(default_factory=list)

    async def send(self, msg: Any) -> None:
        self.sent.append(msg)

    async def answer_callback(self, answer: Any) -> None:
        self.sent.append(answer)


class FakePeople:
    async def observe(self, event: Event) -> Observed:
        return Observed(None, None, None)


async def test_a_failing_handler_logs_ids_not_content(caplog: pytest.LogCaptureFixture) -> None:
    router = Router()

    @router.command("boom")
    async def boom(ctx: Context) -> None:
        raise RuntimeError("it broke")

    sender = FakeSender()
    services = SimpleNamespace(people=FakePeople(), sender=sender, settings=SimpleNamespace(default_locale="zh"))
    dispatcher = Dispatcher(services, router)  # type: ignore[arg-type]
    user = User(7, NAME, username="zelda")
    event = Event(EventKind.MESSAGE, Chat(7, "private"), user, update_id=4242, text=f"/boom {SECRET}",
                  command="boom", args=SECRET)
    with caplog.at_level(logging.DEBUG, logger="linli.dispatch"):
        await dispatcher.handle(event)
        await asyncio.sleep(0.01)
    lines = [r for r in caplog.records if r.name == "linli.dispatch"]
    assert lines, "the failure is logged"
    text = "\n".join(r.getMessage() + (logging.Formatter().formatException(r.exc_info) if r.exc_info else "")
                     for r in lines)
    assert "4242" in text and "it broke" in text
    assert SECRET not in text and NAME not in text and "zelda" not in text
    assert sender.sent, "the user is still told something went wrong"
