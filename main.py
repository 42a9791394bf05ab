"""Run Linli: `python main.py` (long polling; settings from the environment, `.env` or LINLI_CONFIG)."""

from __future__ import annotations

import asyncio
import signal
import sys

from config.settings import SettingsError, load_settings


async def serve() -> None:
    from bot.app import App

    settings = load_settings()
    app = App(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await app.start()
    try:
        await stop.wait()
    finally:
        await app.stop()


def main() -> int:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    if not settings.bot_token:
        print(
            "BOT_TOKEN is not set. Get a token from @BotFather and run:\n"
            "  BOT_TOKEN=123456:ABC... make run\n"
            "(or put BOT_TOKEN=... in a .env file in this folder)",
            file=sys.stderr,
        )
        return 2
    from bot.logs import configure_logging

    configure_logging(settings.log_level)
    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
