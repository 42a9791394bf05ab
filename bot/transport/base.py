"""What every framework adapter provides: a BotApi, the bot's own user, and polling."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any

from bot.transport.port import BotApi, Event, User

EventSink = Callable[[Event], Awaitable[None]]

# "/cmd", "/cmd@bot", "/notice!"; Chinese text may follow without a space ("/demand路灯坏了"),
# as Telegram itself ends a command at the first character that cannot be in one.
_COMMAND = re.compile(r"^/([A-Za-z0-9_]{1,32}!?)(?:@([A-Za-z0-9_]+))?(?![A-Za-z0-9_@])", re.S)


def split_command(text: str | None, bot_username: str | None) -> tuple[str, str] | None:
    """`(command, args)` for a command to this bot, else None (plain text, or another bot's)."""
    if not text or not text.startswith("/"):
        return None
    m = _COMMAND.match(text)
    if m is None:
        return None
    addressed = m.group(2)
    if addressed and bot_username and addressed.lower() != bot_username.lower():
        return None
    return m.group(1).lower(), text[m.end() :].strip()


class Transport(ABC):
    """One framework's long polling and Bot API calls, speaking only the neutral port."""

    api: BotApi
    bot_user: User | None = None

    @abstractmethod
    async def start(self, on_event: EventSink) -> None:
        """Learn who the bot is, then poll in the background, passing every update to `on_event`."""

    async def open(self) -> None:
        """Learn who the bot is, without polling: updates then come through the inbox."""
        raise NotImplementedError

    def events_of(self, payload: dict[str, Any]) -> list[Event]:
        """A stored update (the JSON Telegram sent) as Events, read by the framework's types."""
        raise NotImplementedError

    @abstractmethod
    async def stop(self) -> None:
        """Stop polling and close the HTTP session."""
