"""Communities, chats, people, forms, and the outbox and jobs every capability uses."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from bot.storage.models.base import Base, utcnow


class Community(Base):
    __tablename__ = "communities"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Shanghai")
    locale: Mapped[str] = mapped_column(String(8), default="zh")
    # Per-community configuration: SLA overrides, categories.
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_by: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The filing link's secret, `t.me/<bot>?start=d<token>`; made on the first /link, replaced by /link new.
    link_token: Mapped[str | None] = mapped_column(String(32), unique=True)


class Chat(Base):
    __tablename__ = "chats"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    type: Mapped[str] = mapped_column(String(16))
    title: Mapped[str | None] = mapped_column(String(256))
    is_forum: Mapped[bool] = mapped_column(Boolean, default=False)
    community_id: Mapped[int | None] = mapped_column(ForeignKey("communities.id", ondelete="SET NULL"), index=True)
    kind: Mapped[str | None] = mapped_column(String(16))  # resident | member, when bound
    topic_id: Mapped[int | None] = mapped_column(BigInteger)  # where posts go in a forum
    bot_status: Mapped[str] = mapped_column(String(16), default="member")
    bound_by: Mapped[int | None] = mapped_column(BigInteger)
    bound_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    first_name: Mapped[str] = mapped_column(String(128), default="")
    last_name: Mapped[str | None] = mapped_column(String(128))
    username: Mapped[str | None] = mapped_column(String(64), index=True)
    language: Mapped[str | None] = mapped_column(String(8))  # chosen with /lang
    telegram_language: Mapped[str | None] = mapped_column(String(16))
    started: Mapped[bool] = mapped_column(Boolean, default=False)  # has a private chat with the bot
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    @property
    def display_name(self) -> str:
        name = " ".join(p for p in (self.first_name, self.last_name) if p)
        return name or (f"@{self.username}" if self.username else str(self.id))


class ChatMember(Base):
    """A user seen in a chat (for member chats this makes them a member of the community)."""

    __tablename__ = "chat_members"

    chat_id: Mapped[int] = mapped_column(ForeignKey("chats.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True)
    status: Mapped[str] = mapped_column(String(16), default="member")
    seen_at: Mapped[datetime] = mapped_column(default=utcnow)


class Secretary(Base):
    """Secretaries named with /setup or /secretary (config and Telegram admins are derived)."""

    __tablename__ = "secretaries"

    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True)
    source: Mapped[str] = mapped_column(String(16))  # setup | command
    added_by: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Conversation(Base):
    """A multi-step form in progress, kept in the database so a restart loses nothing."""

    __tablename__ = "conversations"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    chat_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(32))
    step: Mapped[str] = mapped_column(String(32))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class AuditEntry(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int | None] = mapped_column(ForeignKey("communities.id", ondelete="CASCADE"), index=True)
    actor_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    action: Mapped[str] = mapped_column(String(48))
    subject: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Counter(Base):
    """Community-local sequences (#n) for demands, tasks, meetings and notices."""

    __tablename__ = "counters"

    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    value: Mapped[int] = mapped_column(default=0)


class Outbox(Base):
    """Every notification and broadcast is stored here before it is sent."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_status_due", "status", "not_before"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int | None] = mapped_column(ForeignKey("communities.id", ondelete="CASCADE"))
    chat_id: Mapped[int] = mapped_column(BigInteger)
    # The person the message is for (privately, or by a mention in a group): /forget cancels by it.
    user_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    thread_id: Mapped[int | None] = mapped_column(BigInteger)
    reply_to_message_id: Mapped[int | None] = mapped_column(BigInteger)
    text: Mapped[str] = mapped_column(Text)
    keyboard: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    photo: Mapped[str | None] = mapped_column(String(256))
    document_name: Mapped[str | None] = mapped_column(String(128))
    document: Mapped[bytes | None] = mapped_column(LargeBinary)
    pin: Mapped[bool] = mapped_column(Boolean, default=False)
    # What the message is about, e.g. "demand:12:rate"; lets services find the sent message id.
    ref: Mapped[str | None] = mapped_column(String(64), index=True)
    # Enqueueing twice with one key stores one row: idempotent producers.
    dedup_key: Mapped[str | None] = mapped_column(String(128), unique=True)
    status: Mapped[str] = mapped_column(String(12), default="pending")  # pending|sending|sent|failed
    attempts: Mapped[int] = mapped_column(default=0)
    not_before: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(String(512))
    message_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
    # ---- delivery detail (bot/transport/outbox.py)
    document_id: Mapped[str | None] = mapped_column(String(256))  # a file_id to send as a document
    edit_message_id: Mapped[int | None] = mapped_column(BigInteger)  # edit this message instead
    edit_of: Mapped[int | None] = mapped_column()  # ... or the message another outbox row sent
    coalesce_key: Mapped[str | None] = mapped_column(String(128))  # queued edits with one key: the last wins
    fold: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # port.Fold: may be folded when the chat is busy
    # Where a private message goes instead when its person blocked the bot: chat, thread, reply, text.
    fallback: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    part_ids: Mapped[list[int | None] | None] = mapped_column(JSON)  # message ids of the parts delivered
    # Set just before a part's call, cleared when it is answered: a row claimed again with this set
    # (its sender crashed) may already be out; that resend is the contract's at-least-once case.
    inflight_at: Mapped[datetime | None]
    moved_from: Mapped[int | None] = mapped_column(BigInteger)  # the chat it was first meant for
    folded_into: Mapped[int | None] = mapped_column()  # the row whose message carried this one
    pin_error: Mapped[str | None] = mapped_column(String(256))


class Job(Base):
    """A timed follow-up. The scheduler only arms timers for these rows; the row decides."""

    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("kind", "ref_id", "guard", name="uq_jobs_kind_ref_guard"),
        Index("ix_jobs_pending_due", "done_at", "due_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    ref_id: Mapped[int] = mapped_column()
    # Identifies the occasion (e.g. the deadline it was made for); a moved deadline is a new job.
    guard: Mapped[str] = mapped_column(String(64), default="")
    # The person a timer is about (a reminder to one claimer, say), so /forget can drop it.
    user_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    due_at: Mapped[datetime]
    done_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=0)
    result: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
