"""Search every table the models declare (all of `Base.metadata`, so capabilities added later are
covered too) for one person: their id (as a number, or inside any text, JSON or bytes), their
names and their username. /forget tests assert this finds nothing."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.storage.models import Base


@dataclass(frozen=True)
class Person:
    id: int
    names: tuple[str, ...]  # e.g. the full name and the first name
    username: str

    def pattern(self) -> re.Pattern[str]:
        words = [re.escape(n) for n in self.names] + [re.escape(self.username), rf"(?<!\d){self.id}(?!\d)"]
        return re.compile("|".join(words), re.IGNORECASE)


def _as_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "ignore")
    return None


async def traces(sessions: async_sessionmaker[AsyncSession], who: Person) -> list[str]:
    """`table.column = value` for every stored value that names `who`."""
    found: list[str] = []
    pattern = who.pattern()
    async with sessions() as s:
        for table in Base.metadata.sorted_tables:
            for row in (await s.execute(select(table))).mappings():
                for column, value in row.items():
                    hit = (isinstance(value, int) and not isinstance(value, bool) and value == who.id) or (
                        (text := _as_text(value)) is not None and pattern.search(text) is not None
                    )
                    if hit:
                        found.append(f"{table.name}.{column} = {value!r:.120}")
    return found
