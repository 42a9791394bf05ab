"""Keeps each resident chat's 承诺墙 message showing the pledges, with as few edits as a burst allows.

The coalescing is the shared refresher's (bot/services/refresher.py), keyed by community: a
change marks the community in its transaction; one worker re-renders every wall post of it from
the database (each at its own page) and edits those whose text changed, waiting for each edit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.services.refresher import Editor, Refresher, Shown
from bot.storage.models import Community, WallPost
from bot.ui.i18n import Translator
from bot.ui.members import wall_message, wall_pages

if TYPE_CHECKING:
    from bot.services.members import MemberService

__all__ = ["Editor", "WallRefresher"]


class WallRefresher(Refresher[int]):
    """Keys are community ids."""

    kind = "wall"

    def __init__(self, service: MemberService) -> None:
        super().__init__(service.ctx)
        self.service = service

    async def render(self, s: AsyncSession, key: int) -> list[Shown]:
        community = await s.get(Community, key)
        if community is None:
            return []
        posts = list(await s.scalars(select(WallPost).where(WallPost.community_id == key)))
        if not posts:
            return []
        entries = await self.service.wall_entries(s, key)
        pages_by_locale: dict[str, list[list[str]]] = {}
        out: list[Shown] = []
        for post in posts:
            tr = Translator(post.locale)
            if post.locale not in pages_by_locale:
                pages_by_locale[post.locale] = wall_pages(tr, entries, community.timezone)
            text, keyboard, _page = wall_message(tr, community.name, pages_by_locale[post.locale], post.page, post.id)
            out.append(Shown(post, text, keyboard, f"wall:{post.id}"))
        return out
