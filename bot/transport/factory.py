"""Pick the adapter named by BOT_FRAMEWORK; each framework is imported only when chosen."""

from __future__ import annotations

from bot.transport.base import Transport


def make_transport(framework: str, token: str, api_base: str | None, *, poll_timeout: int = 25) -> Transport:
    if framework == "aiogram":
        from bot.transport.aiogram_adapter import AiogramTransport

        return AiogramTransport(token, api_base, poll_timeout=poll_timeout)
    if framework == "ptb":
        from bot.transport.ptb_adapter import PtbTransport

        return PtbTransport(token, api_base, poll_timeout=poll_timeout)
    raise ValueError(f"unknown BOT_FRAMEWORK {framework!r}; use aiogram or ptb")
