"""Messages edited in place (a task's roster, a community's wall, consultation posts): which need
a fresh render, and which instance is rendering them now (bot/services/refresher.py)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from bot.storage.models.base import Base


class RefreshMark(Base):
    """One per key whose messages may show an old state; deleted once they show the newest.

    `version` is bumped in the transaction of every change the messages show. `holder` (an
    instance's refresher) and `lease_until` say who renders and edits the key's messages now:
    taken by a conditional UPDATE, renewed while its edits wait, free again once it runs out."""

    __tablename__ = "refresh_marks"

    kind: Mapped[str] = mapped_column(String(16), primary_key=True)  # task | wall | cpost
    key: Mapped[str] = mapped_column(String(64), primary_key=True)  # the task, community, post group
    version: Mapped[int] = mapped_column(default=1)
    holder: Mapped[str | None] = mapped_column(String(40))
    lease_until: Mapped[datetime | None]
