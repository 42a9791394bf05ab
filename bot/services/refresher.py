"""Messages edited in place to show what the database holds: few edits per burst, in order across instances.

One `Refresher` per kind of message (a task's roster, a community's wall, consultation posts);
a subclass says how a key's posts render. The state of the coalescing lives in the database,
one `refresh_marks` row per key whose messages may be behind:

- A change marks its key in its own transaction (`mark`): the row's `version` is bumped (or the
  row made). After the commit the local worker is woken; several marks collapse into one render.
- Whoever renders and edits a key holds its lease (`holder`, `lease_until`), taken by a
  conditional UPDATE. It renders from the database only after taking it, so the render shows at
  least every change marked before; it sends the edits one by one and waits for each to land
  (the sender's per-chat limits pace them); then it drops the row if the version is still the
  one it took, or renders again. A change committed meanwhile bumps the version, so the
  conditional DELETE fails and nothing is missed; another instance's worker finds the lease held
  and leaves the key to the holder. One instance edits a key at a time, each edit newer than
  the last: a stale edit never lands after a fresh one.
- A live holder renews its leases while edits wait; a dead one's run out, and any instance's
  sweep takes over such keys (and keys marked by an instance that died before it woke a worker).

An edit goes out only where the digest of what a post would show differs from what it shows
(`shown`, recorded once the edit has landed), so a repeat is never sent ("message is not
modified"), and a post not sent yet is rewritten in the outbox instead of edited.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from sqlalchemy import delete, event, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from bot.storage.models import Outbox, RefreshMark
from bot.transport.port import Keyboard, OutMessage
from bot.ui.tasks import digest

if TYPE_CHECKING:
    from bot.services.base import ServiceContext

log = logging.getLogger("linli.refresher")

K = TypeVar("K", bound=Hashable)
Editor = Callable[[OutMessage], Awaitable[object]]

LEASE_SECONDS = 30.0  # a holder that stops renewing for this long is taken for dead
SWEEP_SECONDS = 5.0  # how often leases are renewed and abandoned keys looked for
RETRY_SECONDS = 1.0  # a post still on its way out: looked at again after this
SWEEP_BATCH = 200


@dataclass
class Shown:
    """What one post (a row with id, chat_id, outbox_id, message_id and shown) should show now."""

    post: Any
    text: str
    keyboard: Keyboard | None
    coalesce_key: str


@dataclass
class _Edit:
    show: Shown
    digest: str
    message_id: int


class Refresher(Generic[K]):
    """Keeps the messages of each key showing what the database holds (see the module's text).

    Subclasses implement `render(session, key)`: the key's posts and what each should show; and,
    for keys other than ints, `encode`/`decode` (how a key is stored in `refresh_marks.key`)."""

    kind = ""  # refresh_marks.kind of this refresher's keys

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.editor: Editor | None = None
        self.instance = uuid.uuid4().hex  # this refresher's name as a lease holder
        self.lease = timedelta(seconds=LEASE_SECONDS)
        self.sweep_every = SWEEP_SECONDS
        self.retry_after = RETRY_SECONDS
        self.edits = 0
        self._workers: dict[K, asyncio.Task[None]] = {}
        self._again: set[K] = set()  # woken while its worker ran: look once more after it
        self._held: set[K] = set()  # keys whose lease this refresher holds now
        self._sweeper: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    # ---- what a subclass says

    async def render(self, s: AsyncSession, key: K) -> list[Shown]:
        raise NotImplementedError

    def encode(self, key: K) -> str:
        return str(key)

    def decode(self, key: str) -> K:
        return int(key)  # type: ignore[return-value]

    # ---- marking

    async def mark(self, s: AsyncSession, *keys: K) -> None:
        """In the transaction of a change the messages show: they are refreshed once it commits."""
        if self.editor is None or not keys:  # nothing edits here (service tests): nothing to record
            return
        wanted = list(dict.fromkeys(keys))
        await self._bump(s, wanted)

        def after_commit(_session: Session) -> None:
            for key in wanted:
                try:
                    self.wake(key)
                except RuntimeError:  # no running loop (a synchronous test): nothing to edit
                    return

        event.listen(s.sync_session, "after_commit", after_commit, once=True)

    async def touch(self, *keys: K) -> None:
        """Refresh these keys' messages now (at a start: an edit may have been lost), in a transaction of its own."""
        if self.editor is None or not keys:
            return
        async with self.ctx.tx() as s:
            await self.mark(s, *keys)

    def wake(self, key: K) -> None:
        """Look at a key: render and edit it if it is marked and nobody else holds it."""
        if self.editor is None:
            return
        if key in self._workers:
            self._again.add(key)
            return
        self._workers[key] = asyncio.get_running_loop().create_task(self._work(key), name=f"{self.kind}-{key}")

    async def _bump(self, s: AsyncSession, keys: list[K]) -> None:
        # Sorted, so transactions marking several keys lock their rows in one order (no deadlock).
        rows = [{"kind": self.kind, "key": k, "version": 1} for k in sorted({self.encode(k) for k in keys})]
        dialect = s.bind.dialect.name if s.bind else "sqlite"
        ins = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(RefreshMark).values(rows)
        await s.execute(ins.on_conflict_do_update(index_elements=["kind", "key"],
                                                  set_={"version": RefreshMark.version + 1}))

    async def _one(self, stmt: Any) -> Any:
        """One statement on `refresh_marks`, committed at once. On PostgreSQL it runs in autocommit,
        so the row lock lasts the statement only, never an event-loop turn: a change marking the key
        (a claim batch, holding its task's lock) is not kept waiting behind a busy loop. SQLite has
        one writer anyway: a transaction of its own under the writer lock."""
        sessions = self.ctx.sessions
        bind = sessions.kw.get("bind")
        if bind is not None and bind.dialect.name == "postgresql":
            async with bind.connect() as conn:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                return await conn.execute(stmt)
        async with self.ctx.tx() as s:
            return await s.execute(stmt.execution_options(synchronize_session=False))

    # ---- running

    def start(self) -> None:
        """Renew held leases and take over abandoned keys, every few seconds, until `stop`."""
        if self.editor is not None and self._sweeper is None:
            self._stopping.clear()
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_loop(), name=f"{self.kind}-sweep")

    async def idle(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._workers and loop.time() < deadline:
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        await self.idle()
        if self._sweeper is not None:
            self._stopping.set()  # not cancelled: a sweep in a transaction finishes it
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None

    async def _sweep_loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._stopping.wait(), self.sweep_every)
                return
            except TimeoutError:
                pass
            try:
                await self.sweep()
            except Exception:
                log.exception("%s refresher: sweep failed", self.kind)

    async def sweep(self) -> None:
        now = self.ctx.clock()
        mine = RefreshMark.kind == self.kind
        if self._held:
            await self._one(update(RefreshMark).where(mine, RefreshMark.holder == self.instance,
                                                      RefreshMark.key.in_([self.encode(k) for k in self._held]))
                            .values(lease_until=now + self.lease))
        async with self.ctx.read() as s:
            keys = list(await s.scalars(
                select(RefreshMark.key)
                .where(mine, or_(RefreshMark.holder.is_(None), RefreshMark.lease_until < now))
                .limit(SWEEP_BATCH)))
        for enc in keys:
            key = self.decode(enc)
            if key not in self._workers:
                self.wake(key)

    async def _work(self, key: K) -> None:
        enc = self.encode(key)
        self._again.discard(key)
        retry = False
        version: int | None = None
        try:
            version = await self._take(enc)
            while version is not None:
                self._held.add(key)
                edits, retry = await self._prepare(key)
                landed: list[_Edit] = []
                for e in edits:
                    assert self.editor is not None
                    self.edits += 1
                    msg = OutMessage(chat_id=e.show.post.chat_id, text=e.show.text, keyboard=e.show.keyboard,
                                     edit_message_id=e.message_id, coalesce_key=e.show.coalesce_key)
                    result = await self.editor(msg)
                    if getattr(result, "ok", True):
                        landed.append(e)
                version = await self._settle(enc, version, landed, retry)
        except Exception:
            log.exception("%s refresher: refresh of %s failed", self.kind, key)
            if version is not None:
                await self._give_up(key, enc, version)
        finally:
            self._held.discard(key)
            del self._workers[key]
            if retry:  # a post still on its way out: look again shortly
                asyncio.get_running_loop().call_later(self.retry_after, self.wake, key)
            elif key in self._again:
                self.wake(key)

    async def _take(self, enc: str) -> int | None:
        """The key's version if it is marked and now ours; None when there is nothing to do or another holds it."""
        now = self.ctx.clock()
        res = await self._one(
            update(RefreshMark)
            .where(RefreshMark.kind == self.kind, RefreshMark.key == enc,
                   or_(RefreshMark.holder.is_(None), RefreshMark.holder == self.instance,
                       RefreshMark.lease_until < now))
            .values(holder=self.instance, lease_until=now + self.lease)
            .returning(RefreshMark.version))
        return res.scalar()

    async def _prepare(self, key: K) -> tuple[list[_Edit], bool]:
        """Render the key's posts: the edits to send, and whether a post is still on its way out."""
        edits: list[_Edit] = []
        retry = False
        async with self.ctx.tx() as s:
            for show in await self.render(s, key):
                post = show.post
                shown = digest(show.text, show.keyboard)
                if shown == post.shown:
                    continue
                mid = post.message_id
                if mid is None and post.outbox_id is not None:
                    row = await s.get(Outbox, post.outbox_id)
                    if row is not None and row.status == "pending":
                        # Not sent yet: it goes out showing the current state instead.
                        keyboard = {"rows": show.keyboard.to_json()} if show.keyboard else None
                        res = await s.execute(
                            update(Outbox).where(Outbox.id == row.id, Outbox.status == "pending")
                            .values(text=show.text, keyboard=keyboard).execution_options(synchronize_session=False)
                        )
                        if res.rowcount == 1:  # type: ignore[attr-defined]
                            post.shown = shown
                            continue
                    mid = row.message_id if row is not None else None
                    if mid is None and row is not None and row.status != "failed":
                        retry = True  # being sent: its message id comes soon
                        continue
                if mid is not None:
                    edits.append(_Edit(show, shown, mid))
        return edits, retry

    async def _settle(self, enc: str, version: int, landed: list[_Edit], retry: bool) -> int | None:
        """Record what the posts show now; then drop the mark if nothing was marked since `version`
        (None: done), or keep the lease and return the newer version to render."""
        if landed:
            async with self.ctx.tx() as s:
                for e in landed:
                    model = type(e.show.post)
                    await s.execute(
                        update(model).where(model.id == e.show.post.id, model.shown == e.show.post.shown)
                        .values(shown=e.digest, message_id=e.message_id).execution_options(synchronize_session=False))
        # A crash here is harmless: the next holder finds the posts showing what they show and only drops the mark.
        mine = (RefreshMark.kind == self.kind, RefreshMark.key == enc, RefreshMark.holder == self.instance)
        if retry:  # keep the mark, free the key: whoever looks next carries on
            await self._one(update(RefreshMark).where(*mine).values(holder=None, lease_until=None))
            return None
        res = await self._one(delete(RefreshMark).where(*mine, RefreshMark.version == version))
        if res.rowcount == 1:
            return None
        # Marked again meanwhile (or the lease ran out and another took it: then None).
        res = await self._one(update(RefreshMark).where(*mine).values(lease_until=self.ctx.clock() + self.lease)
                              .returning(RefreshMark.version))
        return res.scalar()

    async def _give_up(self, key: K, enc: str, version: int) -> None:
        """After a failed refresh: drop the mark as a finished one would be (a render that fails
        would fail again); a mark made since is kept and looked at once more."""
        mine = (RefreshMark.kind == self.kind, RefreshMark.key == enc, RefreshMark.holder == self.instance)
        try:
            res = await self._one(delete(RefreshMark).where(*mine, RefreshMark.version == version))
            if res.rowcount == 1:
                return
            await self._one(update(RefreshMark).where(*mine).values(holder=None, lease_until=None))
            self._again.add(key)
        except Exception:  # the database is away: the lease runs out and a sweep retries then
            log.warning("%s refresher: could not release %s", self.kind, key, exc_info=True)
