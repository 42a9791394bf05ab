"""The HTTP listener: Telegram's webhook (webhook mode), /healthz and /metrics.

Webhook: a request without the right `X-Telegram-Bot-Api-Secret-Token` (compared in constant
time) gets 401 and changes nothing; a body that is not an update gets 400; a body over MAX_BODY
gets 413; an update gets 200 only after its inbox row committed (bot/transport/inbox.py), so a
crash after the 200 loses nothing. When the row cannot be stored the answer is 503 and Telegram
delivers the update again later.

/healthz: 200 when the database answers (within DATABASE_TIMEOUT) and Telegram was heard from in the
last minute, else 503, so a load balancer stops sending to an instance that cannot store updates.
/metrics: Prometheus' text format (bot/metrics.py); backlogs are counted when scraped.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import metrics
from bot.services.clock import Clock, system_clock
from bot.storage.models import InboxUpdate, Job, Outbox
from bot.transport.inbox import Inbox, is_update

log = logging.getLogger("linli.listener")

MAX_BODY = 1024 * 1024  # Telegram's updates are a few KB; anything near this is not one
HEALTHY_WITHIN = 60.0  # seconds since Telegram last answered or called
# A database that hangs (not refusing, not answering) must still make /healthz say 503, and in
# time for a load balancer's check (HAProxy's default timeout is a few seconds).
DATABASE_TIMEOUT = 2.0


class Listener:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        inbox: Inbox,
        *,
        host: str,
        port: int,
        webhook_path: str | None = None,
        secret: str | None = None,
        clock: Clock = system_clock,
        contact: Callable[[], float] | None = None,
        late_after: float = 60.0,
    ) -> None:
        self.sessions = sessions
        self.inbox = inbox
        self.host = host
        self.port = port
        self.webhook_path = webhook_path
        self._secret = (secret or "").encode()
        self.clock = clock
        self.contact = contact or (lambda: inbox.last_contact)
        self.late_after = late_after
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        if self.webhook_path is not None:
            app.router.add_post(self.webhook_path, self._webhook)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:  # tests: the port the system picked
            server = site._server  # noqa: SLF001 - aiohttp keeps the bound sockets there
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        log.info("listening on %s:%s", self.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ------------------------------------------------------------------ webhook

    def _authorised(self, request: web.Request) -> bool:
        given = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "").encode()
        return bool(self._secret) and hmac.compare_digest(given, self._secret)

    async def _webhook(self, request: web.Request) -> web.StreamResponse:
        if not self._authorised(request):
            return web.Response(status=401, text="unauthorised")
        if request.content_length is not None and request.content_length > MAX_BODY:
            return web.Response(status=413, text="too large")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return web.Response(status=413, text="too large")
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return web.Response(status=400, text="not JSON")
        if not is_update(payload):
            return web.Response(status=400, text="not an update")
        self.inbox.last_contact = time.monotonic()
        try:
            new = await self.inbox.store([payload])
        except Exception as exc:  # not stored: Telegram must deliver it again
            log.warning("storing update %s failed: %s", payload["update_id"], type(exc).__name__)
            return web.Response(status=503, text="try again")
        await self.inbox.hand_over(new)
        return web.Response(status=200, text="ok")

    # ------------------------------------------------------------------ health and metrics

    async def _database_answers(self) -> bool:
        async def ask() -> None:
            async with self.sessions() as s:
                await s.execute(text("SELECT 1"))

        try:
            await asyncio.wait_for(ask(), DATABASE_TIMEOUT)
            return True
        except Exception:
            return False

    async def _healthz(self, request: web.Request) -> web.StreamResponse:
        db = await self._database_answers()
        heard = time.monotonic() - self.contact() < HEALTHY_WITHIN
        body = {"database": db, "telegram": heard}
        return web.json_response(body, status=200 if db and heard else 503)

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        try:
            await self.refresh_backlogs()
        except Exception:
            log.warning("counting backlogs for /metrics failed", exc_info=True)
        return web.Response(body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def refresh_backlogs(self) -> None:
        now = self.clock()
        async with self.sessions() as s:
            inbox = await s.scalar(
                select(func.count()).select_from(InboxUpdate).where(InboxUpdate.handled_at.is_(None)))
            outbox = await s.scalar(
                select(func.count()).select_from(Outbox).where(Outbox.status.in_(("pending", "sending"))))
            due = await s.scalar(
                select(func.count()).select_from(Job).where(Job.done_at.is_(None), Job.due_at <= now))
            oldest = await s.scalar(select(func.min(Job.due_at)).where(Job.done_at.is_(None), Job.due_at <= now))
        metrics.INBOX_BACKLOG.set(inbox or 0)
        metrics.OUTBOX_BACKLOG.set(outbox or 0)
        metrics.JOBS_DUE.set(due or 0)
        metrics.JOBS_LATE_SECONDS.set(max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0)

