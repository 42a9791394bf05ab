"""SQLAlchemy 2 typed models, one module per capability; all of them are registered on `Base`.

A capability adds its module here, so `Base.metadata` (migrations, the schema test) sees it.
"""

from bot.storage.models.base import Base, UTCDateTime, utcnow
from bot.storage.models.consultations import (
    Ballot,
    Consultation,
    ConsultComment,
    ConsultPost,
    ConsultProgress,
    Proposal,
    ProposalSecond,
)
from bot.storage.models.core import (
    AuditEntry,
    Chat,
    ChatMember,
    Community,
    Conversation,
    Counter,
    Job,
    Outbox,
    Secretary,
    User,
)
from bot.storage.models.demands import Demand, DemandEvent, DemandFollower, DemandPost
from bot.storage.models.grids import Grid, ResidentBuilding, Street, StreetCommunity, StreetOfficer
from bot.storage.models.inbox import InboxUpdate
from bot.storage.models.ledger import DigestOptOut
from bot.storage.models.meetings import Meeting, MeetingAttendee
from bot.storage.models.members import (
    Evaluation,
    EvaluationCount,
    EvaluationRater,
    EvaluationSubject,
    MemberProfile,
    Pledge,
    PledgeUpdate,
    WallPost,
)
from bot.storage.models.notices import ChatMove, Notice, NoticeAck, NoticeDelivery
from bot.storage.models.privacy import CommunityVisitor, QuotaEvent
from bot.storage.models.refresh import RefreshMark
from bot.storage.models.scale import SendSlot
from bot.storage.models.tasks import Task, TaskClaim, TaskPost, VolunteerSkill

__all__ = [
    "Ballot",
    "ConsultComment",
    "Consultation",
    "ConsultPost",
    "ConsultProgress",
    "Proposal",
    "ProposalSecond",
    "AuditEntry",
    "ChatMove",
    "Base",
    "Chat",
    "ChatMember",
    "Community",
    "CommunityVisitor",
    "Conversation",
    "Counter",
    "Demand",
    "DemandEvent",
    "DemandFollower",
    "DemandPost",
    "Grid",
    "ResidentBuilding",
    "Street",
    "StreetCommunity",
    "StreetOfficer",
    "DigestOptOut",
    "InboxUpdate",
    "SendSlot",
    "Job",
    "Notice",
    "NoticeAck",
    "NoticeDelivery",
    "Meeting",
    "MeetingAttendee",
    "Outbox",
    "QuotaEvent",
    "RefreshMark",
    "Secretary",
    "Task",
    "TaskClaim",
    "TaskPost",
    "UTCDateTime",
    "User",
    "VolunteerSkill",
    "utcnow",
    "Evaluation",
    "EvaluationCount",
    "EvaluationRater",
    "EvaluationSubject",
    "MemberProfile",
    "Pledge",
    "PledgeUpdate",
    "WallPost",
]
