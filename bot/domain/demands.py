"""Demand states and the rules for moving between them. Plain rules, no I/O.

    new → accepted → assigned → resolved → rated
    with rejected, duplicate and reopened beside them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

MAX_TEXT = 2000
MAX_NOTE = 1000
MAX_LOCATION = 200
REOPEN_WINDOW = timedelta(days=7)  # a submitter may reopen this long after resolution
EXCERPT = 40


class State(StrEnum):
    NEW = "new"
    ACCEPTED = "accepted"
    ASSIGNED = "assigned"
    RESOLVED = "resolved"
    RATED = "rated"
    REJECTED = "rejected"
    DUPLICATE = "duplicate"
    REOPENED = "reopened"


OPEN = frozenset({State.NEW, State.ACCEPTED, State.ASSIGNED, State.REOPENED})
CLOSED = frozenset({State.RESOLVED, State.RATED, State.REJECTED, State.DUPLICATE})


class Action(StrEnum):
    FILE = "file"
    ACCEPT = "accept"
    ASSIGN = "assign"
    RESOLVE = "resolve"
    REJECT = "reject"
    DUPLICATE = "duplicate"
    REOPEN = "reopen"
    RATE = "rate"
    NOT_FIXED = "not_fixed"
    COMMENT = "comment"
    CATEGORY = "category"
    URGENCY = "urgency"
    REMIND = "remind"  # accept deadline passed, secretaries reminded
    OVERDUE = "overdue"  # resolve deadline passed
    MERGED = "merged"  # another demand was closed as a duplicate of this one


# Where each transition may start. /resolve of a new demand counts as accepting it then.
ALLOWED_FROM: dict[Action, frozenset[State]] = {
    Action.ACCEPT: frozenset({State.NEW, State.REOPENED}),
    Action.ASSIGN: OPEN,
    Action.RESOLVE: OPEN,
    Action.REJECT: OPEN,
    Action.DUPLICATE: OPEN,
    Action.REOPEN: frozenset({State.RESOLVED, State.RATED, State.REJECTED, State.DUPLICATE}),
    Action.RATE: frozenset({State.RESOLVED}),
    Action.NOT_FIXED: frozenset({State.RESOLVED}),
}

TARGET: dict[Action, State] = {
    Action.ACCEPT: State.ACCEPTED,
    Action.ASSIGN: State.ASSIGNED,
    Action.RESOLVE: State.RESOLVED,
    Action.REJECT: State.REJECTED,
    Action.DUPLICATE: State.DUPLICATE,
    Action.REOPEN: State.REOPENED,
    Action.RATE: State.RATED,
    Action.NOT_FIXED: State.REOPENED,
}


class TransitionError(Exception):
    def __init__(self, action: Action, state: str) -> None:
        super().__init__(f"cannot {action} a demand that is {state}")
        self.action = action
        self.state = state


def can(action: Action, state: str) -> bool:
    return state in ALLOWED_FROM[action]


def next_state(action: Action, state: str) -> State:
    if not can(action, state):
        raise TransitionError(action, state)
    return TARGET[action]


def submitter_may_reopen(state: str, resolved_at: datetime | None, now: datetime) -> bool:
    """A submitter may reopen a resolved (or rated) demand within seven days of its resolution."""
    return (
        state in (State.RESOLVED, State.RATED) and resolved_at is not None and now - resolved_at <= REOPEN_WINDOW
    )


def is_overdue(state: str, resolve_by: datetime, now: datetime) -> bool:
    return state in OPEN and now > resolve_by


def excerpt(text: str, limit: int = EXCERPT) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


@dataclass(frozen=True)
class RatingChoice:
    """A tap on the rating message: 1-5 stars, or 0 for Not fixed."""

    stars: int

    @property
    def not_fixed(self) -> bool:
        return self.stars == 0

    @property
    def low(self) -> bool:
        return 1 <= self.stars <= 2


def parse_stars(raw: str) -> int | None:
    raw = raw.strip()
    if raw in ("1", "2", "3", "4", "5"):
        return int(raw)
    if raw and set(raw) <= {"⭐", "★"} and len(raw) <= 5:
        return len(raw)
    return None
