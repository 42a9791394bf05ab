"""Ledger (台账): who has turned the weekly digest off, and the index the statistics read by."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index
from sqlalchemy.orm import Mapped, mapped_column

from bot.storage.models.base import Base, utcnow
from bot.storage.models.demands import Demand


class DigestOptOut(Base):
    """A secretary who said /digest off in a community (the digest is on by default)."""

    __tablename__ = "ledger_digest_optouts"

    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# /stats reads one community's demands of one period: this index holds every column the three rates,
# the counts and the chart need, so the aggregation never visits the table (SQLite and PostgreSQL).
LEDGER_INDEX = Index(
    "ix_demands_ledger",
    Demand.community_id,
    Demand.filed_at,
    Demand.state,
    Demand.category,
    Demand.accepted_at,
    Demand.accept_by,
    Demand.resolved_at,
    Demand.rating,
)
# Overdue now: open demands by their resolve deadline.
OVERDUE_INDEX = Index("ix_demands_community_state_resolve_by", Demand.community_id, Demand.state, Demand.resolve_by)
