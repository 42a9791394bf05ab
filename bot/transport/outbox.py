"""Delivers outbox rows through the sender: stored first, marked when Telegram accepts them.

- Claiming: a row is claimed (pending -> sending) by a conditional UPDATE, so several instances
  never send one row twice; a row left in `sending` by a crash is reclaimed after a lease.
- Exactly once, but for one window: each part of a row is marked in flight (`inflight_at`,
  committed) just before its call and delivered (`part_ids`, the message id) as soon as the
  answer is in. A row reclaimed with `inflight_at` set was in that window when its instance died:
  Telegram may have accepted the part, and it is sent again (counted in RESENDS). The Bot API has
  no idempotency key; nothing else is ever sent twice, and a delivered part never is.
- Chats that change: a 400 "group chat was upgraded" moves the row (and the chat's binding and
  pending rows) to the new id and sends there; a 403 "kicked"/"not a member" marks the chat
  inactive (the secretary told once); a 403 "blocked" marks the person not started, and a row with
  a fallback goes to the group instead.
- Busy chats: rows with a fold spec that would wait behind their chat's limit go privately to the
  person they answer (when they started the bot) and the rest go out as one message per interval.
- Queued edits with one coalesce key: only the last is sent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any, Protocol

from sqlalchemy import bindparam, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import metrics
from bot.services.clock import Clock, system_clock
from bot.storage.db import writing
from bot.storage.models import Outbox
from bot.transport.errors import ErrorKind
from bot.transport.port import Button, Document, Fold, Keyboard, OutMessage
from bot.transport.sender import Sender, SendResult
from bot.transport.split import TEXT_LIMIT, visible_length

log = logging.getLogger("linli.outbox")

FOLD_MAX_BUTTONS = 24  # a folded message keeps one button per line up to this many
FOLD_BUTTONS_PER_ROW = 3

FinalHook = Callable[[AsyncSession, Outbox], Awaitable[None]]


class ChatEvents(Protocol):
    """What the outbox learns about chats from Telegram's refusals (implemented by the services)."""

    async def chat_migrated(self, session: AsyncSession, old_chat_id: int, new_chat_id: int) -> None: ...

    async def chat_gone(self, session: AsyncSession, chat_id: int, error: str) -> None: ...

    async def user_gone(self, session: AsyncSession, user_id: int) -> None: ...


def to_out_message(row: Outbox) -> OutMessage:
    return OutMessage(
        chat_id=row.chat_id,
        text=row.text,
        thread_id=row.thread_id,
        reply_to_message_id=row.reply_to_message_id,
        keyboard=Keyboard.from_json(row.keyboard["rows"]) if row.keyboard else None,
        photo=row.photo,
        document=Document(row.document_name, row.document) if row.document and row.document_name else None,
        document_id=row.document_id,
        pin=row.pin,
        edit_message_id=row.edit_message_id,
        coalesce_key=row.coalesce_key,
        fold=Fold.from_json(row.fold),
    )


def msg_sent(parts: _RowParts) -> bool:
    return bool(parts.now)


class _Mark:
    """Plain values for some outbox rows: marks that meet in one transaction and have the same shape
    go to the database as one statement (executemany) instead of one each."""

    __slots__ = ("ids", "values", "sending_only", "then")

    def __init__(self, ids: list[int], values: dict[str, Any], sending_only: bool,
                 then: Callable[[AsyncSession], Awaitable[None]] | None) -> None:
        self.ids, self.values, self.sending_only, self.then = ids, values, sending_only, then

    def shape(self) -> tuple[bool, tuple[tuple[str, bool], ...]]:
        # NULLs are written as literals: a JSON column would store a bound None as JSON 'null'.
        return self.sending_only, tuple(sorted((k, v is None) for k, v in self.values.items()))


async def _apply_marks(session: AsyncSession, marks: list[_Mark]) -> None:
    table = Outbox.__table__
    shapes: dict[tuple[bool, tuple[tuple[str, bool], ...]], list[_Mark]] = defaultdict(list)
    for m in marks:
        shapes[m.shape()].append(m)
    for (sending_only, cols), group in shapes.items():
        stmt = update(table).where(table.c.id == bindparam("b_id"))
        if sending_only:
            stmt = stmt.where(table.c.status == "sending")
        stmt = stmt.values({k: None if null else bindparam(f"v_{k}", type_=table.c[k].type) for k, null in cols})
        # In id order: instances marking the same rows lock them in one order (PostgreSQL).
        params = sorted(({"b_id": i, **{f"v_{k}": v for k, v in m.values.items() if v is not None}}
                         for m in group for i in m.ids), key=lambda p: p["b_id"])
        await session.execute(stmt, params)


Work = Callable[[AsyncSession], Awaitable[None]] | _Mark


class _GroupCommit:
    """Writes from many concurrent sends share one transaction ("group commit"): at 30 messages a
    second each marked in flight, then delivered, then final, separate transactions would queue
    for SQLite's one writer (holding rate-limit places meanwhile). A write returns once committed."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions
        self._pending: list[tuple[Work, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None

    async def run(self, work: Work) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((work, fut))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._flush(), name="outbox-commit")
        await fut

    async def mark(self, ids: list[int], values: dict[str, Any], *, sending_only: bool,
                   then: Callable[[AsyncSession], Awaitable[None]] | None = None) -> None:
        """Set plain `values` on the rows (only those still `sending` if asked), then run `then`."""
        await self.run(_Mark(ids, values, sending_only, then))

    @staticmethod
    async def _apply(session: AsyncSession, works: list[Work]) -> None:
        marks = [w for w in works if isinstance(w, _Mark)]
        if marks:
            await _apply_marks(session, marks)
        for w in works:
            if isinstance(w, _Mark):
                if w.then is not None:
                    await w.then(session)
            else:
                await w(session)

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # let the writes of this instant join
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                async with writing(self.sessions) as session:
                    await self._apply(session, [w for w, _ in batch])
            except Exception:
                # One bad write must not sink the others: each again, alone.
                for work, fut in batch:
                    try:
                        async with writing(self.sessions) as session:
                            await self._apply(session, [work])
                        fut.set_result(None)
                    except Exception as exc:
                        fut.set_exception(exc)
                continue
            for _, fut in batch:
                if not fut.done():
                    fut.set_result(None)


class _RowParts:
    """The sender's PartLog for one or more rows that go out as one message (a folded one).

    The at-least-once window: `sending` commits the mark just before a part's call, and the part
    is recorded delivered as soon as its answer is in — an earlier part at once, the last one with
    the row's outcome, which is written right after send() returns (no call in between unless
    the message is pinned, so a pinned one commits its last part at once too)."""

    def __init__(self, worker: OutboxWorker, ids: list[int], done: Sequence[int | None] | None,
                 *, pin: bool = False) -> None:
        self._worker = worker
        self._ids = ids
        self._pin = pin
        self._done: list[int | None] = list(done or [])
        self.now: list[int | None] = list(self._done)

    @property
    def done(self) -> Sequence[int | None]:
        return self._done

    async def sending(self, part: int) -> None:
        await self._worker._group.mark(self._ids, {"inflight_at": self._worker.clock()}, sending_only=False)

    async def sent(self, part: int, message_id: int | None, last: bool = False) -> None:
        self.now.append(message_id)
        if last and not self._pin:
            return  # recorded with the outcome, in the same instant (see _record)
        values: dict[str, Any] = {"part_ids": list(self.now), "inflight_at": None}
        if part == 0:
            values["message_id"] = message_id
        await self._worker._group.mark(self._ids, values, sending_only=False)


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
        self.chat_events: ChatEvents | None = None
        self._group = _GroupCommit(sessions)
        self._final_hooks: list[FinalHook] = []
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._busy_chats: set[int] = set()
        self._held: set[int] = set()  # rows this instance claimed and has not marked yet
        self._next_fold: dict[int, float] = {}  # chat -> monotonic time its next folded message may go
        self._renewed = 0.0
        self._stopping = False

    def on_final(self, hook: FinalHook) -> None:
        """Called in the transaction that marks a row sent or failed for good (e.g. a notice's delivery)."""
        self._final_hooks.append(hook)

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        self._stopping = False
        self._stop.clear()
        self._task = asyncio.create_task(self._run(), name="outbox")

    async def stop(self) -> None:
        self._stopping = True
        self._stop.set()
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

    async def _write(self, stmt: Any) -> None:
        async with writing(self.sessions) as session:
            await session.execute(stmt.execution_options(synchronize_session=False))

    async def _renew_leases(self) -> None:
        """Rows still in our hands (a long flood wait, a slow chat) keep their claim fresh, so no
        other instance takes them for abandoned and sends them again."""
        loop = asyncio.get_running_loop()
        if not self._held or loop.time() - self._renewed < self.lease.total_seconds() / 3:
            return
        self._renewed = loop.time()
        # Rows locked in id order, skipping those a mark holds right now (being marked, they need
        # no renewal): locking them in the IN list's order deadlocked against the marks (PostgreSQL).
        mine = (select(Outbox.id).where(Outbox.id.in_(list(self._held)), Outbox.status == "sending")
                .order_by(Outbox.id).with_for_update(skip_locked=True))
        await self._write(update(Outbox).where(Outbox.id.in_(mine)).values(claimed_at=self.clock()))

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
                by_chat[chat].append(row)
            # Conditional UPDATEs, two statements for the lot: only one claimer wins a row.
            won: set[int] = set()
            fresh = [r.id for rows in by_chat.values() for r in rows if r.status == "pending"]
            stale_ids = [r.id for rows in by_chat.values() for r in rows if r.status == "sending"]
            if fresh:
                won.update(await session.scalars(
                    update(Outbox).where(Outbox.id.in_(fresh), Outbox.status == "pending")
                    .values(status="sending", claimed_at=now).returning(Outbox.id)
                    .execution_options(synchronize_session=False)
                ))
            if stale_ids:
                won.update(await session.scalars(
                    update(Outbox).where(Outbox.id.in_(stale_ids), Outbox.status == "sending", Outbox.claimed_at < stale)
                    .values(status="sending", claimed_at=now).returning(Outbox.id)
                    .execution_options(synchronize_session=False)
                ))
            claimed: dict[int, list[Outbox]] = {}
            give_back: list[int] = []
            for chat, rows in by_chat.items():
                mine: list[Outbox] = []
                for n, row in enumerate(rows):
                    if row.id not in won:  # someone else got there first: leave the rest of the chat to them
                        give_back += [r.id for r in rows[n + 1 :] if r.id in won]
                        break
                    if row.status == "sending" and row.inflight_at is not None:
                        # Its instance died with a call in flight: this may be a second copy.
                        metrics.RESENDS.inc()
                        log.warning("outbox row %s to %s was in flight at a crash; sending again", row.id, chat)
                    mine.append(row)
                if mine:
                    claimed[chat] = mine
            if give_back:
                await session.execute(
                    update(Outbox).where(Outbox.id.in_(give_back)).values(status="pending", claimed_at=None)
                    .execution_options(synchronize_session=False)
                )
            return claimed

    # ------------------------------------------------------------------ one chat

    async def _deliver_chat(self, chat_id: int, rows: list[Outbox]) -> None:
        queue = list(rows)
        try:
            while queue and not self._stopping:
                head = queue[0]
                if head.fold and self._busy(chat_id):
                    if not await self._fold(chat_id, queue):
                        break
                    continue
                queue.pop(0)
                if not await self._deliver(head, queue):
                    break
            await self._release(queue)  # a retry must not be overtaken by what follows
        finally:
            self._busy_chats.discard(chat_id)
            self._held.difference_update(r.id for r in rows)
            self._wake.set()

    def _busy(self, chat_id: int) -> bool:
        """This chat's next message would wait behind its limit (or it is in a folding spell)."""
        return self.sender.delay(chat_id) > 0 or time.monotonic() < self._next_fold.get(chat_id, 0.0)

    async def _release(self, rows: list[Outbox]) -> None:
        if not rows:
            return
        self._held.difference_update(r.id for r in rows)
        await self._write(
            update(Outbox).where(Outbox.id.in_([r.id for r in rows]), Outbox.status == "sending")
            .values(status="pending", claimed_at=None)
        )

    async def _superseded(self, row: Outbox) -> bool:
        """A queued edit with a later one of the same key behind it: only the last is worth sending."""
        if row.coalesce_key is None:
            return False
        async with self.sessions() as session:
            later = await session.scalar(
                select(Outbox.id).where(
                    Outbox.chat_id == row.chat_id, Outbox.coalesce_key == row.coalesce_key, Outbox.id > row.id,
                    Outbox.status.in_(("pending", "sending")),
                ).limit(1)
            )
        return later is not None

    async def _edit_target(self, row: Outbox) -> tuple[int | None, bool]:
        """(message id, found) of the message an `edit_of` row edits."""
        if row.edit_of is None:
            return row.edit_message_id, True
        async with self.sessions() as session:
            target = (await session.execute(
                select(Outbox.message_id, Outbox.status).where(Outbox.id == row.edit_of)
            )).first()
        if target is None or target.message_id is None:
            return None, False
        return target.message_id, True

    async def _deliver(self, row: Outbox, rest: list[Outbox]) -> bool:
        """Send one row and record the outcome; False when the chat must stop here (a retry waits,
        or the chat moved or is gone) — the rows in `rest` are released or settled then."""
        if await self._superseded(row):
            await self._finish([row], {"status": "sent", "sent_at": self.clock(), "error": "superseded"})
            return True
        msg = to_out_message(row)
        if row.edit_of is not None:
            mid, found = await self._edit_target(row)
            # The message to edit never got an id (it failed, or its answer was unreadable): say it anew.
            msg.edit_message_id = mid if found else None
        parts = _RowParts(self, [row.id], row.part_ids, pin=row.pin)
        try:
            result = await self.sender.send(msg, parts)
        except Exception as exc:  # a bug in rendering must not wedge the queue
            log.exception("outbox row %s failed", row.id)
            result = SendResult(False, [], repr(exc)[:500], kind=ErrorKind.TRANSIENT)
        return await self._record([row], result, rest, parts)

    async def _record(self, rows: list[Outbox], result: SendResult, rest: list[Outbox],
                      parts: _RowParts | None = None) -> bool:
        lead = rows[0]
        now = self.clock()
        error = (result.error or "")[:500]
        if result.ok:
            values: dict[str, Any] = {
                "status": "sent", "sent_at": now, "error": None, "inflight_at": None, "pin_error": result.pin_error,
                "message_id": result.message_ids[0] if result.message_ids else None,
            }
            if parts is not None and msg_sent(parts):
                values["part_ids"] = list(parts.now)
            await self._finish(rows, values, lead_id=lead.id if len(rows) > 1 else None)
            return True
        if result.kind is ErrorKind.MIGRATED and result.migrate_to_chat_id is not None:
            new = result.migrate_to_chat_id
            log.info("chat %s became %s; following it", lead.chat_id, new)
            async with writing(self.sessions) as session:
                if self.chat_events is not None:
                    await self.chat_events.chat_migrated(session, lead.chat_id, new)
                await self._move(session, lead.chat_id, new)
            self._held.difference_update(r.id for r in rows + rest)
            rest.clear()  # moved with the rest of the chat's queue: the new chat's lane sends them
            return False
        if result.permanent and result.kind is ErrorKind.CHAT_GONE and lead.chat_id < 0:
            # The bot is not in the group any more: nothing queued for it can go; the chat stops
            # being a target until the bot is added again.
            gone = rows + rest
            rest.clear()
            await self._finish(gone, {"status": "failed", "error": error, "inflight_at": None},
                               before=lambda s: self._chat_gone(s, lead.chat_id, error))
            return False
        if result.permanent and result.kind is ErrorKind.USER_GONE and lead.chat_id > 0:
            async with writing(self.sessions) as session:
                if self.chat_events is not None:
                    await self.chat_events.user_gone(session, lead.chat_id)
            if lead.fallback and len(rows) == 1:
                await self._reroute(lead, lead.fallback)
                return True
            await self._finish(rows, {"status": "failed", "error": error, "inflight_at": None})
            return True
        if result.permanent:
            log.warning("outbox row %s to %s refused: %s", lead.id, lead.chat_id, result.error)
            await self._finish(rows, {"status": "failed", "error": error, "inflight_at": None})
            return True
        if result.retry_after is not None:
            # Flood control: Telegram said when; that is not a failed attempt.
            await self._write(
                update(Outbox).where(Outbox.id.in_([r.id for r in rows]), Outbox.status == "sending")
                .values(status="pending", error=error, claimed_at=None, inflight_at=None,
                        not_before=now + timedelta(seconds=result.retry_after + 0.5))
            )
            self._held.difference_update(r.id for r in rows)
            return False
        attempts = lead.attempts + 1
        if attempts >= self.max_attempts:
            await self._finish(rows, {"status": "failed", "error": error, "attempts": attempts, "inflight_at": None})
            return True
        delay = self.retry_delay * (2 ** (attempts - 1))
        await self._write(
            update(Outbox).where(Outbox.id.in_([r.id for r in rows]), Outbox.status == "sending")
            .values(status="pending", attempts=attempts, error=error, claimed_at=None,
                    not_before=now + timedelta(seconds=delay))
        )
        self._held.difference_update(r.id for r in rows)
        return False

    async def _finish(
        self,
        rows: list[Outbox],
        values: dict[str, Any],
        *,
        lead_id: int | None = None,
        before: Callable[[AsyncSession], Awaitable[None]] | None = None,
    ) -> None:
        """Mark rows final and run the final hooks, in one transaction. The hooks see the rows as
        they are now (the values applied to our copies: no query for them)."""
        ids = [r.id for r in rows]
        # What folding or a fallback needed (names, mentions) is not kept once the row is settled.
        values = {**values, "fold": None, "fallback": None}
        for r in rows:
            for k, v in values.items():
                setattr(r, k, v)
            if lead_id is not None and r.id != lead_id:
                r.folded_into = lead_id

        async def hooks(session: AsyncSession) -> None:
            for row in rows:
                if row.ref:
                    for hook in self._final_hooks:
                        await hook(session, row)

        if before is None and lead_id is None:  # the common case: a mark that may share a statement
            await self._group.mark(ids, values, sending_only=True, then=hooks if self._final_hooks else None)
            self._held.difference_update(ids)
            return

        async def work(session: AsyncSession) -> None:
            if before is not None:
                await before(session)
            await session.execute(
                update(Outbox).where(Outbox.id.in_(ids), Outbox.status == "sending").values(**values)
                .execution_options(synchronize_session=False)
            )
            if lead_id is not None:
                await session.execute(
                    update(Outbox).where(Outbox.id.in_(ids), Outbox.id != lead_id).values(folded_into=lead_id)
                    .execution_options(synchronize_session=False)
                )
            await hooks(session)

        await self._group.run(work)
        self._held.difference_update(ids)

    async def _chat_gone(self, session: AsyncSession, chat_id: int, error: str) -> None:
        if self.chat_events is not None:
            await self.chat_events.chat_gone(session, chat_id, error)

    async def _move(self, session: AsyncSession, old: int, new: int) -> None:
        """Every row still waiting for `old` goes to `new` (the chat's order is kept: ids do not change)."""
        await session.execute(
            update(Outbox)
            .where(Outbox.chat_id == old, Outbox.status.in_(("pending", "sending")))
            .values(chat_id=new, moved_from=func.coalesce(Outbox.moved_from, old), status="pending",
                    claimed_at=None, inflight_at=None)
            .execution_options(synchronize_session=False)
        )

    async def _reroute(self, row: Outbox, to: dict[str, Any]) -> None:
        """Send `row` somewhere else instead (a private answer, or a group for someone who blocked us)."""
        await self._write(
            update(Outbox).where(Outbox.id == row.id, Outbox.status == "sending").values(
                chat_id=int(to["chat_id"]), thread_id=to.get("thread_id"), reply_to_message_id=to.get("reply_to"),
                text=to.get("text") or row.text, fold=None, fallback=None, part_ids=None, inflight_at=None,
                moved_from=func.coalesce(Outbox.moved_from, row.chat_id), status="pending", claimed_at=None,
            )
        )
        self._held.discard(row.id)

    # ------------------------------------------------------------------ busy chats: folding

    async def _fold(self, chat_id: int, queue: list[Outbox]) -> bool:
        """The head of `queue` may fold and the chat is busy: answer privately whoever can be, wait
        for the chat's next turn, then send the run of same-kind rows as one message."""
        head = queue[0]
        key, thread = (head.fold or {}).get("key"), head.thread_id

        def same(r: Outbox) -> bool:
            return bool(r.fold) and r.fold.get("key") == key and r.thread_id == thread  # type: ignore[union-attr]

        await self._answer_privately([r for r in queue if same(r) and (r.fold or {}).get("private_chat_id")], queue)
        if not queue or not same(queue[0]):
            return True
        wait = max(self.sender.delay(chat_id), self._next_fold.get(chat_id, 0.0) - time.monotonic())
        if wait > 0:
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=wait)
                return False  # stopping: leave the rest for the next start
            except TimeoutError:
                pass
        # More may have come meanwhile: take them too (they are behind ours in the chat's queue).
        queue.extend(await self._claim_more(chat_id, max(r.id for r in queue)))
        await self._answer_privately([r for r in queue if same(r) and (r.fold or {}).get("private_chat_id")], queue)
        run: list[Outbox] = []
        for r in queue:
            if not same(r):
                break
            run.append(r)
        if not run:
            return True
        run = self._fits(run)
        for r in run:
            queue.remove(r)
        self._next_fold[chat_id] = time.monotonic() + self.sender.pace(chat_id)
        if len(run) == 1:
            return await self._deliver(run[0], queue)
        msg = self._folded(run)
        log.info("folded %s messages to %s into one", len(run), chat_id)
        parts = _RowParts(self, [r.id for r in run], None)
        try:
            result = await self.sender.send(msg, parts)
        except Exception as exc:
            log.exception("folded send to %s failed", chat_id)
            result = SendResult(False, [], repr(exc)[:500], kind=ErrorKind.TRANSIENT)
        if not result.ok and not result.permanent:
            queue[:0] = run  # all of them retry later, folded again or not
            return await self._record(run, result, [], parts)
        return await self._record(run, result, queue, parts)

    async def _answer_privately(self, rows: list[Outbox], queue: list[Outbox]) -> None:
        for r in rows:
            fold = r.fold or {}
            await self._reroute(r, {"chat_id": fold["private_chat_id"], "text": fold.get("private_text") or r.text})
            queue.remove(r)

    async def _claim_more(self, chat_id: int, after_id: int) -> list[Outbox]:
        """Pending rows of a chat we hold, due now, right behind the ones we have."""
        now = self.clock()
        got: list[Outbox] = []
        async with writing(self.sessions) as session:
            rows = list(await session.scalars(
                select(Outbox).where(Outbox.chat_id == chat_id, Outbox.id > after_id, Outbox.status == "pending",
                                     Outbox.not_before <= now).order_by(Outbox.id).limit(self.batch)
            ))
            for row in rows:
                res = await session.execute(
                    update(Outbox).where(Outbox.id == row.id, Outbox.status == "pending")
                    .values(status="sending", claimed_at=now).execution_options(synchronize_session=False)
                )
                if res.rowcount != 1:  # type: ignore[attr-defined]
                    break
                got.append(row)
        self._held.update(r.id for r in got)
        return got

    @staticmethod
    def _fits(run: list[Outbox]) -> list[Outbox]:
        """As many as fit one message (the rest go in the next one)."""
        head = (run[0].fold or {}).get("head", "")
        size = visible_length(head) + 16
        out: list[Outbox] = []
        for r in run:
            line = visible_length((r.fold or {}).get("line", "")) + 1
            if out and size + line > TEXT_LIMIT:
                break
            size += line
            out.append(r)
        return out

    @staticmethod
    def _folded(run: list[Outbox]) -> OutMessage:
        first = run[0]
        head = str((first.fold or {}).get("head", "")).replace("{n}", str(len(run)))
        lines = [str((r.fold or {}).get("line", "")) for r in run]
        buttons: list[Button] = []
        for r in run:
            kb = Keyboard.from_json(r.keyboard["rows"]) if r.keyboard else None
            tag = (r.fold or {}).get("tag")
            if kb is None:
                continue
            for b in (b for row in kb.rows for b in row):
                if len(buttons) < FOLD_MAX_BUTTONS:
                    buttons.append(Button(f"{b.text} {tag}" if tag else b.text, b.data, b.url))
        rows = [buttons[i : i + FOLD_BUTTONS_PER_ROW] for i in range(0, len(buttons), FOLD_BUTTONS_PER_ROW)]
        return OutMessage(
            chat_id=first.chat_id, text=head + "\n" + "\n".join(lines), thread_id=first.thread_id,
            keyboard=Keyboard.of(*rows) if rows else None,
        )

    # ------------------------------------------------------------------ tests and shutdown

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
