"""Delivers outbox rows through the sender: stored first, marked when Telegram accepts them.

A row is claimed (pending -> sending) by a conditional UPDATE, so several instances never send
one row twice; a row left in `sending` by a crash is reclaimed after a lease and sent again
(the one unavoidable at-least-once case: Telegram has no idempotency key).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from datetime import timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.services.clock import Clock, system_clock
from bot.storage.db import writing
from bot.storage.models import Outbox
from bot.transport.port import Document, Keyboard, OutMessage
from bot.transport.sender import Sender

log = logging.getLogger("linli.outbox")


def to_out_message(row: Outbox) -> OutMessage:
    return OutMessage(
        chat_id=row.chat_id,
        text=row.text,
        thread_id=row.thread_id,
        reply_to_message_id=row.reply_to_message_id,
        keyboard=Keyboard.from_json(row.keyboard["rows"]) if row.keyboard else None,
        photo=row.photo,
        document=Document(row.document_name, row.document) if row.document and row.document_name else None,
        pin=row.pin,
    )


class OutboxWorker:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        sender: Sender,
        *,
        clock: Clock = system_clock,
        lease: float = 60.0,
        poll: float = 1.0,
        batch: int = 200,
        retry_delay: float = 5.0,
        max_attempts: int = 8,
    ) -> None:
        self.sessions = sessions
        self.sender = sender
        self.clock = clock
        self.lease = timedelta(seconds=lease)
        self.poll = poll
        self.batch = batch
        self.retry_delay = retry_delay
        self.max_attempts = max_attempts
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._busy_chats: set[int] = set()
        self._held: set[int] = set()  # rows this instance claimed and has not marked yet
        self._renewed = 0.0
        self._stopping = False

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="outbox")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task:
            await self._task
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self._renew_leases()
                claimed = await self.claim()
                for chat_id, rows in claimed.items():
                    self._held.update(r.id for r in rows)
                    self._busy_chats.add(chat_id)
                    task = asyncio.create_task(self._deliver_chat(chat_id, rows))
                    self._inflight.add(task)
                    task.add_done_callback(self._inflight.discard)
            except Exception:
                log.exception("outbox cycle failed")
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll)
            except TimeoutError:
                pass
            self._wake.clear()

    async def _renew_leases(self) -> None:
        """Rows still in our hands (a long flood wait, a slow chat) keep their claim fresh, so no
        other instance takes them for abandoned and sends them again."""
        loop = asyncio.get_running_loop()
        if not self._held or loop.time() - self._renewed < self.lease.total_seconds() / 3:
            return
        self._renewed = loop.time()
        async with writing(self.sessions) as session:
            await session.execute(
                update(Outbox)
                .where(Outbox.id.in_(list(self._held)), Outbox.status == "sending")
                .values(claimed_at=self.clock())
                .execution_options(synchronize_session=False)
            )

    async def claim(self) -> dict[int, list[Outbox]]:
        """Claim due rows, oldest first, keeping each chat's messages in order across instances.

        A chat is skipped while any claimer (this instance or another) holds rows of it, and its
        rows are taken only from the head of its queue up to the first row not due yet (a retry
        waiting its turn), so nothing overtakes. Busy chats are left out in the query itself, so
        one chat's backlog never stalls the others.
        """
        now = self.clock()
        stale = now - self.lease
        async with writing(self.sessions) as session:
            held = select(Outbox.chat_id).where(Outbox.status == "sending", Outbox.claimed_at >= stale)
            due = or_(
                (Outbox.status == "pending") & (Outbox.not_before <= now),
                (Outbox.status == "sending") & (Outbox.claimed_at < stale),
            )
            query = select(Outbox).where(due, Outbox.chat_id.not_in(held))
            if self._busy_chats:
                query = query.where(Outbox.chat_id.not_in(list(self._busy_chats)))
            # SKIP LOCKED (PostgreSQL): instances claiming at once take different rows instead of
            # queueing behind each other's locks. SQLite has one writer anyway and ignores it.
            query = query.order_by(Outbox.id).limit(self.batch).with_for_update(skip_locked=True)
            candidates = list(await session.scalars(query))
            if not candidates:
                return {}
            chats = {r.chat_id for r in candidates}
            waiting = Outbox.chat_id.in_(chats)
            heads = dict(
                (await session.execute(
                    select(Outbox.chat_id, func.min(Outbox.id))
                    .where(waiting, Outbox.status.in_(("pending", "sending")))
                    .group_by(Outbox.chat_id)
                )).all()
            )
            blocked_from = dict(
                (await session.execute(
                    select(Outbox.chat_id, func.min(Outbox.id))
                    .where(waiting, Outbox.status == "pending", Outbox.not_before > now)
                    .group_by(Outbox.chat_id)
                )).all()
            )
            by_chat: dict[int, list[Outbox]] = defaultdict(list)
            closed: set[int] = set()
            for row in candidates:
                chat = row.chat_id
                if chat in closed:
                    continue
                first = chat not in by_chat
                if (first and row.id != heads.get(chat)) or row.id > blocked_from.get(chat, row.id):
                    closed.add(chat)  # an earlier row of this chat is not due yet: the chat waits
                    continue
                # Conditional UPDATE: only one claimer wins a row.
                still_claimable = (
                    Outbox.status == "pending"
                    if row.status == "pending"
                    else (Outbox.status == "sending") & (Outbox.claimed_at < stale)
                )
                res = await session.execute(
                    update(Outbox)
                    .where(Outbox.id == row.id, still_claimable)
                    .values(status="sending", claimed_at=now)
                    .execution_options(synchronize_session=False)
                )
                if res.rowcount == 1:  # type: ignore[attr-defined]
                    by_chat[chat].append(row)
                else:
                    closed.add(chat)  # someone else got there first: leave the chat to them
            return dict(by_chat)

    async def _deliver_chat(self, chat_id: int, rows: list[Outbox]) -> None:
        try:
            for n, row in enumerate(rows):  # in order within one chat
                if not await self._deliver(row):
                    await self._release(rows[n + 1 :])  # a retry must not be overtaken by what follows
                    break
        finally:
            self._busy_chats.discard(chat_id)
            self._held.difference_update(r.id for r in rows)
            self._wake.set()

    async def _release(self, rows: list[Outbox]) -> None:
        if not rows:
            return
        async with writing(self.sessions) as session:
            await session.execute(
                update(Outbox)
                .where(Outbox.id.in_([r.id for r in rows]), Outbox.status == "sending")
                .values(status="pending", claimed_at=None)
                .execution_options(synchronize_session=False)
            )

    async def _deliver(self, row: Outbox) -> bool:
        """Send one row and record the outcome; False when it waits for a retry (the chat waits too)."""
        try:
            result = await self.sender.send(to_out_message(row))
        except Exception as exc:  # a bug in rendering must not wedge the queue
            log.exception("outbox row %s failed", row.id)
            result = None
            error = repr(exc)[:500]
        async with writing(self.sessions) as session:
            values: dict[str, object]
            if result is not None and result.ok:
                values = {
                    "status": "sent",
                    "sent_at": self.clock(),
                    "message_id": result.message_ids[0] if result.message_ids else None,
                    "error": None,
                }
            elif result is not None and result.permanent:
                log.warning("outbox row %s to %s refused: %s", row.id, row.chat_id, result.error)
                values = {"status": "failed", "error": (result.error or "")[:500]}
            elif result is not None and result.retry_after is not None:
                # Flood control: Telegram said when; that is not a failed attempt.
                values = {
                    "status": "pending",
                    "error": (result.error or "")[:500],
                    "not_before": self.clock() + timedelta(seconds=result.retry_after + 0.5),
                    "claimed_at": None,
                }
            else:
                attempts = row.attempts + 1
                err = result.error if result is not None else error
                if attempts >= self.max_attempts:
                    values = {"status": "failed", "error": (err or "")[:500], "attempts": attempts}
                else:
                    delay = self.retry_delay * (2 ** (attempts - 1))
                    values = {
                        "status": "pending",
                        "attempts": attempts,
                        "error": (err or "")[:500],
                        "not_before": self.clock() + timedelta(seconds=delay),
                        "claimed_at": None,
                    }
            await session.execute(update(Outbox).where(Outbox.id == row.id).values(**values))
        return values["status"] != "pending"

    async def drain(self, within: float = 10.0) -> None:
        """Wait until nothing due is pending or in flight (tests and shutdown)."""
        deadline = asyncio.get_running_loop().time() + within
        while asyncio.get_running_loop().time() < deadline:
            async with self.sessions() as session:
                left = await session.scalar(
                    select(Outbox.id)
                    .where(Outbox.status.in_(("pending", "sending")), Outbox.not_before <= self.clock())
                    .limit(1)
                )
            if left is None and not self._inflight:
                return
            self.wake()
            await asyncio.sleep(0.05)
