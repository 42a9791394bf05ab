"""What several instances serving one bot share beyond the business rows: the send windows."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from bot.storage.models.base import Base


class SendSlot(Base):
    """One place in one of Telegram's windows (bot/transport/shared_limits.py), shared by every
    instance on the database: held from the call's start (`answered` empty), then logged at its
    answer. Times are the database's clock, so instances' clocks never disagree. Rows older than
    the longest window are pruned."""

    __tablename__ = "send_slots"
    __table_args__ = (Index("ix_send_slots_key_answered", "key", "answered"),)

    # 30 a second fill 32 bits in about two years.
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    key: Mapped[str] = mapped_column(String(64))  # "global", "chat:<id>", "group:<id>"
    started: Mapped[datetime]
    answered: Mapped[datetime | None]
