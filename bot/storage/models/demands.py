"""Demands (诉求), their timeline and followers."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from bot.storage.models.base import Base, utcnow


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
    # Grids and the street (bot/services/grids.py): where the demand is handled now (grid, community,
    # street), its grid, and the accept deadline of the level it was last moved to.
    level: Mapped[str] = mapped_column(String(12), default="community", server_default="community")
    grid_id: Mapped[int | None] = mapped_column(ForeignKey("grids.id", ondelete="SET NULL"), index=True)
    level_accept_by: Mapped[datetime | None]

    # Optimistic locking: two concurrent changes of one demand cannot both win.
    __mapper_args__ = {"version_id_col": version}


class DemandEvent(Base):
    """The timeline of a demand: who did what, when, with which note."""

    __tablename__ = "demand_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    demand_id: Mapped[int] = mapped_column(ForeignKey("demands.id", ondelete="CASCADE"), index=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    # Whom the step was about (the assignee of an assign): named from the users table when shown,
    # never copied into the note, so /forget leaves no name behind.
    subject_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
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


class DemandPost(Base):
    """A resident chat where a form demand was posted, as its submitter allowed: the only groups
    besides the one it was typed in that may see it (number, category and an excerpt)."""

    __tablename__ = "demand_posts"

    demand_id: Mapped[int] = mapped_column(ForeignKey("demands.id", ondelete="CASCADE"), primary_key=True)
    chat_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
