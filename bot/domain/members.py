"""Members in the open, without I/O: reading /pledge and /evaluation, the answer scales, and
packing the 承诺墙 into pages that always fit one Telegram message."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from bot.domain.dates import DateParseError, parse_when

MAX_PLEDGE = 200  # characters of one pledge
MAX_ACTIVE = 2  # pledges a member may have proposed or active at once
MAX_NOTE = 500
MAX_REASON = 300
MAX_POST = 20
MAX_TITLE = 100
NAME_CHARS = 24  # a name on the wall is cut to this many characters
MIN_RATERS = 5  # fewer raters on a subject: 样本不足 instead of figures
GOOD_SHARE = 80  # percent of good answers at the close that earns a member EVALUATION_POINTS

TELEGRAM_LIMIT = 4096
WALL_BUDGET = 3500  # characters of entries on one wall page; the head and page line stay far below the rest

PROPOSED, RETURNED, ACTIVE, KEPT, NOT_KEPT = "proposed", "returned", "active", "kept", "not_kept"
OPEN_STATES = (PROPOSED, ACTIVE)  # count towards the limit of MAX_ACTIVE
SHOWN_STATES = (ACTIVE, KEPT, NOT_KEPT)  # approved: on the wall and in /pledges

MEMBERS, SERVICES = "members", "services"
KINDS = (MEMBERS, SERVICES)
EV_OPEN, EV_CLOSED, EV_PUBLISHED = "open", "closed", "published"

# Answers, as stored in evaluation_counts.choice, in the order the buttons show them.
RESIDENT_SCALE = ("satisfied", "fair", "unsatisfied")  # 满意 / 基本满意 / 不满意
MEMBER_SCALE = ("excellent", "good", "fair_m", "poor")  # 优秀 / 合格 / 基本合格 / 不合格
GOOD = {"satisfied", "fair", "excellent", "good"}  # counted in the 满意率 / 合格率 shown in the 公示

_BAR = re.compile(r"[|｜]")


class MemberInputError(ValueError):
    def __init__(self, key: str, **params: object) -> None:
        super().__init__(key)
        self.key = key
        self.params = params


@dataclass(frozen=True)
class PledgeDraft:
    text: str
    until: datetime | None


@dataclass(frozen=True)
class EvaluationDraft:
    title: str
    until: datetime
    kind: str


def _when(raw: str, now: datetime, tz: ZoneInfo) -> datetime:
    try:
        return parse_when(raw, now=now, tz=tz, future=True)
    except DateParseError as exc:
        if exc.reason == "past":
            raise MemberInputError("err_member_date_past", value=raw) from None
        raise MemberInputError("err_member_date", value=raw) from None


def parse_pledge(args: str, *, now: datetime, tz: ZoneInfo) -> PledgeDraft:
    """`<text> [| <until>]`."""
    parts = [p.strip() for p in _BAR.split(args, maxsplit=1)]
    text = parts[0]
    if not text:
        raise MemberInputError("err_usage_pledge")
    if len(text) > MAX_PLEDGE:
        raise MemberInputError("err_pledge_too_long", limit=MAX_PLEDGE, length=len(text))
    until = None
    if len(parts) > 1 and parts[1]:
        raw = parts[1]
        if not re.search(r"\d{1,2}\s*[:：]\s*\d{2}", raw):
            raw = f"{raw} 23:59"  # a pledge kept "by 12月31日" means by the end of that day
        until = _when(raw, now, tz)
    return PledgeDraft(text, until)


def parse_evaluation(args: str, *, now: datetime, tz: ZoneInfo) -> EvaluationDraft:
    """`<title> | <until> | members|services`."""
    parts = [p.strip() for p in _BAR.split(args)]
    if len(parts) != 3 or not all(parts):
        raise MemberInputError("err_usage_evaluation_open")
    title, raw_until, kind = parts
    if len(title) > MAX_TITLE:
        raise MemberInputError("err_evaluation_title_too_long", limit=MAX_TITLE, length=len(title))
    kind = {"党员": MEMBERS, "member": MEMBERS, "服务": SERVICES, "service": SERVICES}.get(kind, kind).lower()
    if kind not in KINDS:
        raise MemberInputError("err_evaluation_kind", kind=parts[2])
    return EvaluationDraft(title, _when(raw_until, now, tz), kind)


def short(name: str, limit: int = NAME_CHARS) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def paginate(entries: Sequence[str], budget: int = WALL_BUDGET, sep: int = 1) -> list[list[str]]:
    """Entries packed greedily, in order, into pages of at most `budget` characters. An entry longer
    than a page (a member with many pledges) is split at its line breaks and goes on over the next
    pages; a single line is never cut (each is bounded well below the budget). At least one page."""
    pieces: list[str] = []
    for entry in entries:
        if len(entry) <= budget:
            pieces.append(entry)
            continue
        chunk: list[str] = []
        size = 0
        for line in entry.split("\n"):
            cost = len(line) + (1 if chunk else 0)
            if chunk and size + cost > budget:
                pieces.append("\n".join(chunk))
                chunk, size, cost = [], 0, len(line)
            chunk.append(line)
            size += cost
        if chunk:
            pieces.append("\n".join(chunk))
    pages: list[list[str]] = [[]]
    used = 0
    for piece in pieces:
        cost = len(piece) + (sep if pages[-1] else 0)
        if pages[-1] and used + cost > budget:
            pages.append([])
            used = 0
            cost = len(piece)
        pages[-1].append(piece)
        used += cost
    return pages


def satisfaction(counts: dict[str, int]) -> tuple[int, int | None]:
    """(raters, percent of good answers) for one subject; percent None below MIN_RATERS (样本不足)."""
    total = sum(counts.values())
    if total < MIN_RATERS:
        return total, None
    good = sum(v for k, v in counts.items() if k in GOOD)
    return total, round(100 * good / total)
