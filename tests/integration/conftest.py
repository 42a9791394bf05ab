"""Services wired to a real database and a fake Telegram status book (no HTTP)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.services.base import ServiceContext
from bot.services.communities import CommunityService
from bot.services.demands import DemandService
from bot.services.people import PeopleService
from bot.services.roles import AdminCache, Roles
from bot.storage.db import make_session_factory
from bot.transport.port import Chat, Event, EventKind, User
from config.settings import load_settings


@dataclass
class StatusBook:
    """What Telegram would answer to getChatMember: (chat, user) -> status."""

    statuses: dict[tuple[int, int], str] = field(default_factory=dict)
    calls: int = 0

    async def lookup(self, chat_id: int, user_id: int) -> str:
        self.calls += 1
        return self.statuses.get((chat_id, user_id), "left")

    async def admins(self, chat_id: int) -> list[int]:
        """What getChatAdministrators would answer."""
        self.calls += 1
        return [u for (c, u), status in self.statuses.items() if c == chat_id and status in ("creator", "administrator")]


@dataclass
class World:
    ctx: ServiceContext
    book: StatusBook
    people: PeopleService
    communities: CommunityService
    demands: DemandService

    async def see(self, user: User, chat: Chat, text: str = "hi") -> None:
        await self.people.observe(Event(EventKind.MESSAGE, chat, user, text=text))


@pytest.fixture
async def world(engine: AsyncEngine) -> AsyncIterator[World]:
    book = StatusBook()
    settings = load_settings(bot_token="1:x", superadmins=[999])
    roles = Roles(settings.superadmins, AdminCache(book.lookup, ttl=0, admins=book.admins))
    ctx = ServiceContext(sessions=make_session_factory(engine), roles=roles, settings=settings)
    yield World(ctx, book, PeopleService(ctx), CommunityService(ctx), DemandService(ctx))


ALICE = User(1, "Alice", username="alice")  # admin of both groups, becomes secretary
BOB = User(2, "Bob", username="bob")  # resident
CAROL = User(3, "Carol", username="carol")  # member
RES = Chat(-100, "supergroup", "幸福里居民群")
MEM = Chat(-200, "supergroup", "幸福里党支部")
