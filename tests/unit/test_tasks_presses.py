"""Presses of a parallel button (认领) are handled side by side, yet reach their handler in the order
they arrived, and each gets exactly one answer, also when its handler fails."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

from bot.dispatch import Dispatcher
from bot.handlers.base import Context, Router
from bot.services.errors import UserError
from bot.services.people import Observed
from bot.transport.port import CallbackAnswer, Chat, Event, EventKind, User

GROUP = Chat(-100, "supergroup", "党支部")


class SlowPeople:
    """Recording a person takes longer the earlier they pressed: without the gate, order would flip."""

    async def observe(self, event: Event) -> Observed:
        await asyncio.sleep(0.002 * (30 - event.update_id))
        return Observed(None, None, None)


class Answers:
    def __init__(self) -> None:
        self.answers: list[CallbackAnswer] = []

    async def answer_callback(self, answer: CallbackAnswer) -> bool:
        self.answers.append(answer)
        return True

    async def send(self, msg: Any) -> None:
        return None


async def test_parallel_presses_enter_in_arrival_order_and_overlap() -> None:
    router = Router()
    entered: list[int] = []

    @router.callback("p", parallel=True)
    async def press(ctx: Context) -> None:
        entered.append(ctx.event.update_id)
        await asyncio.sleep(0.05)  # a slow transaction: the others must not wait for it
        if ctx.event.update_id == 7:
            raise UserError("err_task_gone")
        ctx.answer(f"ok {ctx.event.update_id}")

    sender = Answers()
    services = SimpleNamespace(people=SlowPeople(), settings=SimpleNamespace(default_locale="zh"), sender=sender)
    dispatcher = Dispatcher(services, router)  # type: ignore[arg-type]
    t0 = time.monotonic()
    for i in range(30):
        await dispatcher.on_event(Event(EventKind.CALLBACK, GROUP, User(100 + i, f"m{i}"), update_id=i,
                                        callback_id=f"q{i}", callback_data="p:1"))
    await dispatcher.idle(10)
    assert entered == list(range(30))
    assert time.monotonic() - t0 < 30 * 0.05  # side by side, not one after another
    by_id = {a.callback_id: a for a in sender.answers}
    assert len(sender.answers) == 30 == len(by_id)  # exactly one answer each
    assert by_id["q7"].show_alert and by_id["q3"].text == "ok 3"
