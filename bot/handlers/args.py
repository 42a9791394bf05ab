"""Reading a command's arguments: numbers like #12, the first word, the community it is about."""

from __future__ import annotations

import re
import unicodedata

from bot.handlers.base import Context
from bot.services.errors import UserError

_NUMBER = re.compile(r"[#＃]?(\d{1,9})")


def parse_number(raw: str) -> int | None:
    """`12`, `#12`, `＃１２` -> 12."""
    m = _NUMBER.fullmatch(unicodedata.normalize("NFKC", raw.strip()))
    return int(m.group(1)) if m else None


def number_and_rest(ctx: Context, usage: str) -> tuple[int, str]:
    """The leading number (#n) of the arguments and the text after it; a usage error without one.

    Any whitespace ends the number: a Chinese IME types the full-width space U+3000, a phone a newline.
    """
    head, rest = split_first(ctx.args)
    n = parse_number(head) if head else None
    if n is None:
        raise UserError(usage)
    return n, rest


def split_first(text: str) -> tuple[str, str]:
    """The first word and the rest, split at any whitespace (str.split knows U+3000)."""
    parts = text.strip().split(None, 1)
    return (parts[0] if parts else "", parts[1].strip() if len(parts) > 1 else "")


async def community_id(ctx: Context) -> int:
    """The chat's community in a group; in private the user's only one, or ask which."""
    community = await ctx.services.communities.community_for(
        user_id=ctx.event.user.id, chat_id=ctx.event.chat.id, chat_is_group=ctx.event.chat.is_group,
        chosen=ctx.chosen_community,
    )
    return community.id
