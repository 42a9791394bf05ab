"""The real bot, on a real framework, long-polling the fake Bot API server.

    bot = BotUnderTest(tg, "aiogram", tmp_path)
    await bot.start()
    tg.send(alice, tg.private_chat(alice), "/start")
    rec = await tg.wait_text(alice, "邻里")
    await bot.restart()      # same database, new process state
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bot.app import App
from config.settings import Settings, load_settings
from tests.fakeapi.server import FakeTelegram

FRAMEWORKS = ["aiogram", "ptb"]

# Telegram's real limits would make every test wait; one test checks the limits themselves.
FAST = {
    "send_rate_global": 1000.0,
    "send_rate_per_chat": 200.0,
    "send_rate_per_group": 100_000,
    "poll_timeout": 1,
    "scheduler_sweep_seconds": 0.5,
    "outbox_lease_seconds": 1.0,
    "admin_cache_seconds": 0,
}


def e2e_settings(tg: FakeTelegram, framework: str, db_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "bot_token": tg.token,
        "telegram_api_base": tg.base_url,
        "bot_framework": framework,
        "database_url": f"sqlite+aiosqlite:///{db_path}",
        **FAST,
    }
    values.update(overrides)
    return load_settings(**values)


class BotUnderTest:
    def __init__(self, tg: FakeTelegram, framework: str, tmp_path: Path, **overrides: Any) -> None:
        self.tg = tg
        self.framework = framework
        self.db_path = tmp_path / "linli-e2e.sqlite3"
        self.overrides = overrides
        self.app: App | None = None

    @property
    def settings(self) -> Settings:
        return e2e_settings(self.tg, self.framework, self.db_path, **self.overrides)

    async def start(self) -> App:
        self.app = App(self.settings)
        await self.app.start()
        return self.app

    async def stop(self) -> None:
        if self.app is not None:
            await self.app.stop()
            self.app = None

    async def restart(self, **overrides: Any) -> App:
        await self.stop()
        self.overrides.update(overrides)
        return await self.start()

    async def settle(self, quiet: float = 0.3, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Every update fetched and handled, every reply and queued notification sent."""
        await self.tg.idle(quiet=quiet, timeout=timeout)
        if self.app is not None:
            await self.app.dispatcher.idle(timeout)
            await self.app.services.outbox.drain(timeout)
        await self.tg.idle(quiet=quiet / 2, timeout=timeout)
