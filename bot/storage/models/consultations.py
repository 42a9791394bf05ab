"""Consultations (议事协商, 征询意见): proposals and their seconds (附议), consultations, one ballot per
person (a unique key), private comments, progress notes, and the posts edited in place."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from bot.storage.models.base import Base, utcnow


class Proposal(Base):
    """/propose: a resident's proposal in the resident chat where it was typed, seconded by others."""

    __tablename__ = "proposals"
    __table_args__ = (UniqueConstraint("community_id", "number", name="uq_proposals_community_number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column()
    chat_id: Mapped[int] = mapped_column(BigInteger)
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    text: Mapped[str] = mapped_column(Text)
    seconds: Mapped[int] = mapped_column(default=0)  # == rows in proposal_seconds; raised with them
    alerted_at: Mapped[datetime | None]  # the secretaries were told it reached the threshold (once)
    consultation_id: Mapped[int | None] = mapped_column()  # the consultation opened from it
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ProposalSecond(Base):
    """One 附议 per person per proposal (user_id NULL after /forget: still counted)."""

    __tablename__ = "proposal_seconds"
    __table_args__ = (UniqueConstraint("proposal_id", "user_id", name="uq_proposal_seconds_proposal_user"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    proposal_id: Mapped[int] = mapped_column(ForeignKey("proposals.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Consultation(Base):
    """/consult: asked in every resident chat until `closes_at`; the tally is frozen at the close."""

    __tablename__ = "consultations"
    __table_args__ = (UniqueConstraint("community_id", "number", name="uq_consultations_community_number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column()
    title: Mapped[str] = mapped_column(String(200))
    plan: Mapped[str | None] = mapped_column(Text)
    proposal_id: Mapped[int | None] = mapped_column(ForeignKey("proposals.id", ondelete="SET NULL"))
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)  # the service clock
    # Wall-clock instant of opening: who may vote is who was seen (chat_members.seen_at) before it.
    opened_at: Mapped[datetime] = mapped_column(default=utcnow)
    closes_at: Mapped[datetime]
    state: Mapped[str] = mapped_column(String(12), default="open")  # open | closed
    version: Mapped[int] = mapped_column(default=0)  # bumped by every change its posts show
    closed_at: Mapped[datetime | None]
    closed_early_by: Mapped[int | None] = mapped_column(BigInteger)  # /closeconsult (not a person's record)
    # Frozen at the close: the published result never moves (/forget keeps these counts).
    agree: Mapped[int] = mapped_column(default=0)
    disagree: Mapped[int] = mapped_column(default=0)
    abstain: Mapped[int] = mapped_column(default=0)
    turnout: Mapped[int] = mapped_column(default=0)
    eligible: Mapped[int] = mapped_column(default=0)
    decision: Mapped[str | None] = mapped_column(Text)
    decided_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class Ballot(Base):
    """One ballot per person per consultation, across all chats; changeable until the close.
    user_id NULL after /forget: the ballot leaves the record, its count stays."""

    __tablename__ = "consultation_ballots"
    __table_args__ = (
        UniqueConstraint("consultation_id", "user_id", name="uq_consultation_ballots_consultation_user"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    consultation_id: Mapped[int] = mapped_column(ForeignKey("consultations.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    choice: Mapped[str] = mapped_column(String(12))  # agree | disagree | abstain
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ConsultComment(Base):
    """意见: a private comment; `published` when the secretary chose it for the 公示."""

    __tablename__ = "consultation_comments"
    __table_args__ = (Index("ix_consultation_comments_consultation_seq", "consultation_id", "seq"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    consultation_id: Mapped[int] = mapped_column(ForeignKey("consultations.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column()  # 1, 2, ... within the consultation (what /comments shows)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    text: Mapped[str] = mapped_column(Text)
    published: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ConsultProgress(Base):
    """/progress: a note (and photo) on a decided matter, posted in every resident chat."""

    __tablename__ = "consultation_progress"

    id: Mapped[int] = mapped_column(primary_key=True)
    consultation_id: Mapped[int] = mapped_column(ForeignKey("consultations.id", ondelete="CASCADE"), index=True)
    note: Mapped[str] = mapped_column(Text)
    photo: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ConsultPost(Base):
    """A message edited in place: a proposal's post, a consultation's post in a resident chat, or its
    published result (公示). `shown` is a digest of what it shows (see the task posts)."""

    __tablename__ = "consultation_posts"
    __table_args__ = (UniqueConstraint("kind", "ref_id", "chat_id", name="uq_consultation_posts_kind_ref_chat"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(12))  # proposal | consult | result
    ref_id: Mapped[int] = mapped_column(index=True)
    chat_id: Mapped[int] = mapped_column(BigInteger)
    outbox_id: Mapped[int | None] = mapped_column(ForeignKey("outbox.id", ondelete="SET NULL"))
    message_id: Mapped[int | None] = mapped_column(BigInteger)
    locale: Mapped[str] = mapped_column(String(8), default="zh")
    shown: Mapped[str] = mapped_column(String(64), default="")
