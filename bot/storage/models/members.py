"""Members in the open: pledges (承诺) and the 承诺墙, 亮身份 and posts (设岗定责), and democratic
evaluations (民主测评) with their 公示.

The ballot is secret by construction: `evaluation_raters` records who has answered on which
subject (to refuse a second ballot) and nothing else; `evaluation_counts` holds only counts per
choice. No column of either, nor any other table, links a rater to a choice.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bot.storage.models.base import Base, utcnow


class MemberProfile(Base):
    """A member's face towards residents in one community: 亮身份 (showid) and their post (岗位)."""

    __tablename__ = "member_profiles"

    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True)
    showid: Mapped[bool] = mapped_column(Boolean, default=False)
    post: Mapped[str | None] = mapped_column(String(40))
    post_by: Mapped[int | None] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Pledge(Base):
    """我是党员我承诺: proposed -> active (批准) or returned (with a reason); active -> kept | not_kept."""

    __tablename__ = "pledges"
    __table_args__ = (UniqueConstraint("community_id", "number", name="uq_pledges_community_number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column()
    # NULL after /forget: an approved pledge stays on the wall as 一名党员's.
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    text: Mapped[str] = mapped_column(Text)
    until: Mapped[datetime | None]
    state: Mapped[str] = mapped_column(String(12), default="proposed")  # proposed|returned|active|kept|not_kept
    return_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_at: Mapped[datetime | None]  # approved or returned
    done_requested_at: Mapped[datetime | None]  # /pledgedone
    closed_at: Mapped[datetime | None]  # kept or not kept
    updates: Mapped[int] = mapped_column(default=0)  # progress notes (/pledgeupdate)
    # 先锋指数: points awarded when kept (summed with tasks' by the leaderboard).
    points: Mapped[int] = mapped_column(default=0)
    awarded_at: Mapped[datetime | None] = mapped_column(index=True)


class PledgeUpdate(Base):
    """Progress on a pledge (/pledgeupdate), with an optional photo."""

    __tablename__ = "pledge_updates"

    id: Mapped[int] = mapped_column(primary_key=True)
    pledge_id: Mapped[int] = mapped_column(ForeignKey("pledges.id", ondelete="CASCADE"), index=True)
    note: Mapped[str] = mapped_column(Text)
    photo: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WallPost(Base):
    """The 承诺墙 in one resident chat: one message, edited in place; `page` is what it shows now."""

    __tablename__ = "wall_posts"
    __table_args__ = (UniqueConstraint("community_id", "chat_id", name="uq_wall_posts_community_chat"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id", ondelete="CASCADE"), index=True)
    chat_id: Mapped[int] = mapped_column(BigInteger)
    thread_id: Mapped[int | None] = mapped_column(BigInteger)
    outbox_id: Mapped[int | None] = mapped_column(ForeignKey("outbox.id", ondelete="SET NULL"))
    message_id: Mapped[int | None] = mapped_column(BigInteger)
    page: Mapped[int] = mapped_column(default=0)
    locale: Mapped[str] = mapped_column(String(8), default="zh")
    shown: Mapped[str] = mapped_column(String(64), default="")  # digest of what the message shows


class Evaluation(Base):
    """民主测评: open until `until` (a jobs row closes it), then published (公示) until `publicity_until`."""

    __tablename__ = "evaluations"
    __table_args__ = (UniqueConstraint("community_id", "number", name="uq_evaluations_community_number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column()
    title: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(12))  # members | services
    until: Mapped[datetime]
    state: Mapped[str] = mapped_column(String(12), default="open")  # open | closed | published
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    closed_at: Mapped[datetime | None]
    published_at: Mapped[datetime | None]
    publicity_until: Mapped[datetime | None]


class EvaluationSubject(Base):
    """One question of the ballot: a member (user_id; `public` when they show their identity) or a
    service (`label`, a category key)."""

    __tablename__ = "evaluation_subjects"

    id: Mapped[int] = mapped_column(primary_key=True)
    evaluation_id: Mapped[int] = mapped_column(ForeignKey("evaluations.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column()
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    label: Mapped[str | None] = mapped_column(String(64))
    public: Mapped[bool] = mapped_column(Boolean, default=True)
    # 先锋指数: a member rated well by at least MIN_RATERS earns points at the close (figures only).
    points: Mapped[int] = mapped_column(default=0)
    awarded_at: Mapped[datetime | None]


class EvaluationRater(Base):
    """Who has answered on which subject, and nothing more: no choice, no time, no order."""

    __tablename__ = "evaluation_raters"

    evaluation_id: Mapped[int] = mapped_column(ForeignKey("evaluations.id", ondelete="CASCADE"), primary_key=True)
    subject_id: Mapped[int] = mapped_column(ForeignKey("evaluation_subjects.id", ondelete="CASCADE"),
                                            primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True)


class EvaluationCount(Base):
    """How many chose each answer on each subject: counts only, no person."""

    __tablename__ = "evaluation_counts"

    evaluation_id: Mapped[int] = mapped_column(ForeignKey("evaluations.id", ondelete="CASCADE"), primary_key=True)
    subject_id: Mapped[int] = mapped_column(ForeignKey("evaluation_subjects.id", ondelete="CASCADE"),
                                            primary_key=True)
    choice: Mapped[str] = mapped_column(String(16), primary_key=True)
    count: Mapped[int] = mapped_column(default=0)
