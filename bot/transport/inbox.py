"""The durable inbox: every update is stored before Telegram is told it arrived.

Polling: `getUpdates` → the batch is inserted (a redelivered update_id is ignored) → committed →
only then the next `getUpdates`, whose offset confirms the batch to Telegram. A batch that cannot
be stored (the database is locked, down) is fetched again: the offset does not move past it.
Webhook mode (bot/transport/webhook.py) answers 200 only after `store` committed.

Stored updates are handed to the dispatcher, which handles each in per-chat order and marks it
handled in the transaction of its effects and replies (bot/services/unit.py). At start, rows a
crash left unhandled are handed over first. The update itself (the JSON Telegram sent) is parsed
by the framework of the adapter (`Transport.events_of`). Logs carry update ids, never contents.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import aiohttp
from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import metrics
from bot.services.clock import Clock, system_clock
from bot.storage.db import writing
from bot.storage.models import InboxUpdate
from bot.transport.errors import CONNECT_TIMEOUT, POLL_READ_MARGIN, Answer, log_failed_poll
from bot.transport.port import Event

log = logging.getLogger("linli.inbox")

ALLOWED_UPDATES = ["message", "callback_query", "my_chat_member", "chat_member"]
_BODIES = ("message", "edited_message", "callback_query", "my_chat_member", "chat_member", "channel_post",
           "edited_channel_post", "chat_join_request")


_INBOX = InboxUpdate.__table__
# One statement per dialect, made once and run for a batch's rows at a time (executemany): a
# multi-row VALUES made per batch was compiled anew each time, at a cost above the insert's.
_STORE = {
    name: make_insert(_INBOX).on_conflict_do_nothing(index_elements=["update_id"]).returning(_INBOX.c.update_id)
    for name, make_insert in (("postgresql", postgresql.insert), ("sqlite", sqlite.insert))
}


@dataclass(slots=True)
class InboxItem:
    """One stored update, ready to be handled: its events (possibly none) and where it belongs."""

    update_id: int
    chat_id: int
    events: list[Event]
    received: float = field(default_factory=time.monotonic)  # monotonic, for the latency histogram


def who(payload: dict[str, Any]) -> tuple[int | None, int | None]:
    """(chat id, user id) of a raw update, read without a framework."""
    for key in _BODIES:
        body = payload.get(key)
        if isinstance(body, dict):
            user = (body.get("from") or {}).get("id")
            chat = body.get("chat") or (body.get("message") or {}).get("chat") or {}
            return chat.get("id"), user
    return None, None


def is_update(payload: Any) -> bool:
    return (isinstance(payload, dict) and isinstance(payload.get("update_id"), int)
            and not isinstance(payload.get("update_id"), bool) and len(payload) >= 2)


Sink = Callable[[InboxItem], Awaitable[None]]
Parse = Callable[[dict[str, Any]], list[Event]]


class Inbox:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        parse: Parse,
        sink: Sink,
        *,
        clock: Clock = system_clock,
        retention: timedelta = timedelta(days=7),
    ) -> None:
        self.sessions = sessions
        self.parse = parse
        self.sink = sink
        self.clock = clock
        self.retention = retention
        self.last_contact = 0.0  # monotonic time Telegram last answered (or called us)
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._http: aiohttp.ClientSession | None = None
        self._housekeeping: asyncio.Task[None] | None = None
        self._pending: set[int] = set()  # handed to the dispatcher, not yet done with
        self.sweep_seconds = 30.0

    # ------------------------------------------------------------------ storing

    async def store(self, payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Insert the updates (known update_ids are ignored) and commit; returns the new ones."""
        if not payloads:
            return []
        now = self.clock()
        rows = []
        for p in payloads:
            chat_id, user_id = who(p)
            rows.append({"update_id": p["update_id"], "chat_id": chat_id, "user_id": user_id, "payload": p,
                         "received_at": now, "attempts": 0})
        async with writing(self.sessions) as s:
            dialect = s.bind.dialect.name if s.bind else "sqlite"
            new = set((await s.execute(_STORE[dialect], rows)).scalars())
        metrics.UPDATES_RECEIVED.inc(len(new))
        if len(new) < len(payloads):
            log.info("ignored %d redelivered updates", len(payloads) - len(new))
        return [p for p in payloads if p["update_id"] in new]

    def item_of(self, p: dict[str, Any]) -> InboxItem:
        try:
            events = self.parse(p)
        except Exception:
            log.exception("update %s could not be read", p.get("update_id"))
            events = []
        chat_id, _ = who(p)
        return InboxItem(p["update_id"], chat_id or 0, events)

    async def hand_over(self, payloads: list[dict[str, Any]]) -> None:
        for p in sorted(payloads, key=lambda p: p["update_id"]):
            self._pending.add(p["update_id"])
            await self.sink(self.item_of(p))

    async def recover(self) -> int:
        """Hand over what a crash left stored but unhandled, oldest first."""
        n = 0
        last = -1
        while True:
            async with self.sessions() as s:
                rows = list((await s.execute(
                    select(InboxUpdate.update_id, InboxUpdate.payload)
                    .where(InboxUpdate.handled_at.is_(None), InboxUpdate.update_id > last)
                    .order_by(InboxUpdate.update_id).limit(500)
                )).all())
            if not rows:
                break
            last = rows[-1][0]
            await self.hand_over([p if p else {"update_id": uid} for uid, p in rows])
            n += len(rows)
        if n:
            log.warning("handling %d updates stored before the last stop", n)
        return n

    def settled(self, update_id: int) -> None:
        """The dispatcher is done with it (handled, or found handled elsewhere)."""
        self._pending.discard(update_id)

    async def adopt_orphans(self, older_than: timedelta = timedelta(minutes=1)) -> int:
        """Several instances (webhook mode): rows another instance stored and never handled (it
        died) are taken over after a while. Handling stays once: the first to mark a row wins."""
        cutoff = self.clock() - older_than
        async with self.sessions() as s:
            rows = list((await s.execute(
                select(InboxUpdate.update_id, InboxUpdate.payload)
                .where(InboxUpdate.handled_at.is_(None), InboxUpdate.received_at < cutoff)
                .order_by(InboxUpdate.update_id).limit(500)
            )).all())
        orphans = [p if p else {"update_id": uid} for uid, p in rows if uid not in self._pending]
        if orphans:
            log.warning("taking over %d updates left unhandled", len(orphans))
            await self.hand_over(orphans)
        return len(orphans)

    async def backlog(self) -> int:
        async with self.sessions() as s:
            return int(await s.scalar(
                select(func.count()).select_from(InboxUpdate).where(InboxUpdate.handled_at.is_(None))) or 0)

    async def prune(self) -> int:
        """Handled rows older than the retention go."""
        cutoff = self.clock() - self.retention
        async with writing(self.sessions) as s:
            result = await s.execute(delete(InboxUpdate).where(InboxUpdate.handled_at.is_not(None),
                                                               InboxUpdate.handled_at < cutoff))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def give_up(self, update_id: int) -> None:
        """An update that failed every attempt is marked handled, so its chat goes on."""
        async with writing(self.sessions) as s:
            await s.execute(update(InboxUpdate).where(InboxUpdate.update_id == update_id,
                                                      InboxUpdate.handled_at.is_(None))
                            .values(handled_at=self.clock(), attempts=InboxUpdate.attempts + 1))

    async def erase_user(self, session: AsyncSession, user_id: int) -> None:
        """/forget: the person's stored updates (and those of their private chat) keep their ids and
        nothing else; an unhandled one is then handled as an update with nothing in it."""
        await session.execute(update(InboxUpdate)
                              .where((InboxUpdate.user_id == user_id) | (InboxUpdate.chat_id == user_id))
                              .values(payload=None, user_id=None, chat_id=None))

    async def export_user(self, session: AsyncSession, user_id: int) -> dict[str, Any]:
        rows = await session.scalars(select(InboxUpdate).where(InboxUpdate.user_id == user_id)
                                     .order_by(InboxUpdate.update_id))
        return {"updates": [{"update_id": r.update_id, "received_at": r.received_at.isoformat(),
                 "handled_at": r.handled_at.isoformat() if r.handled_at else None, "update": r.payload}
                for r in rows]}

    def start_housekeeping(self, every: float = 3600.0) -> None:
        self._housekeeping = asyncio.create_task(self._prune_every(every), name="inbox-prune")

    async def _prune_every(self, every: float) -> None:
        last_prune = 0.0
        while True:
            try:
                if time.monotonic() - last_prune >= every:
                    last_prune = time.monotonic()
                    pruned = await self.prune()
                    if pruned:
                        log.info("pruned %d handled updates", pruned)
                await self.adopt_orphans()
            except Exception:
                log.exception("inbox housekeeping failed")
            await asyncio.sleep(self.sweep_seconds)

    # ------------------------------------------------------------------ polling

    def start_polling(self, token: str, api_base: str | None, *, timeout: int = 25) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._poll(token, api_base, timeout), name="inbox-polling")

    async def stop(self) -> None:
        self._stopping = True
        if self._housekeeping is not None:
            self._housekeeping.cancel()
            await asyncio.gather(self._housekeeping, return_exceptions=True)
            self._housekeeping = None
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def _call(self, url: str, params: dict[str, Any], read: float, answer: Answer | None = None) -> Any:
        if self._http is None:
            self._http = aiohttp.ClientSession()
        limits = aiohttp.ClientTimeout(total=CONNECT_TIMEOUT + read, sock_connect=CONNECT_TIMEOUT, sock_read=read)
        answer = answer or Answer()
        async with self._http.post(url, json=params, timeout=limits) as resp:
            answer.status = resp.status
            body = await resp.json(content_type=None)
            answer.body = body
        if not isinstance(body, dict) or not body.get("ok"):
            desc = body.get("description") if isinstance(body, dict) else "?"
            raise RuntimeError(f"{resp.status}: {desc}")
        self.last_contact = time.monotonic()
        return body.get("result")

    def start_webhook(self, token: str, api_base: str | None, *, url: str, secret: str, max_connections: int,
                      keepalive: float = 20.0) -> None:
        """Webhook mode: tell Telegram where to deliver (retrying until it has it), then keep in touch
        (getWebhookInfo) so /healthz knows Telegram answers. The webhook is left in place at stop:
        other instances may be serving it."""
        self._stopping = False
        base = f"{(api_base or 'https://api.telegram.org').rstrip('/')}/bot{token}"
        params = {"url": url, "secret_token": secret, "allowed_updates": ALLOWED_UPDATES,
                  "max_connections": max_connections, "drop_pending_updates": False}
        self._task = asyncio.create_task(self._webhook(base, params, keepalive), name="inbox-webhook")

    async def _webhook(self, base: str, params: dict[str, Any], keepalive: float) -> None:
        delay = 0.5
        while not self._stopping:
            try:
                await self._call(f"{base}/setWebhook", params, 10.0)
                log.info("webhook set")
                break
            except (aiohttp.ClientError, TimeoutError, RuntimeError, ValueError) as exc:
                log.warning("setWebhook failed: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
        while not self._stopping:
            await asyncio.sleep(keepalive)
            try:
                await self._call(f"{base}/getWebhookInfo", {}, 10.0)
            except (aiohttp.ClientError, TimeoutError, RuntimeError, ValueError) as exc:
                log.warning("getWebhookInfo failed: %s", exc)

    async def _poll(self, token: str, api_base: str | None, timeout: int) -> None:
        base = f"{(api_base or 'https://api.telegram.org').rstrip('/')}/bot{token}"
        delay = 0.5
        while not self._stopping:  # a webhook left by webhook mode would make getUpdates fail
            try:
                await self._call(f"{base}/deleteWebhook", {"drop_pending_updates": False}, 10.0)
                break
            except (aiohttp.ClientError, TimeoutError, RuntimeError, ValueError) as exc:
                log.warning("deleteWebhook failed: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
        offset: int | None = None
        delay = 0.5
        while not self._stopping:
            params: dict[str, Any] = {"timeout": timeout, "allowed_updates": ALLOWED_UPDATES}
            if offset is not None:
                params["offset"] = offset
            answer = Answer()
            try:
                batch = await self._call(f"{base}/getUpdates", params, timeout + POLL_READ_MARGIN, answer)
            except (aiohttp.ClientError, TimeoutError, RuntimeError, ValueError) as exc:
                log_failed_poll(answer, exc)  # one line, at the shared error table's level
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            delay = 0.5
            batch = [u for u in batch or [] if is_update(u)]
            if not batch:
                continue
            new = await self._store_until_stored(batch)
            if new is None:
                return
            offset = max(u["update_id"] for u in batch) + 1  # the next call confirms the batch
            await self.hand_over(new)

    async def _store_until_stored(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
        delay = 0.2
        while not self._stopping:
            try:
                return await self.store(batch)
            except Exception as exc:  # locked, down: the offset stays, so Telegram keeps the batch
                log.warning("storing updates %s..%s failed: %s", batch[0]["update_id"], batch[-1]["update_id"],
                            type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        return None
