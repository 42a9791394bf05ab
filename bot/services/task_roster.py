"""Keeps each posted task message showing its roster, with as few edits as a burst allows."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from sqlalchemy import select, update

from bot.storage.models import Community, Outbox, Task, TaskPost
from bot.transport.port import Keyboard, OutMessage
from bot.ui.tasks import digest

if TYPE_CHECKING:
    from bot.services.tasks import TaskService

log = logging.getLogger("linli.tasks")

Editor = Callable[[OutMessage], Awaitable[object]]


class RosterRefresher:
    """Keeps each posted task message showing its roster, with as few edits as a burst allows.

    `touch(task)` marks it dirty; one worker per task re-renders the post from the database and
    sends an edit only if the text changed, then waits for that edit to go out (the sender's
    per-chat limits pace it). Touches that arrive meanwhile collapse into the next render, so
    1,000 presses make a few edits, the last one showing the final state, never a repeat of
    what the message already shows ("message is not modified").
    """

    def __init__(self, service: TaskService) -> None:
        self.service = service
        self.editor: Editor | None = None
        self._dirty: set[int] = set()
        self._workers: dict[int, asyncio.Task[None]] = {}
        self.edits = 0

    def touch(self, task_id: int) -> None:
        if self.editor is None:
            return
        self._dirty.add(task_id)
        if task_id not in self._workers:
            self._workers[task_id] = asyncio.get_running_loop().create_task(self._work(task_id),
                                                                           name=f"roster-{task_id}")

    async def idle(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._workers and loop.time() < deadline:
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        await self.idle()

    async def _work(self, task_id: int) -> None:
        retry = False
        try:
            while task_id in self._dirty:
                self._dirty.discard(task_id)
                edits, retry = await self._prepare(task_id)
                for msg in edits:
                    assert self.editor is not None
                    self.edits += 1
                    await self.editor(msg)
        except Exception:
            log.exception("roster refresh of task %s failed", task_id)
        finally:
            del self._workers[task_id]
            if retry:  # a post still on its way out: look again shortly
                asyncio.get_running_loop().call_later(1.0, self.touch, task_id)
            elif task_id in self._dirty:
                self.touch(task_id)

    async def _prepare(self, task_id: int) -> tuple[list[OutMessage], bool]:
        svc = self.service
        edits: list[OutMessage] = []
        retry = False
        async with svc.ctx.tx() as s:
            task = await s.get(Task, task_id)
            if task is None:
                return [], False
            community = await s.get(Community, task.community_id)
            tz = community.timezone if community else "Asia/Shanghai"
            posts = list(await s.scalars(select(TaskPost).where(TaskPost.task_id == task_id)))
            rendered: dict[str, tuple[str, Keyboard]] = {}
            for post in posts:
                if post.locale not in rendered:
                    rendered[post.locale] = await svc.render_post(s, task, post.locale, tz)
                text, keyboard = rendered[post.locale]
                shown = digest(text, keyboard)
                if shown == post.shown:
                    continue
                mid = post.message_id
                if mid is None and post.outbox_id is not None:
                    row = await s.get(Outbox, post.outbox_id)
                    if row is not None and row.status == "pending":
                        # Not sent yet: it goes out with the current roster instead.
                        res = await s.execute(
                            update(Outbox).where(Outbox.id == row.id, Outbox.status == "pending")
                            .values(text=text, keyboard={"rows": keyboard.to_json()})
                            .execution_options(synchronize_session=False)
                        )
                        if res.rowcount == 1:  # type: ignore[attr-defined]
                            post.shown = shown
                            continue
                    mid = row.message_id if row is not None else None
                if mid is None:
                    retry = True
                    continue
                # The instance that moves `shown` from what it read is the one that sends the edit.
                res = await s.execute(
                    update(TaskPost).where(TaskPost.id == post.id, TaskPost.shown == post.shown)
                    .values(shown=shown, message_id=mid).execution_options(synchronize_session=False)
                )
                if res.rowcount == 1:  # type: ignore[attr-defined]
                    edits.append(OutMessage(chat_id=post.chat_id, text=text, keyboard=keyboard,
                                            edit_message_id=mid, coalesce_key=f"task:{task_id}:{post.chat_id}"))
        return edits, retry
