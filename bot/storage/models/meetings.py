"""Meetings (会议) and who answers, takes leave and checks in."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bot.storage.models.base import Base, utcnow


class Meeting(Base):
    __tablename__ = "meetings"
    __table_args__ = (
        UniqueConstraint("community_id", "number", name="uq_meetings_community_number"),
        Index("ix_meetings_community_starts", "community_id", "starts_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column()
    kind: Mapped[str] = mapped_column(String(16))  # see bot.domain.meetings.KINDS
    audience: Mapped[str] = mapped_column(String(16))  # member | resident: whose chats it is posted to
    title: Mapped[str] = mapped_column(String(200))
    place: Mapped[str | None] = mapped_column(String(200))
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    # The time the command or the monthly rule gave it; a move leaves it, so the rule stays put.
    planned_at: Mapped[datetime]
    offsets: Mapped[list[int]] = mapped_column(JSON)  # reminder offsets, seconds before the start
    repeat: Mapped[str | None] = mapped_column(String(8))  # "month"
    repeat_day: Mapped[int | None] = mapped_column()  # the series' day of the month
    previous_id: Mapped[int | None] = mapped_column(ForeignKey("meetings.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(12), default="scheduled")  # scheduled | cancelled
    cancel_reason: Mapped[str | None] = mapped_column(Text)
    # Bumped by every move and cancel; reminders are guarded by it (a stale timer stands down).
    version: Mapped[int] = mapped_column(default=1)
    minutes: Mapped[str | None] = mapped_column(Text)
    minutes_at: Mapped[datetime | None]
    minutes_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class MeetingAttendee(Base):
    """One person's answer (attend / leave with a reason) and check-in for one meeting."""

    __tablename__ = "meeting_attendees"

    meeting_id: Mapped[int] = mapped_column(ForeignKey("meetings.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True)
    response: Mapped[str | None] = mapped_column(String(8))  # attend | leave; None: checked in unannounced
    reason: Mapped[str | None] = mapped_column(String(400))  # why on leave
    responded_at: Mapped[datetime | None]
    checked_in_at: Mapped[datetime | None]
