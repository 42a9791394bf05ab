"""Rendering /stats and the digest: figures with their fractions, in the user's language."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.domain.demands import State
from bot.domain.ledger import Rate, duration_text
from bot.ui.html import Html, esc
from bot.ui.i18n import Translator
from bot.ui.tasks import hours

if TYPE_CHECKING:
    from bot.services.ledger import Stats

STATE_ORDER = [s.value for s in (State.NEW, State.ACCEPTED, State.ASSIGNED, State.REOPENED, State.RESOLVED,
                                 State.RATED, State.REJECTED, State.DUPLICATE)]


def rate_text(rate: Rate) -> str:
    """`66.7% (2/3)`; `— (0/0)` when nothing to divide by."""
    return rate.text()


def _join(tr: Translator, items: list[Html]) -> Html:
    return Html(("，" if tr.locale == "zh" else ", ").join(items))


def period_name(tr: Translator, st: Stats) -> Html:
    p = st.period
    if p.kind == "all":
        return tr("ledger_all")
    if p.kind == "week":
        return tr("ledger_week", span=p.label)
    return tr("ledger_month", month=p.label)


def stats_text(tr: Translator, st: Stats) -> Html:
    r = st.rates
    lines = [
        tr("ledger_stats_head", name=st.community.name, period=period_name(tr, st)),
        tr("ledger_filed", filed=r.filed, counted=r.counted, excluded=r.filed - r.counted),
        tr("ledger_rate_line", name=tr("ledger_rate_response"), value=rate_text(r.response)),
        tr("ledger_rate_line", name=tr("ledger_rate_resolution"), value=rate_text(r.resolution)),
        tr("ledger_rate_line", name=tr("ledger_rate_satisfaction"), value=rate_text(r.satisfaction)),
    ]
    if st.by_state:
        states = [s for s in STATE_ORDER if s in st.by_state] + sorted(set(st.by_state) - set(STATE_ORDER))
        lines.append(tr("ledger_by_state", items=_join(tr, [tr("ledger_item", name=tr(f"state_{s}"), n=st.by_state[s])
                                                           for s in states])))
    if st.by_category:
        lines.append(tr("ledger_by_category", items=_join(tr, [tr("ledger_item", name=tr(f"cat_{k}"), n=n)
                                                              for k, n in st.by_category])))
    loc = tr.locale
    lines.append(tr("ledger_times", what=tr("ledger_to_accept"), avg=duration_text(st.accept.average, loc),
                    median=duration_text(st.accept.median, loc), n=st.accept.count))
    lines.append(tr("ledger_times", what=tr("ledger_to_resolve"), avg=duration_text(st.resolve.average, loc),
                    median=duration_text(st.resolve.median, loc), n=st.resolve.count))
    lines.append(tr("ledger_overdue", n=st.overdue))
    lines.append(tr("ledger_volunteers", hours=hours(st.volunteer_minutes), points=st.volunteer_points,
                    people=st.volunteers))
    if st.meetings:
        lines.append(tr("ledger_attendance", value=Rate(st.attended, st.expected).text(), meetings=st.meetings))
    else:
        lines.append(tr("ledger_attendance_none"))
    lines.extend(esc(x) for x in st.extra)  # a part's plain text is escaped; its Html is kept
    return Html("\n".join(lines))
