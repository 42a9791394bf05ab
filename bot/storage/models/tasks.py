"""Volunteer tasks (志愿任务), their claims and waitlist (认领 / 候补), posts, and skills."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from bot.storage.models.base import Base, utcnow


class Task(Base):
    __tablename__ = "tasks"
    __table_args__ = (
        UniqueConstraint("community_id", "number", name="uq_tasks_community_number"),
        # The claim counter is only ever raised by a conditional UPDATE; this is the last line of defence.
        CheckConstraint("claimed >= 0 AND claimed <= slots", name="claimed_within_slots"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column()
    title: Mapped[str] = mapped_column(String(200))
    starts_at: Mapped[datetime]
    minutes: Mapped[int] = mapped_column(default=120)  # duration: the hours a confirmed claimer earns
    slots: Mapped[int] = mapped_column()
    points: Mapped[int] = mapped_column(default=0)
    place: Mapped[str | None] = mapped_column(String(200))
    skill: Mapped[str | None] = mapped_column(String(40))
    state: Mapped[str] = mapped_column(String(16), default="open")  # open | cancelled | confirmed
    claimed: Mapped[int] = mapped_column(default=0)  # claimers now; == rows with status 'claimed'
    queue_seq: Mapped[int] = mapped_column(default=0)  # hands out waitlist positions in press order
    roster_version: Mapped[int] = mapped_column(default=0)  # bumped by every change the post shows
    demand_id: Mapped[int | None] = mapped_column(ForeignKey("demands.id", ondelete="SET NULL"))
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    cancel_reason: Mapped[str | None] = mapped_column(Text)
    closed_at: Mapped[datetime | None]  # cancelled or confirmed


class TaskClaim(Base):
    """One person on a task: a claimer, or waiting (候补) at `seq`. user_id NULL after /forget."""

    __tablename__ = "task_claims"
    __table_args__ = (
        UniqueConstraint("task_id", "user_id", name="uq_task_claims_task_user"),
        Index("ix_task_claims_task_status_seq", "task_id", "status", "seq"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    status: Mapped[str] = mapped_column(String(12), default="new")  # new (this instant) | claimed | waiting
    seq: Mapped[int] = mapped_column(default=0)  # waitlist position order (press order)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    reported_at: Mapped[datetime | None]
    report_note: Mapped[str | None] = mapped_column(Text)
    report_photo: Mapped[str | None] = mapped_column(String(256))
    # Set when a secretary confirms the task and this claimer had reported.
    awarded_at: Mapped[datetime | None] = mapped_column(index=True)
    points: Mapped[int] = mapped_column(default=0)
    minutes: Mapped[int] = mapped_column(default=0)


class TaskPost(Base):
    """A task's message in a member chat, edited in place as its roster changes."""

    __tablename__ = "task_posts"
    __table_args__ = (UniqueConstraint("task_id", "chat_id", name="uq_task_posts_task_chat"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), index=True)
    chat_id: Mapped[int] = mapped_column(BigInteger)
    outbox_id: Mapped[int | None] = mapped_column(ForeignKey("outbox.id", ondelete="SET NULL"))
    message_id: Mapped[int | None] = mapped_column(BigInteger)  # known once the outbox sent the post
    locale: Mapped[str] = mapped_column(String(8), default="zh")
    # A digest of what the message shows now: an edit is sent only when the text would change, and
    # the instance that moves this value is the one that sends it.
    shown: Mapped[str] = mapped_column(String(64), default="")


class VolunteerSkill(Base):
    """志愿者服务清单: what a member offers in a community; `key` is the normalised form for matching."""

    __tablename__ = "volunteer_skills"

    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(40))
