"""The webhook edge with the database gone: an instance that cannot reach PostgreSQL answers
/healthz 503 (so the load balancer stops sending to it) and an update 503 (so Telegram delivers it
again), whether the database refuses connections or hangs; once it is back, both are 200 and the
update is handled. The database is "down" for this instance only: it reaches PostgreSQL through a
TCP relay on 127.0.0.1 that the test stops."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from bot.storage.models import InboxUpdate
from tests.conftest import PG_URL, reset_pg_schema, skip_without_pg
from tests.e2e.harness import BotUnderTest
from tests.e2e.test_metrics import health
from tests.e2e.test_webhook import SECRET, held_update, webhook_settings
from tests.fakeapi.server import FakeTelegram


class Relay:
    """A TCP relay to PostgreSQL: `refuse()` closes it (connection refused), `hang()` accepts and
    never answers, `serve()` relays again."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.mode = "serve"
        self.port = 0
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.StreamWriter] = set()

    async def start(self, port: int = 0) -> None:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._conns.add(writer)
        try:
            if self.mode == "hang":
                await reader.read()  # holds the connection, says nothing
                return
            up_reader, up_writer = await asyncio.open_connection(*self.target)
            self._conns.add(up_writer)

            async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
                try:
                    while data := await src.read(65536):
                        dst.write(data)
                        await dst.drain()
                finally:
                    dst.close()

            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer), return_exceptions=True)
        finally:
            writer.close()

    def _cut(self) -> None:
        for w in list(self._conns):
            w.transport.abort()
        self._conns.clear()

    async def refuse(self) -> None:
        self._cut()
        if self._server is not None:
            self._server.close()
            self._server = None

    async def hang(self) -> None:
        self._cut()
        self.mode = "hang"
        if self._server is None:
            await self.start(self.port)

    async def serve(self) -> None:
        self._cut()
        self.mode = "serve"
        if self._server is None:
            await self.start(self.port)

    async def stop(self) -> None:
        await self.refuse()


@pytest.fixture
async def relay() -> AsyncIterator[Relay]:
    skip_without_pg("postgresql")
    url = make_url(PG_URL)  # type: ignore[arg-type]
    r = Relay(url.host or "127.0.0.1", url.port or 5432)
    await r.start()
    yield r
    await r.stop()


async def test_an_instance_without_its_database_answers_503_until_it_is_back(
        tg: FakeTelegram, relay: Relay, tmp_path: Path) -> None:
    await reset_pg_schema()
    url = make_url(PG_URL).set(port=relay.port).render_as_string(hide_password=False)  # type: ignore[arg-type]
    hook = webhook_settings()
    bot = BotUnderTest(tg, "aiogram", tmp_path, database_url=url, **hook)
    await bot.start()
    port = int(hook["webhook_listen"].rsplit(":", 1)[1])
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while not tg.webhook_url:
            assert loop.time() < deadline, "setWebhook never came"
            await asyncio.sleep(0.05)
        assert await health(port) == (200, {"database": True, "telegram": True})
        user = tg.user(501, "老李")
        tg.push_paused = True

        for down in (relay.refuse, relay.hang):
            await down()
            began = time.monotonic()
            status, body = await health(port)
            assert (status, body) == (503, {"database": False, "telegram": True}), down.__name__
            assert time.monotonic() - began < 5  # in time for the load balancer's check
            tg.send(user, tg.private_chat(user), "/whoami")
            update = held_update(tg)
            if down == relay.refuse:
                assert await tg.post_webhook(update, SECRET) == 503  # not stored: Telegram tries again
            # (A hanging database holds the request until Telegram gives up on it: the same retry.)

            await relay.serve()
            deadline = loop.time() + 15
            while (await health(port))[0] != 200:
                assert loop.time() < deadline, "never healthy again"
                await asyncio.sleep(0.1)
            since = tg.mark()
            assert await tg.post_webhook(update, SECRET) == 200  # Telegram's retry
            await tg.wait_text(tg.private_chat(user), "501", since=since)

        assert bot.app is not None
        async with bot.app.services.ctx.read() as s:
            assert await s.scalar(select(func.count()).select_from(InboxUpdate)
                                  .where(InboxUpdate.handled_at.is_(None))) == 0
        # A forged request gets 401 whatever the database's state.
        await relay.refuse()
        assert await tg.post_webhook({"update_id": 1, "message": {}}, None) == 401
        await relay.serve()
    finally:
        await bot.stop()
