"""Run Linli: `python main.py` (long polling; settings from the environment, `.env` or LINLI_CONFIG).

With no BOT_TOKEN, or `python main.py --sandbox`, it runs the sandbox: the same bot against a local
stand-in for Telegram, played from a web page (bot/sandbox/).
"""

from __future__ import annotations

import asyncio
import signal
import sys

from config.settings import SettingsError, load_settings


async def serve() -> None:
    from bot import heap
    from bot.app import App

    settings = load_settings()
    app = App(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await app.start()
    heap.settle()
    try:
        await stop.wait()
    finally:
        await app.stop()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    from bot.logs import configure_logging

    configure_logging(settings.log_level)
    if "--sandbox" in args or not settings.bot_token:
        from bot.sandbox.run import run_sandbox

        return run_sandbox(settings)
    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
