"""SQLAlchemy 2 typed models. Every timestamp is stored as UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on SQLite (no tz) and PostgreSQL alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON, int: Integer}


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
    due_at: Mapped[datetime]
    done_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=0)
    result: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Demand(Base):
    __tablename__ = "demands"
    __table_args__ = (UniqueConstraint("community_id", "number", name="uq_demands_community_number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column()
    # NULL once the submitter used /forget: the demand stays in the ledger, anonymised.
    submitter_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    filed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    text: Mapped[str] = mapped_column(Text)
    location: Mapped[str | None] = mapped_column(String(256))
    photo_file_id: Mapped[str | None] = mapped_column(String(256))
    category: Mapped[str] = mapped_column(String(32))
    urgency: Mapped[str] = mapped_column(String(16), default="general")
    state: Mapped[str] = mapped_column(String(16), default="new", index=True)
    public: Mapped[bool] = mapped_column(Boolean, default=True)
    origin_chat_id: Mapped[int | None] = mapped_column(BigInteger)
    origin_thread_id: Mapped[int | None] = mapped_column(BigInteger)
    origin_message_id: Mapped[int | None] = mapped_column(BigInteger)
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    duplicate_of_id: Mapped[int | None] = mapped_column(ForeignKey("demands.id", ondelete="SET NULL"))
    filed_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    accepted_at: Mapped[datetime | None]
    assigned_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]
    rated_at: Mapped[datetime | None]
    accept_by: Mapped[datetime]
    resolve_by: Mapped[datetime]
    resolution_note: Mapped[str | None] = mapped_column(Text)
    resolution_photo: Mapped[str | None] = mapped_column(String(256))
    rejection_reason: Mapped[str | None] = mapped_column(Text)
    rating: Mapped[int | None] = mapped_column()
    rating_comment: Mapped[str | None] = mapped_column(Text)
    version: Mapped[int] = mapped_column(default=1)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    # Optimistic locking: two concurrent changes of one demand cannot both win.
    __mapper_args__ = {"version_id_col": version}


class DemandEvent(Base):
    """The timeline of a demand: who did what, when, with which note."""

    __tablename__ = "demand_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    demand_id: Mapped[int] = mapped_column(ForeignKey("demands.id", ondelete="CASCADE"), index=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    action: Mapped[str] = mapped_column(String(24))
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str | None] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DemandFollower(Base):
    """People told of a demand's changes besides its submitter (e.g. submitters of its duplicates)."""

    __tablename__ = "demand_followers"

    demand_id: Mapped[int] = mapped_column(ForeignKey("demands.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    origin_chat_id: Mapped[int | None] = mapped_column(BigInteger)
    origin_message_id: Mapped[int | None] = mapped_column(BigInteger)
