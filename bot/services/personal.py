"""What each capability keeps about a person: exported by /mydata, erased by /forget.

A capability service registers one exporter and one eraser when it is built, so /mydata and
/forget cover every table without the people service knowing them all.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.storage.models import Base

# (session, user_id) -> a JSON-able section of /mydata
Exporter = Callable[[AsyncSession, int], Awaitable[dict[str, Any]]]
# (session, user_id) -> None; runs inside /forget's transaction, before the user row is deleted
Eraser = Callable[[AsyncSession, int], Awaitable[None]]


@dataclass
class PersonalData:
    exporters: list[tuple[str, Exporter]] = field(default_factory=list)
    erasers: list[tuple[str, Eraser]] = field(default_factory=list)

    def register(self, name: str, export: Exporter, erase: Eraser) -> None:
        if any(n == name for n, _ in self.exporters):
            return  # registered already (a service built twice over one context)
        self.exporters.append((name, export))
        self.erasers.append((name, erase))


def row_dict(obj: Base) -> dict[str, Any]:
    """A row as JSON-able values (dates ISO, bytes as their size)."""
    out: dict[str, Any] = {}
    for col in obj.__table__.columns:  # type: ignore[attr-defined]
        val = getattr(obj, col.key)
        if isinstance(val, datetime):
            val = val.isoformat()
        elif isinstance(val, bytes):
            val = f"<{len(val)} bytes>"
        out[col.key] = val
    return out
