"""Coalesced edits of a task's roster with two instances (two services on two engines, one
database): the posted message ends on the final state, and no stale edit lands after a fresh one,
even when the instance that rendered first is the slower to edit; a holder that dies mid-edit
is taken over once its lease runs out. On PostgreSQL when set, and on SQLite (one file, two
engines)."""

from __future__ import annotations

import asyncio
import random
import re
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.services.tasks import TaskService
from bot.storage.db import make_engine
from bot.storage.models import Outbox, RefreshMark, Task, TaskPost
from bot.transport.port import OutMessage
from bot.transport.sender import SendResult
from tests.integration.test_tasks import MEMBERS, SAT, Setup, build, make_context

SLOTS = 10
COUNT = re.compile(rf"(\d+)/{SLOTS}")


@dataclass
class Screen:
    """What the member chat shows: each edit replaces the message's text when it lands."""

    shown: dict[int, str] = field(default_factory=dict)  # message id -> text
    landed: list[tuple[str, int]] = field(default_factory=list)  # (instance, claimed count shown)

    def editor(self, name: str, delay: float | tuple[float, float], started: asyncio.Event | None = None,
               hang: asyncio.Event | None = None):  # type: ignore[no-untyped-def]
        async def edit(msg: OutMessage) -> SendResult:
            if started is not None:
                started.set()
            if hang is not None:
                await hang.wait()  # a holder stuck mid-edit: its edit never lands
            await asyncio.sleep(delay if isinstance(delay, float) else random.uniform(*delay))
            assert msg.edit_message_id is not None and msg.text is not None
            self.shown[msg.edit_message_id] = msg.text
            m = COUNT.search(msg.text)
            assert m is not None, msg.text
            self.landed.append((name, int(m.group(1))))
            return SendResult(True, [msg.edit_message_id])

        return edit


async def _posted_task(su: Setup) -> tuple[int, int]:
    """A task whose post the outbox has sent: (task id, the post's message id)."""
    task = (await su.tasks.announce(actor_id=1, community_id=su.cid, args=f"社区义诊 | {SAT} | {SLOTS} | 5",
                                    chat_kind="member")).task
    async with su.w.ctx.tx() as s:
        post = await s.scalar(select(TaskPost).where(TaskPost.task_id == task.id))
        assert post is not None and post.outbox_id is not None
        await s.execute(update(Outbox).where(Outbox.id == post.outbox_id).values(status="sent", message_id=900))
        post.message_id = 900
    return task.id, 900


async def _second(engine: AsyncEngine, su: Setup) -> tuple[AsyncEngine, TaskService]:
    other_engine = make_engine(engine.url.render_as_string(hide_password=False))
    return other_engine, TaskService(make_context(other_engine, su.w.book, su.clock), batch_claims=False)


async def _final_text(su: Setup, task_id: int) -> str:
    async with su.w.ctx.read() as s:
        task = await s.get(Task, task_id)
        assert task is not None
        text, _ = await su.tasks.render_post(s, task, "zh", "Asia/Shanghai")
        return str(text)


async def _marks(su: Setup) -> int:
    async with su.w.ctx.read() as s:
        return int(await s.scalar(select(func.count()).select_from(RefreshMark)) or 0)


async def test_the_slow_first_instance_never_lands_a_stale_edit(engine: AsyncEngine) -> None:
    su = await build(engine)
    task_id, mid = await _posted_task(su)
    other_engine, other = await _second(engine, su)
    screen = Screen()
    a_editing = asyncio.Event()
    su.tasks.attach_editor(screen.editor("A", 0.4, started=a_editing))  # A renders first, edits slowly
    other.attach_editor(screen.editor("B", 0.0))  # B would land its fresh edit at once
    try:
        await su.tasks.claim(actor_id=MEMBERS[0].id, task_id=task_id)
        await asyncio.wait_for(a_editing.wait(), 5)  # A rendered 1/10 and its edit is on its way
        await other.claim(actor_id=MEMBERS[1].id, task_id=task_id)  # B changes the roster meanwhile
        await asyncio.sleep(0.05)
        await other.roster.idle()
        await su.tasks.roster.idle()
        await other.roster.idle()
    finally:
        await other.roster.stop()
        await other_engine.dispose()
    assert screen.shown[mid] == await _final_text(su, task_id)
    assert [n for _, n in screen.landed] == [1, 2]  # A's 1/10 first, then the 2/10 (A renders it again)
    assert await _marks(su) == 0  # nothing left marked


async def test_a_burst_across_two_instances_ends_on_the_final_state(engine: AsyncEngine) -> None:
    su = await build(engine)
    task_id, mid = await _posted_task(su)
    other_engine, other = await _second(engine, su)
    screen = Screen()
    su.tasks.attach_editor(screen.editor("A", (0.0, 0.15)))
    other.attach_editor(screen.editor("B", (0.0, 0.15)))
    services = [su.tasks, other]
    try:
        async def press(i: int) -> None:
            await asyncio.sleep(0.03 * i)
            await services[i % 2].claim(actor_id=MEMBERS[i].id, task_id=task_id)

        await asyncio.gather(*(press(i) for i in range(len(MEMBERS))))
        for _ in range(3):  # a worker of one may hand the last round to the other
            await su.tasks.roster.idle()
            await other.roster.idle()
            await asyncio.sleep(0.05)
    finally:
        await other.roster.stop()
        await other_engine.dispose()
    counts = [n for _, n in screen.landed]
    assert counts == sorted(counts), screen.landed  # never an older roster after a newer one
    assert counts[-1] == len(MEMBERS)
    assert screen.shown[mid] == await _final_text(su, task_id)
    assert len(counts) < len(MEMBERS) * 2  # coalesced: not an edit per press per instance
    assert await _marks(su) == 0


async def test_a_dead_holders_lease_runs_out_and_another_instance_takes_over(engine: AsyncEngine) -> None:
    su = await build(engine)
    task_id, mid = await _posted_task(su)
    other_engine, other = await _second(engine, su)
    screen = Screen()
    stuck, never = asyncio.Event(), asyncio.Event()
    su.tasks.attach_editor(screen.editor("A", 0.0, started=stuck, hang=never))  # A holds the key, then "dies"
    other.attach_editor(screen.editor("B", 0.0))
    try:
        await su.tasks.claim(actor_id=MEMBERS[0].id, task_id=task_id)
        await asyncio.wait_for(stuck.wait(), 5)
        await other.claim(actor_id=MEMBERS[1].id, task_id=task_id)
        await other.roster.idle()
        await other.roster.sweep()
        await other.roster.idle()
        assert screen.landed == []  # A's lease is live: B leaves the key to it
        su.clock.advance(other.roster.lease + timedelta(seconds=1))  # A never renewed: its lease ran out
        await other.roster.sweep()
        await other.roster.idle()
    finally:
        for worker in list(su.tasks.roster._workers.values()):
            worker.cancel()
        await other.roster.stop()
        await other_engine.dispose()
    assert screen.landed == [("B", 2)]
    assert screen.shown[mid] == await _final_text(su, task_id)
