"""The inbox: every update Telegram delivered, stored before it is confirmed, marked when handled."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, text
from sqlalchemy.orm import Mapped, mapped_column

from bot.storage.models.base import Base, utcnow


class InboxUpdate(Base):
    """One per Telegram update_id: a redelivered update finds its row and is ignored.

    `handled_at` is set in the transaction that commits the update's effects and its replies
    (outbox rows), so an update is handled exactly once; rows left unhandled by a crash are handled
    at the next start. Handled rows are pruned after INBOX_RETENTION."""

    __tablename__ = "inbox"
    __table_args__ = (
        Index("ix_inbox_handled_at", "handled_at"),
        # Per-chat order across instances (bot/services/chat_order.py): a chat's unhandled rows.
        Index("ix_inbox_chat_unhandled", "chat_id", "update_id",
              postgresql_where=text("handled_at IS NULL"), sqlite_where=text("handled_at IS NULL")),
    )

    update_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    chat_id: Mapped[int | None] = mapped_column(BigInteger)  # handled in per-chat order
    user_id: Mapped[int | None] = mapped_column(BigInteger, index=True)  # whose update it is (/forget)
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # the update as Telegram sent it
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    handled_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=0)
