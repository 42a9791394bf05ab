"""Who came by a community's filing link, and the per-person counts that limit filings and reports."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from bot.storage.models.base import Base, utcnow


class CommunityVisitor(Base):
    """Someone who followed the community's filing link: they may file privately there."""

    __tablename__ = "community_visitors"

    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True)
    first_at: Mapped[datetime] = mapped_column(default=utcnow)


class QuotaEvent(Base):
    """One filing (or report) by one person: the sliding hour counts these rows, so the limit holds
    across restarts and instances. Pruned once older than the window."""

    __tablename__ = "quota_events"
    __table_args__ = (Index("ix_quota_events_user_kind_at", "user_id", "kind", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # file | report
    at: Mapped[datetime] = mapped_column(default=utcnow)
