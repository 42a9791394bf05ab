"""Keeps each resident chat's 承诺墙 message showing the pledges, with as few edits as a burst allows.

The same shape as the task roster (bot/services/task_roster.py): `touch(community)` marks it
dirty; one worker per community re-renders every wall post of it from the database and sends an
edit only where the text changed, waiting for it to go out; touches meanwhile collapse into the
next render. Edits carry a coalesce key, so the sender also keeps only the last of queued ones.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from sqlalchemy import select, update

from bot.storage.models import Community, Outbox, WallPost
from bot.transport.port import OutMessage
from bot.ui.i18n import Translator
from bot.ui.members import wall_message, wall_pages
from bot.ui.tasks import digest

if TYPE_CHECKING:
    from bot.services.members import MemberService

log = logging.getLogger("linli.members")

Editor = Callable[[OutMessage], Awaitable[object]]


class WallRefresher:
    def __init__(self, service: MemberService) -> None:
        self.service = service
        self.editor: Editor | None = None
        self._dirty: set[int] = set()
        self._workers: dict[int, asyncio.Task[None]] = {}
        self.edits = 0

    def touch(self, community_id: int) -> None:
        if self.editor is None:
            return
        self._dirty.add(community_id)
        if community_id not in self._workers:
            self._workers[community_id] = asyncio.get_running_loop().create_task(
                self._work(community_id), name=f"wall-{community_id}")

    async def idle(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._workers and loop.time() < deadline:
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        await self.idle()

    async def _work(self, community_id: int) -> None:
        retry = False
        try:
            while community_id in self._dirty:
                self._dirty.discard(community_id)
                edits, retry = await self._prepare(community_id)
                for msg in edits:
                    assert self.editor is not None
                    self.edits += 1
                    await self.editor(msg)
        except Exception:
            log.exception("wall refresh of community %s failed", community_id)
        finally:
            del self._workers[community_id]
            if retry:  # a wall still on its way out: look again shortly
                asyncio.get_running_loop().call_later(1.0, self.touch, community_id)
            elif community_id in self._dirty:
                self.touch(community_id)

    async def _prepare(self, community_id: int) -> tuple[list[OutMessage], bool]:
        svc = self.service
        edits: list[OutMessage] = []
        retry = False
        async with svc.ctx.tx() as s:
            community = await s.get(Community, community_id)
            if community is None:
                return [], False
            posts = list(await s.scalars(select(WallPost).where(WallPost.community_id == community_id)))
            if not posts:
                return [], False
            entries = await svc.wall_entries(s, community_id)
            pages_by_locale: dict[str, list[list[str]]] = {}
            for post in posts:
                tr = Translator(post.locale)
                if post.locale not in pages_by_locale:
                    pages_by_locale[post.locale] = wall_pages(tr, entries, community.timezone)
                text, keyboard, _page = wall_message(tr, community.name, pages_by_locale[post.locale], post.page,
                                                    post.id)
                shown = digest(text, keyboard)
                if shown == post.shown:
                    continue
                mid = post.message_id
                if mid is None and post.outbox_id is not None:
                    row = await s.get(Outbox, post.outbox_id)
                    if row is not None and row.status == "pending":
                        res = await s.execute(
                            update(Outbox).where(Outbox.id == row.id, Outbox.status == "pending")
                            .values(text=text, keyboard={"rows": keyboard.to_json()} if keyboard else None)
                            .execution_options(synchronize_session=False)
                        )
                        if res.rowcount == 1:  # type: ignore[attr-defined]
                            post.shown = shown
                            continue
                    mid = row.message_id if row is not None else None
                if mid is None:
                    retry = True
                    continue
                res = await s.execute(
                    update(WallPost).where(WallPost.id == post.id, WallPost.shown == post.shown)
                    .values(shown=shown, message_id=mid).execution_options(synchronize_session=False)
                )
                if res.rowcount == 1:  # type: ignore[attr-defined]
                    edits.append(OutMessage(chat_id=post.chat_id, text=text, keyboard=keyboard,
                                            edit_message_id=mid, coalesce_key=f"wall:{post.id}"))
        return edits, retry
