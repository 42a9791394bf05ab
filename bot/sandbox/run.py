"""Running the sandbox: one local server (Bot API stand-in + page), the bot, the clock and reset."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import ipaddress
import json
import logging
import os
import secrets
import shutil
import signal
import sys
from collections.abc import Coroutine
from datetime import timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

from bot.sandbox.botapi import BotApi
from bot.sandbox.clock import OffsetClock
from bot.sandbox.community import add_cast, add_groups, seed
from bot.sandbox.page import Page, guard
from bot.sandbox.world import BOT_ID, FileStore, World
from config.settings import Settings

log = logging.getLogger("linli.sandbox")

# The sandbox is not Telegram: the bot need not wait out Telegram's send limits there. A limit set
# explicitly (environment, .env, config file) still holds.
SANDBOX_DEFAULTS: dict[str, Any] = {
    "send_rate_global": 1000.0,
    "send_rate_per_chat": 100.0,
    "send_rate_per_group": 10_000,
    "poll_timeout": 10,
}
SAVE_EVERY = 1.0  # seconds between snapshots of the page's chats


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


class Sandbox:
    """The stand-in server, the bot on it, and the controls the page offers."""

    def __init__(self, settings: Settings, *, data_dir: Path = Path("data")) -> None:
        self.base_settings = settings
        self.host = settings.sandbox_host
        self.port = settings.sandbox_port
        self.data_dir = data_dir
        self.db_path = data_dir / "sandbox.sqlite3"
        self.snapshot_path = data_dir / "sandbox-world.json"
        self.clock = OffsetClock()
        self.world = World(self.clock, FileStore(data_dir / "sandbox-files"))
        self.token = f"{BOT_ID}:{secrets.token_urlsafe(24)}"  # new each run: only this process knows it
        self.app: Any = None  # bot.app.App, imported late (it pulls in a framework)
        self.address = ""
        self._runner: web.AppRunner | None = None
        self._control = asyncio.Lock()  # clock moves and resets, one at a time
        self._tasks: set[asyncio.Task[Any]] = set()
        self._saver: asyncio.Task[None] | None = None
        self.started = asyncio.Event()  # the bot runs and the community is ready
        self._closed = False

    @property
    def settings(self) -> Settings:
        """The bot's settings: the sandbox's server, token and database, Telegram's limits lifted."""
        connect = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        update: dict[str, Any] = {
            "bot_token": self.token,
            "telegram_api_base": f"http://{_url_host(connect)}:{self.port}",
            "database_url": f"sqlite+aiosqlite:///{self.db_path}",
        }
        for name, value in SANDBOX_DEFAULTS.items():
            if name not in self.base_settings.model_fields_set:
                update[name] = value
        if "webhook_url" in type(self.base_settings).model_fields:
            update["webhook_url"] = None  # the sandbox always long-polls its own stand-in
        return self.base_settings.model_copy(update=update)

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> str:
        """Bind the server (page and Bot API); returns the page's address. Fast: nothing else starts."""
        web_app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[guard(is_loopback(self.host))])
        web_app.add_routes(BotApi(self.world, self.token).routes())
        web_app.add_routes(Page(self).routes())
        self._runner = web.AppRunner(web_app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:  # a free port was asked for (tests): learn which
            server = site._server
            assert server is not None and server.sockets  # type: ignore[attr-defined]
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self.address = f"http://{_url_host(self.host)}:{self.port}"
        return self.address

    async def start(self) -> None:
        """Start the bot: where the last run left off, or a fresh community."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        add_cast(self.world)
        fresh = not self._load()
        if fresh:
            self._wipe()
            add_cast(self.world)
            add_groups(self.world)
        await self._start_bot()
        self._saver = asyncio.create_task(self._save_loop(), name="sandbox-save")
        if fresh:
            await self._seed()
        else:
            self.world.phase = "ready"
            self.world.emit({"t": "state"})
        self.started.set()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.app is not None:
            await self.app.stop()
            self.app = None
        if self._saver is not None:
            self._saver.cancel()
            await asyncio.gather(self._saver, return_exceptions=True)
        self._save()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a sandbox control failed", exc_info=task.exception())

    async def _start_bot(self) -> None:
        # The bot and its framework take seconds to import (aiogram builds hundreds of models): do it
        # in a thread, so the page is served meanwhile.
        adapter = {"aiogram": "aiogram_adapter", "ptb": "ptb_adapter"}[self.settings.bot_framework]
        await asyncio.to_thread(importlib.import_module, f"bot.transport.{adapter}")
        from bot.app import App

        self.app = App(self.settings, clock=self.clock)
        await self.app.start()

    async def _seed(self) -> None:
        self.world.ready = False
        self.world.phase = "seeding"
        self.world.emit({"t": "state"})
        await seed(self.world, self.settle)
        self.world.ready = True
        self.world.phase = "ready"
        self.world.emit({"t": "state"})
        log.info("the sandbox community is ready")

    async def settle(self, timeout: float = 30.0) -> None:
        """Every queued update fetched by the bot and handled, and what it queued sent."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.world.updates and loop.time() < deadline:
            await asyncio.sleep(0.05)
        if self.app is not None:
            await self.app.dispatcher.idle(timeout)
            await self.app.services.outbox.drain(timeout)

    # ------------------------------------------------------------------ the page's controls

    async def advance(self, delta: timedelta) -> None:
        """Move the bot's clock forward; whatever fell due fires now."""
        async with self._control:
            self.clock.advance(delta)
            self.world.emit({"t": "clock", "offset_ms": int(self.clock.offset.total_seconds() * 1000)})
            if self.app is not None:
                await self.app.services.jobs.sweep()
                self.app.services.outbox.wake()

    async def reset(self) -> None:
        """Start the community afresh: a new database, empty chats, the clock back to now."""
        async with self._control:
            self.world.ready = False
            self.world.phase = "resetting"
            self.world.emit({"t": "state"})
            if self.app is not None:
                await self.app.stop()
                self.app = None
            self._wipe()
            add_cast(self.world)
            add_groups(self.world)
            self.world.emit({"t": "state"})
            await self._start_bot()
            await self._seed()

    # ------------------------------------------------------------------ persistence

    def _wipe(self) -> None:
        self.world.clear()
        shutil.rmtree(self.world.files.folder, ignore_errors=True)
        self.clock.offset = timedelta(0)
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{self.db_path}{suffix}").unlink(missing_ok=True)
        self.snapshot_path.unlink(missing_ok=True)

    def _load(self) -> bool:
        """Continue the last run if both its chats and its database are there and it was ready."""
        if not (self.snapshot_path.exists() and self.db_path.exists()):
            return False
        try:
            data = json.loads(self.snapshot_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            log.warning("the sandbox's saved chats could not be read; starting afresh")
            return False
        if not isinstance(data, dict) or not data.get("ready") or not self.world.restore(data):
            return False
        self.world.ready = True
        return True

    def _save(self) -> None:
        if not self.world.dirty or not self.world.ready:
            return
        tmp = self.snapshot_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.world.snapshot(), ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, self.snapshot_path)
        self.world.dirty = False

    async def _save_loop(self) -> None:
        while True:
            await asyncio.sleep(SAVE_EVERY)
            try:
                self._save()
            except OSError:
                log.exception("saving the sandbox's chats failed")


def run_sandbox(settings: Settings) -> int:
    """`python main.py --sandbox`: print the page's address first, then run until Ctrl+C."""
    return asyncio.run(_serve(settings))


async def _serve(settings: Settings) -> int:
    sandbox = Sandbox(settings)
    try:
        address = await sandbox.open()
    except OSError as exc:
        print(f"The sandbox cannot listen on {settings.sandbox_host}:{settings.sandbox_port}: {exc.strerror}.\n"
              "Set SANDBOX_PORT to a free port, e.g. SANDBOX_PORT=8090 make run", file=sys.stderr)
        return 2
    print(address, flush=True)
    print("邻里沙盒：用浏览器打开上面的地址。Linli sandbox: open the address above in a browser. "
          "Ctrl+C stops it.", flush=True)
    if not is_loopback(settings.sandbox_host):
        print(f"WARNING: the sandbox listens on {settings.sandbox_host} (SANDBOX_HOST) and has no login: "
              "anyone who reaches this address can act as every person in it.", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    starting = asyncio.create_task(sandbox.start(), name="sandbox-start")
    waiter = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({starting, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if starting.done() and starting.exception() is not None:
            log.error("the sandbox could not start", exc_info=starting.exception())
            return 1
        await waiter
    finally:
        for task in (starting, waiter):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await starting
        await sandbox.close()
    return 0
