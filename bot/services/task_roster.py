"""Keeps each posted task message showing its roster, with as few edits as a burst allows.

The coalescing is the shared refresher's (bot/services/refresher.py): a change marks the task in
its transaction; one worker re-renders the task's posts from the database and edits those whose
text changed, waiting for each edit to go out, so 1,000 presses make a few edits, the last one
showing the final state, whichever instance took the presses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.services.refresher import Editor, Refresher, Shown
from bot.storage.models import Community, Task, TaskPost
from bot.transport.port import Keyboard

if TYPE_CHECKING:
    from bot.services.tasks import TaskService

__all__ = ["Editor", "RosterRefresher"]


class RosterRefresher(Refresher[int]):
    """Keys are task ids."""

    kind = "task"

    def __init__(self, service: TaskService) -> None:
        super().__init__(service.ctx)
        self.service = service

    async def render(self, s: AsyncSession, key: int) -> list[Shown]:
        task = await s.get(Task, key)
        if task is None:
            return []
        community = await s.get(Community, task.community_id)
        tz = community.timezone if community else "Asia/Shanghai"
        rendered: dict[str, tuple[str, Keyboard]] = {}
        out: list[Shown] = []
        for post in await s.scalars(select(TaskPost).where(TaskPost.task_id == key)):
            if post.locale not in rendered:
                rendered[post.locale] = await self.service.render_post(s, task, post.locale, tz)
            text, keyboard = rendered[post.locale]
            out.append(Shown(post, text, keyboard, f"task:{key}:{post.chat_id}"))
        return out
