"""Figures by level: where demands were solved (网格 / 社区 / 街道), and a street's view of its communities.

The three rates follow the contract (per period, by filing date; rejected and duplicates excluded
from the filed count; a rated demand counts as resolved):
- response rate = demands accepted within the SLA ÷ demands filed
- resolution rate = demands resolved ÷ demands filed
- satisfaction rate = ratings of 4 or 5 ÷ ratings given
computed in SQL, one query for all the street's communities.

`LevelSharesPart` is the piece /stats shows (the ledger wires it in); `chart_png` draws the street's chart.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.domain.demands import OPEN
from bot.domain.grids import LEVELS, share
from bot.services.ledger_export import DemandColumn
from bot.storage.models import Community, Demand
from bot.ui.i18n import Translator

if TYPE_CHECKING:
    from bot.services.ledger import LedgerService

RESOLVED = ("resolved", "rated")
EXCLUDED = ("rejected", "duplicate")


@dataclass
class CommunityFigures:
    community_id: int
    name: str
    filed: int
    accepted_in_time: int
    resolved: int
    ratings: int
    satisfied: int
    overdue: int
    solved_at: dict[str, int]  # level -> resolved demands solved there

    @property
    def response_rate(self) -> float | None:
        return share(self.accepted_in_time, self.filed)

    @property
    def resolution_rate(self) -> float | None:
        return share(self.resolved, self.filed)

    @property
    def satisfaction_rate(self) -> float | None:
        return share(self.satisfied, self.ratings)

    def level_share(self, level: str) -> float | None:
        return share(self.solved_at.get(level, 0), self.resolved)


def _period(start: datetime | None, end: datetime | None) -> list[Any]:
    out: list[Any] = [Demand.state.not_in(EXCLUDED)]
    if start is not None:
        out.append(Demand.filed_at >= start)
    if end is not None:
        out.append(Demand.filed_at < end)
    return out


async def street_figures(s: AsyncSession, communities: list[Community], start: datetime | None,
                         end: datetime | None, now: datetime) -> list[CommunityFigures]:
    """One row per community, from two grouped queries."""
    if not communities:
        return []
    ids = [c.id for c in communities]
    solved = Demand.state.in_(RESOLVED)
    count_if = lambda cond: func.coalesce(func.sum(case((cond, 1), else_=0)), 0)  # noqa: E731
    q = (
        select(
            Demand.community_id,
            func.count(Demand.id),
            count_if(and_(Demand.accepted_at.is_not(None), Demand.accepted_at <= Demand.accept_by)),
            count_if(solved),
            count_if(Demand.rating.is_not(None)),
            count_if(Demand.rating >= 4),
            count_if(and_(Demand.state.in_([str(x) for x in OPEN]), Demand.resolve_by < now)),
        )
        .where(Demand.community_id.in_(ids), *_period(start, end))
        .group_by(Demand.community_id)
    )
    rows = {r[0]: r for r in (await s.execute(q)).all()}
    levels: dict[int, dict[str, int]] = {}
    lq = (
        select(Demand.community_id, Demand.level, func.count(Demand.id))
        .where(Demand.community_id.in_(ids), solved, *_period(start, end))
        .group_by(Demand.community_id, Demand.level)
    )
    for cid, level, n in (await s.execute(lq)).all():
        levels.setdefault(cid, {})[level] = int(n)
    out = []
    for c in communities:
        r = rows.get(c.id)
        values = [int(v) for v in r[1:]] if r else [0] * 6
        out.append(CommunityFigures(c.id, c.name, *values, solved_at=levels.get(c.id, {})))
    return out


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


class LevelSharesPart:
    """/stats gains where demands were solved: 网格 / 社区 / 街道 (小事不出网格，大事不出社区)."""

    async def lines(self, session: AsyncSession, community_id: int, start: datetime | None, end: datetime | None,
                    locale: str) -> list[str]:
        community = await session.get(Community, community_id)
        if community is None:
            return []
        (fig,) = await street_figures(session, [community], start, end, datetime.now(UTC))
        tr = Translator(locale)
        parts = [str(tr("level_share_item", level=tr(f"level_{lv}"), n=fig.solved_at.get(lv, 0),
                            share=pct(fig.level_share(lv)))) for lv in LEVELS]
        return [str(tr("level_shares_head", total=fig.resolved)), " · ".join(parts)]


# ---------------------------------------------------------------------- the chart


@cache
def _cjk_font() -> Any:
    """mplfonts' Noto Sans CJK SC when installed (labels in Chinese), else None (ASCII labels)."""
    try:
        from pathlib import Path

        import mplfonts  # type: ignore[import-untyped]
        from matplotlib import font_manager

        path = Path(mplfonts.__file__).parent / "fonts" / "NotoSansCJKsc-Regular.otf"
        if not path.exists():
            return None
        font_manager.fontManager.addfont(str(path))
        return font_manager.FontProperties(fname=str(path))
    except Exception:
        return None


def chart_png(figures: list[CommunityFigures], title: str, labels: dict[str, str]) -> bytes:
    """Grouped bars: each community's three rates. `labels` maps response/resolution/satisfaction
    (and title) to text; without a CJK font the labels fall back to English. CPU-bound: call it in a
    worker thread (asyncio.to_thread) so other chats are not held up."""
    # A Figure of its own, no pyplot state: safe to draw in a worker thread (the handler does).
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    font = _cjk_font()
    if font is None:
        labels = {"response": "response", "resolution": "resolution", "satisfaction": "satisfaction"}
        names = [f"#{f.community_id}" for f in figures]
        title = "Street: three rates"
    else:
        names = [f.name for f in figures]
    series = [
        ("response", [f.response_rate or 0 for f in figures]),
        ("resolution", [f.resolution_rate or 0 for f in figures]),
        ("satisfaction", [f.satisfaction_rate or 0 for f in figures]),
    ]
    fig = Figure(figsize=(min(16.0, max(4.0, 1.6 * len(figures) + 2)), 3.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    width = 0.26
    for i, (k, values) in enumerate(series):
        xs = [x + (i - 1) * width for x in range(len(figures))]
        ax.bar(xs, [v * 100 for v in values], width, label=labels[k])
    ax.set_xticks(list(range(len(figures))))
    ax.set_xticklabels(names, fontproperties=font, rotation=45 if len(figures) > 8 else 0,
                       ha="right" if len(figures) > 8 else "center")
    ax.set_ylim(0, 125)
    ax.set_yticks([0, 20, 40, 60, 80, 100])
    ax.set_ylabel("%")
    ax.set_title(title, fontproperties=font)
    ax.legend(prop=font, loc="upper center", ncol=3, frameon=False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def attach_to_ledger(ledger: LedgerService) -> None:
    """/stats gains the level shares; the 诉求 sheet of /export a level column after the state
    (for a resolved demand, the level where it was solved)."""
    ledger.add_stats(LevelSharesPart())
    at = next((i + 1 for i, c in enumerate(ledger.demand_columns) if c.header_key == "ledger_col_state"),
              len(ledger.demand_columns))
    ledger.demand_columns.insert(at, DemandColumn("ledger_col_level", 8, lambda r: r.name(f"level_{r.demand.level}"),
                                                  lambda p: p.named("level_", "level")))  # a page at once
