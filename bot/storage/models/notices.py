"""Notices (通知): the broadcast, one delivery per target chat, and who acknowledged it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bot.storage.models.base import Base, utcnow


class Notice(Base):
    __tablename__ = "notices"
    __table_args__ = (UniqueConstraint("community_id", "number", name="uq_notices_community_number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column()
    scope: Mapped[str] = mapped_column(String(16))  # residents | members | all
    text: Mapped[str] = mapped_column(Text)  # as the secretary typed it (escaped when shown)
    photo: Mapped[str | None] = mapped_column(String(256))  # file_id
    document_id: Mapped[str | None] = mapped_column(String(256))  # file_id
    pin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by: Mapped[int | None] = mapped_column(BigInteger)  # NULL after that person's /forget
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Where the progress message (and then the summary) goes: the chat the command came from.
    reply_chat_id: Mapped[int] = mapped_column(BigInteger)
    reply_thread_id: Mapped[int | None] = mapped_column(BigInteger)
    locale: Mapped[str] = mapped_column(String(8), default="zh")  # of the community: the notice itself
    reply_locale: Mapped[str] = mapped_column(String(8), default="zh")  # of the secretary: progress, summary
    progress_outbox_id: Mapped[int | None] = mapped_column()
    targets: Mapped[int] = mapped_column(default=0)
    delivered: Mapped[int] = mapped_column(default=0)  # counted up atomically as deliveries end
    failed: Mapped[int] = mapped_column(default=0)
    progress_at: Mapped[datetime | None]  # when the progress message was last edited
    finished_at: Mapped[datetime | None]


class NoticeDelivery(Base):
    """One per (notice, target chat), written with the notice before anything is sent."""

    __tablename__ = "notice_deliveries"
    __table_args__ = (UniqueConstraint("notice_id", "chat_id", name="uq_notice_deliveries_notice_chat"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    notice_id: Mapped[int] = mapped_column(ForeignKey("notices.id", ondelete="CASCADE"), index=True)
    chat_id: Mapped[int] = mapped_column(BigInteger)  # the target as chosen
    chat_title: Mapped[str | None] = mapped_column(String(256))
    outbox_id: Mapped[int | None] = mapped_column(index=True)
    status: Mapped[str] = mapped_column(String(12), default="pending")  # pending | sent | failed
    sent_chat_id: Mapped[int | None] = mapped_column(BigInteger)  # differs from chat_id after a migration
    message_id: Mapped[int | None] = mapped_column(BigInteger)
    reason: Mapped[str | None] = mapped_column(String(16))  # chat_gone | migrated | refused | ...
    error: Mapped[str | None] = mapped_column(String(512))  # Telegram's words
    pin_error: Mapped[str | None] = mapped_column(String(256))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class NoticeAck(Base):
    """收到: one per person per notice, whichever chat they pressed it in."""

    __tablename__ = "notice_acks"

    notice_id: Mapped[int] = mapped_column(ForeignKey("notices.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True)
    chat_id: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ChatMove(Base):
    """A basic group that became a supergroup: messages for the old id go to the new one."""

    __tablename__ = "chat_moves"

    old_chat_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    new_chat_id: Mapped[int] = mapped_column(BigInteger)
    moved_at: Mapped[datetime] = mapped_column(default=utcnow)
