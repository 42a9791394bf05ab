"""How members in the open look: the 承诺墙 with its pages, pledge lines, the ballot, the 公示."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from bot.domain.members import (
    MEMBER_SCALE,
    RESIDENT_SCALE,
    TELEGRAM_LIMIT,
    paginate,
    satisfaction,
    short,
)
from bot.transport.port import Button, Keyboard
from bot.ui.dates import format_when
from bot.ui.html import Html, esc
from bot.ui.i18n import Translator


@dataclass
class WallPledge:
    number: int
    text: str
    state: str
    updates: int
    until: datetime | None


@dataclass
class WallEntry:
    """One member on the wall: `name` is None when they do not show their identity (一名党员)."""

    name: str | None
    post: str | None
    pledges: list[WallPledge] = field(default_factory=list)


def public_name(tr: Translator, name: str | None) -> Html:
    return esc(short(name)) if name else tr("member_anonymous")


def pledge_state(tr: Translator, state: str) -> Html:
    return tr(f"pledge_state_{state}")


def entry_text(tr: Translator, e: WallEntry, tz: str) -> str:
    head = str(tr("wall_entry_head", name=public_name(tr, e.name)))
    if e.post:
        head += str(tr("wall_entry_post", post=short(e.post)))
    lines = [head]
    for p in e.pledges:
        extra = ""
        if p.until is not None:
            extra += str(tr("wall_pledge_until", until=format_when(p.until, tr.locale, tz)))
        if p.updates:
            extra += str(tr("wall_pledge_updates", count=p.updates))
        lines.append(str(tr("wall_pledge_line", n=p.number, text=p.text, state=pledge_state(tr, p.state),
                            extra=Html(extra))))
    return "\n".join(lines)


def wall_pages(tr: Translator, entries: list[WallEntry], tz: str) -> list[list[str]]:
    return paginate([entry_text(tr, e, tz) for e in entries])


def wall_message(tr: Translator, community: str, pages: list[list[str]], page: int,
                 post_id: int) -> tuple[Html, Keyboard | None, int]:
    """(text, ◀ ▶ keyboard, the page shown): always within Telegram's 4,096 characters."""
    total = len(pages)
    page = max(0, min(page, total - 1))
    body = "\n\n".join(pages[page]) if pages[page] else str(tr("wall_empty"))
    parts = [str(tr("wall_head", community=community)), body]
    if total > 1:
        parts.append(str(tr("wall_page", page=page + 1, pages=total)))
    text = "\n\n".join(parts)
    assert len(text) < TELEGRAM_LIMIT
    keyboard = None
    if total > 1:
        keyboard = Keyboard.of([
            Button("◀", f"wall:p:{post_id}:{(page - 1) % total}"),
            Button("▶", f"wall:p:{post_id}:{(page + 1) % total}"),
        ])
    return Html(text), keyboard, page


def scale_of(kind_scale: str) -> tuple[str, ...]:
    return MEMBER_SCALE if kind_scale == "member" else RESIDENT_SCALE


def choice_name(tr: Translator, choice: str) -> Html:
    return tr(f"ev_choice_{choice}")


def ballot_keyboard(tr: Translator, subject_id: int, scale: tuple[str, ...]) -> Keyboard:
    return Keyboard.of([Button(str(choice_name(tr, c)), f"ev:v:{subject_id}:{i}") for i, c in enumerate(scale)])


def result_lines(tr: Translator, rows: list[tuple[Html, dict[str, int]]]) -> list[str]:
    """One line per subject: its answers and share of good ones, or 样本不足 below five raters."""
    out = []
    for label, counts in rows:
        raters, pct = satisfaction(counts)
        if pct is None:
            out.append(str(tr("ev_result_thin", subject=label, raters=raters)))
            continue
        detail = str(tr("roster_sep")).join(
            f"{choice_name(tr, c)} {n}" for c, n in counts.items() if n
        )
        out.append(str(tr("ev_result_line", subject=label, pct=pct, raters=raters, detail=Html(detail))))
    return out
