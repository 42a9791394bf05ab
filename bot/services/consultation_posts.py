"""Consultation posts kept up to date with few edits, and group commit for ballot presses.

Both follow the volunteer tasks' shape (bot/services/task_roster.py, task_batches.py): a touched
post is re-rendered from the database by one worker per post group, and an edit goes out only when
what it shows changed, so a burst of presses becomes a handful of edits ending on the latest
state; presses of one consultation that arrive while its transaction runs share the next one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from sqlalchemy import event, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from bot.storage.models import ConsultPost, Outbox
from bot.transport.port import Keyboard, OutMessage
from bot.ui.tasks import digest

log = logging.getLogger("linli.consultations")

Editor = Callable[[OutMessage], Awaitable[object]]
Key = tuple[str, int]  # (post kind, proposal or consultation id)
# (session, kind, ref_id, locale) -> what the post shows now; None when its subject is gone
Render = Callable[[AsyncSession, str, int, str], Awaitable[tuple[str, Keyboard | None] | None]]


class PostRefresher:
    def __init__(self, sessions: Callable[[], Any], render: Render) -> None:
        self.tx = sessions  # ServiceContext.tx
        self.render = render
        self.editor: Editor | None = None
        self._dirty: set[Key] = set()
        self._workers: dict[Key, asyncio.Task[None]] = {}
        self.edits = 0

    def touch(self, kind: str, ref_id: int) -> None:
        if self.editor is None:
            return
        key = (kind, ref_id)
        self._dirty.add(key)
        if key not in self._workers:
            self._workers[key] = asyncio.get_running_loop().create_task(self._work(key), name=f"cpost-{kind}-{ref_id}")

    def touch_after_commit(self, s: AsyncSession, keys: Iterable[Key]) -> None:
        """Re-render once the caller's transaction has committed (a render before would see the old state)."""
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return

        def after_commit(_session: Session) -> None:
            for kind, ref_id in wanted:
                try:
                    self.touch(kind, ref_id)
                except RuntimeError:  # no running loop (a synchronous test): nothing to edit
                    return

        event.listen(s.sync_session, "after_commit", after_commit, once=True)

    async def idle(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._workers and loop.time() < deadline:
            await asyncio.sleep(0.02)

    async def _work(self, key: Key) -> None:
        retry = False
        try:
            while key in self._dirty:
                self._dirty.discard(key)
                edits, retry = await self._prepare(key)
                for msg in edits:
                    assert self.editor is not None
                    self.edits += 1
                    await self.editor(msg)
        except Exception:
            log.exception("refresh of %s %s failed", *key)
        finally:
            del self._workers[key]
            if retry:  # a post still on its way out: look again shortly
                asyncio.get_running_loop().call_later(1.0, self.touch, *key)
            elif key in self._dirty:
                self.touch(*key)

    async def _prepare(self, key: Key) -> tuple[list[OutMessage], bool]:
        kind, ref_id = key
        edits: list[OutMessage] = []
        retry = False
        async with self.tx() as s:
            posts = list(await s.scalars(select(ConsultPost).where(ConsultPost.kind == kind,
                                                                   ConsultPost.ref_id == ref_id)))
            rendered: dict[str, tuple[str, Keyboard | None] | None] = {}
            for post in posts:
                if post.locale not in rendered:
                    rendered[post.locale] = await self.render(s, kind, ref_id, post.locale)
                shape = rendered[post.locale]
                if shape is None:
                    continue
                text, keyboard = shape
                shown = digest(text, keyboard)
                if shown == post.shown:
                    continue
                mid = post.message_id
                if mid is None and post.outbox_id is not None:
                    row = await s.get(Outbox, post.outbox_id)
                    if row is not None and row.status == "pending":
                        # Not sent yet: it goes out showing the current state instead.
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
                # The instance that moves `shown` from what it read is the one that sends the edit.
                res = await s.execute(
                    update(ConsultPost).where(ConsultPost.id == post.id, ConsultPost.shown == post.shown)
                    .values(shown=shown, message_id=mid).execution_options(synchronize_session=False)
                )
                if res.rowcount == 1:  # type: ignore[attr-defined]
                    edits.append(OutMessage(chat_id=post.chat_id, text=text, keyboard=keyboard,
                                            edit_message_id=mid, coalesce_key=f"cpost:{kind}:{ref_id}:{post.chat_id}"))
        return edits, retry


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
