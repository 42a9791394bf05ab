"""Consultation posts kept up to date with few edits, and group commit for ballot presses.

The posts' coalescing is the shared refresher's (bot/services/refresher.py), keyed by post group
(kind, proposal or consultation id): a change marks the group in its transaction; one worker
re-renders its posts from the database and edits those whose text changed, so a burst of presses
becomes a handful of edits ending on the latest state. Presses of one consultation that arrive
while its transaction runs share the next one (`PressBatcher`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.services.refresher import Editor, Refresher, Shown
from bot.storage.models import ConsultPost
from bot.transport.port import Keyboard

if TYPE_CHECKING:
    from bot.services.base import ServiceContext

__all__ = ["Editor", "Key", "PostRefresher", "PressBatcher"]

Key = tuple[str, int]  # (post kind, proposal or consultation id)
# (session, kind, ref_id, locale) -> what the post shows now; None when its subject is gone
Render = Callable[[AsyncSession, str, int, str], Awaitable[tuple[str, Keyboard | None] | None]]


class PostRefresher(Refresher[Key]):
    kind = "cpost"

    def __init__(self, ctx: ServiceContext, render: Render) -> None:
        super().__init__(ctx)
        self.render_one = render

    def encode(self, key: Key) -> str:
        return f"{key[0]}:{key[1]}"

    def decode(self, key: str) -> Key:
        kind, _, ref_id = key.partition(":")
        return kind, int(ref_id)

    async def render(self, s: AsyncSession, key: Key) -> list[Shown]:
        kind, ref_id = key
        rendered: dict[str, tuple[str, Keyboard | None] | None] = {}
        out: list[Shown] = []
        for post in await s.scalars(select(ConsultPost).where(ConsultPost.kind == kind, ConsultPost.ref_id == ref_id)):
            if post.locale not in rendered:
                rendered[post.locale] = await self.render_one(s, kind, ref_id, post.locale)
            shape = rendered[post.locale]
            if shape is not None:
                out.append(Shown(post, shape[0], shape[1], f"cpost:{kind}:{ref_id}:{post.chat_id}"))
        return out


class PressBatcher:
    """Group commit for presses of one subject: while its transaction runs, the presses that arrive
    wait together and go into the next one, in press order. Exactness does not depend on it (the
    database enforces it per transaction); it keeps a burst of presses to a few transactions."""

    MAX_BATCH = 500

    def __init__(self, run: Callable[[int, list[tuple[int, Any]]], Awaitable[list[Any]]]) -> None:
        self.run = run  # (subject id, [(actor, payload)] in press order) -> one result or error each
        self._pending: dict[int, list[tuple[int, int, int, Any, asyncio.Future[Any]]]] = {}
        self._workers: dict[int, asyncio.Task[None]] = {}
        self._arrivals = 0

    async def submit(self, subject: int, actor_id: int, payload: Any, order: int | None) -> Any:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._arrivals += 1
        self._pending.setdefault(subject, []).append((order or 0, self._arrivals, actor_id, payload, fut))
        if subject not in self._workers:
            self._workers[subject] = loop.create_task(self._loop(subject), name=f"presses-{subject}")
        result = await asyncio.shield(fut)
        if isinstance(result, BaseException):
            raise result
        return result

    async def _loop(self, subject: int) -> None:
        try:
            while self._pending.get(subject):
                waiting = sorted(self._pending.pop(subject), key=lambda p: (p[0], p[1]))
                for i in range(0, len(waiting), self.MAX_BATCH):
                    chunk = waiting[i:i + self.MAX_BATCH]
                    try:
                        results = await self.run(subject, [(uid, payload) for _, _, uid, payload, _ in chunk])
                    except Exception as exc:  # the whole batch: closed, gone, or a fault
                        for *_, fut in chunk:
                            if not fut.done():
                                fut.set_exception(exc)
                        continue
                    for (*_, fut), result in zip(chunk, results, strict=True):
                        if not fut.done():
                            fut.set_result(result)
        finally:
            del self._workers[subject]
            if self._pending.get(subject):
                self._workers[subject] = asyncio.get_running_loop().create_task(self._loop(subject))
