"""Consultation rules without I/O: reading /consult, the choices, and the published percentages."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from bot.domain.dates import DateParseError, parse_when

MAX_TITLE = 100
MAX_PLAN = 1000
MAX_PROPOSAL = 500
MAX_COMMENT = 500
MAX_DECISION = 1000
MAX_NOTE = 1000
DEFAULT_THRESHOLD = 10

OPEN = "open"
CLOSED = "closed"
AGREE, DISAGREE, ABSTAIN = "agree", "disagree", "abstain"
CHOICES = (AGREE, DISAGREE, ABSTAIN)
CHOICE_CODES = {"a": AGREE, "d": DISAGREE, "x": ABSTAIN}  # button data: `cst:<code>:<id>`

_BAR = re.compile(r"[|｜]")
_FROM_PROPOSAL = re.compile(r"^[pP](\d{1,9})(?:\s+(.*))?$", re.S)


class ConsultInputError(ValueError):
    def __init__(self, key: str, **params: object) -> None:
        super().__init__(key)
        self.key = key
        self.params = params


@dataclass
class ConsultDraft:
    title: str | None  # None: take the proposal's text
    closes_at: datetime
    plan: str | None
    proposal: int | None  # p<n>


def _nfkc(text: str) -> str:
    return unicodedata.normalize("NFKC", text)


def parse_consult(args: str, *, now: datetime, tz: ZoneInfo) -> ConsultDraft:
    """`<title> | <until> [| <plan>]`, or `p<n> [title] | <until> [| <plan>]` from proposal n."""
    fields = [f.strip() for f in _BAR.split(args.strip(), maxsplit=2)]
    if len(fields) < 2:
        raise ConsultInputError("err_consult_usage")
    head, until = fields[0], fields[1]
    proposal = None
    m = _FROM_PROPOSAL.match(_nfkc(head))
    if m:
        proposal = int(m.group(1))
        head = (m.group(2) or "").strip()
    if not head and proposal is None:
        raise ConsultInputError("err_consult_missing_title")
    if len(head) > MAX_TITLE:
        raise ConsultInputError("err_consult_title_too_long", limit=MAX_TITLE, length=len(head))
    if not until:
        raise ConsultInputError("err_consult_missing_until")
    try:
        closes_at = parse_when(until, now=now, tz=tz, future=True)
    except DateParseError as exc:
        key = "err_consult_until_past" if exc.reason == "past" else "err_consult_until_unreadable"
        raise ConsultInputError(key, value=until) from None
    plan = fields[2] if len(fields) > 2 and fields[2] else None
    if plan is not None and len(plan) > MAX_PLAN:
        raise ConsultInputError("err_consult_plan_too_long", limit=MAX_PLAN, length=len(plan))
    return ConsultDraft(head or None, closes_at, plan, proposal)


def percent(part: int, whole: int) -> str:
    """Share of the turnout, one decimal: 37 of 100 -> '37%', 1 of 3 -> '33.3%'."""
    if whole <= 0:
        return "0%"
    value = round(100 * part / whole, 1)
    return f"{value:g}%"


def title_from(text: str) -> str:
    """A proposal's text as a consultation title (first line, at most MAX_TITLE characters)."""
    line = " ".join(text.strip().split("\n", 1)[0].split())
    return line if len(line) <= MAX_TITLE else line[: MAX_TITLE - 1] + "…"
