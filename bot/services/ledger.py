"""Ledger and statistics (台账, 三率): /stats, its chart, /export, the weekly digest.

Every figure is one SQL aggregation over the community's demands of the period (by filing date,
in the community's timezone), read through `ix_demands_ledger`, so it is the same on SQLite and
PostgreSQL and costs no Python loop over rows. Forgotten users' demands still count: nothing
here joins the people who filed them.

Other capabilities add to it: `add_stats(part)` (extra lines of /stats) and `add_sheet(part)`
(an extra sheet of /export); `demand_columns` is the list of the 诉求 sheet's columns.
"""

from __future__ import annotations

import asyncio
import html
import logging
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, delete, func, literal, not_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from bot.domain.demands import OPEN, State
from bot.domain.ledger import (
    Period,
    Rates,
    chart_months,
    last_week,
    median,
    next_digest_at,
    parse_period,
)
from bot.scheduler.runner import JobRunner, add_job
from bot.services.base import ServiceContext
from bot.services.errors import NotFound, UserError
from bot.services.meetings import ATTEND, LEAVE
from bot.services.notify import enqueue_message, locale_of
from bot.services.personal import row_dict
from bot.services.roles import PRESENT, secretary_users
from bot.storage.models import (
    Chat,
    ChatMember,
    Community,
    Demand,
    DigestOptOut,
    Job,
    Meeting,
    MeetingAttendee,
    Task,
    TaskClaim,
)
from bot.storage.upsert import upsert
from bot.transport.port import Document, OutMessage
from bot.ui import chart
from bot.ui.i18n import Translator
from bot.ui.ledger import stats_text

log = logging.getLogger("linli.ledger")

JOB_DIGEST = "ledger_digest"  # ref: the community; guard: the Monday it is for
JOB_DIGEST_SEED = "ledger_digest_seed"  # ref 0, daily: communities made since get their digest job
DIGEST_HOUR = 9
EXCLUDED = (State.REJECTED.value, State.DUPLICATE.value)
RESOLVED = (State.RESOLVED.value, State.RATED.value)


class StatsPart(Protocol):
    """Extra lines of /stats from another capability (grids, consultations)."""

    async def lines(self, session: AsyncSession, community_id: int, start: datetime, end: datetime,
                    locale: str) -> list[str]: ...


class SheetPart(Protocol):
    """An extra sheet of /export from another capability."""

    def title(self, locale: str) -> str: ...

    def headers(self, locale: str) -> list[str]: ...

    def rows(self, session: AsyncSession, community_id: int, start: datetime, end: datetime,
             locale: str) -> Any: ...  # an async iterator of row value lists, or an awaitable list of them


@dataclass
class Durations:
    count: int = 0
    average: float | None = None  # seconds
    median: float | None = None


@dataclass
class Stats:
    community: Community
    period: Period
    rates: Rates
    by_state: dict[str, int]
    by_category: list[tuple[str, int]]  # most first
    accept: Durations
    resolve: Durations
    overdue: int  # open demands past their resolve deadline now (the whole community)
    volunteer_minutes: int
    volunteer_points: int
    volunteers: int
    meetings: int
    attended: int
    expected: int
    extra: list[str] = field(default_factory=list)


def seconds_between(dialect: str, later: Any, earlier: Any) -> ColumnElement[Any]:
    """later - earlier in seconds, the same on both databases."""
    if dialect == "sqlite":
        return (func.julianday(later) - func.julianday(earlier)) * 86400.0
    return func.extract("epoch", later - earlier)


def rate_columns() -> list[ColumnElement[Any]]:
    """filed, counted, accepted in SLA, resolved, ratings, ratings of 4-5: sums over the selected demands."""
    excluded = Demand.state.in_(EXCLUDED)
    return [
        func.count(),
        func.coalesce(func.sum(case((excluded, 0), else_=1)), 0),
        func.coalesce(func.sum(case((and_(not_(excluded), Demand.accepted_at.is_not(None),
                                          Demand.accepted_at <= Demand.accept_by), 1), else_=0)), 0),
        func.coalesce(func.sum(case((Demand.state.in_(RESOLVED), 1), else_=0)), 0),
        func.count(Demand.rating),
        func.coalesce(func.sum(case((Demand.rating >= 4, 1), else_=0)), 0),
    ]


def _rates(row: Sequence[Any] | None) -> Rates:
    if row is None:
        return Rates(0, 0, 0, 0, 0, 0)
    return Rates(*(int(v or 0) for v in row))


def in_period(community_id: int, start: datetime, end: datetime) -> list[ColumnElement[bool]]:
    return [Demand.community_id == community_id, Demand.filed_at >= start, Demand.filed_at < end]


class LedgerService:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.stats_parts: list[StatsPart] = []
        self.sheet_parts: list[SheetPart] = []
        from bot.services.ledger_export import default_demand_columns

        self.demand_columns = default_demand_columns()
        ctx.personal.register("ledger", self._export_user, self._forget_user)

    # ------------------------------------------------------------------ extension points

    def add_stats(self, part: StatsPart) -> None:
        self.stats_parts.append(part)

    def add_sheet(self, part: SheetPart) -> None:
        self.sheet_parts.append(part)

    def register_jobs(self, jobs: JobRunner) -> None:
        jobs.register(JOB_DIGEST, self._job_digest)
        jobs.register(JOB_DIGEST_SEED, self._job_seed)

    # ------------------------------------------------------------------ helpers

    @property
    def _locale(self) -> str:
        return self.ctx.settings.default_locale

    async def _community(self, s: AsyncSession, community_id: int) -> Community:
        community = await s.get(Community, community_id)
        if community is None:
            raise NotFound("err_no_community")
        return community

    def period(self, raw: str, community: Community, *, allow_all: bool = True) -> Period:
        from bot.domain.ledger import PeriodError

        try:
            return parse_period(raw, now=self.ctx.clock(), tz_name=community.timezone, allow_all=allow_all)
        except PeriodError as exc:
            raise UserError(exc.key) from None

    # ------------------------------------------------------------------ figures

    async def rates(self, s: AsyncSession, community_id: int, start: datetime, end: datetime) -> Rates:
        row = (await s.execute(select(*rate_columns()).where(*in_period(community_id, start, end)))).first()
        return _rates(row)

    async def monthly_rates(self, s: AsyncSession, community_id: int, months: list[Period]) -> list[Rates]:
        """The rates of each month: one range query per month, each a short scan of the ledger index
        (faster on SQLite than one pass that sorts every demand into its month with a CASE)."""
        return [await self.rates(s, community_id, m.start, m.end) for m in months]

    async def _durations(self, s: AsyncSession, community_id: int, start: datetime, end: datetime,
                         later: Any, condition: ColumnElement[bool]) -> Durations:
        dialect = s.bind.dialect.name
        secs = seconds_between(dialect, later, Demand.filed_at)
        where = [*in_period(community_id, start, end), later.is_not(None), condition]
        count, avg = (await s.execute(select(func.count(), func.avg(secs)).where(*where))).one()
        count = int(count or 0)
        if not count:
            return Durations()
        middle = [float(v) for v in await s.scalars(
            select(secs).where(*where).order_by(secs).offset((count - 1) // 2).limit(2))]
        return Durations(count, float(avg), median(middle, count))

    async def stats(self, *, actor_id: int, community_id: int, period: str = "",
                    locale: str | None = None) -> Stats:
        async with self.ctx.read() as s:
            await self.ctx.roles.require_secretary(s, community_id, actor_id)
            community = await self._community(s, community_id)
            p = self.period(period, community)
            return await self.figures(s, community, p, locale or community.locale or self._locale)

    async def figures(self, s: AsyncSession, community: Community, p: Period, locale: str) -> Stats:
        cid, start, end = community.id, p.start, p.end
        now = self.ctx.clock()
        rates = await self.rates(s, cid, start, end)
        by_state: dict[str, int] = {}
        by_category: dict[str, int] = {}
        rows = (await s.execute(select(Demand.state, Demand.category, func.count())
                                .where(*in_period(cid, start, end))
                                .group_by(Demand.state, Demand.category))).all()
        for state, category, n in rows:
            by_state[state] = by_state.get(state, 0) + int(n)
            by_category[category] = by_category.get(category, 0) + int(n)
        accept = await self._durations(s, cid, start, end, Demand.accepted_at, literal(True))
        resolve = await self._durations(s, cid, start, end, Demand.resolved_at, Demand.state.in_(RESOLVED))
        overdue = int(await s.scalar(select(func.count()).select_from(Demand).where(
            Demand.community_id == cid, Demand.state.in_([str(x) for x in OPEN]), Demand.resolve_by < now)) or 0)
        minutes, points, people = (await s.execute(
            select(func.coalesce(func.sum(TaskClaim.minutes), 0), func.coalesce(func.sum(TaskClaim.points), 0),
                   func.count(func.distinct(TaskClaim.user_id)))
            .join(Task, Task.id == TaskClaim.task_id)
            .where(Task.community_id == cid, TaskClaim.awarded_at.is_not(None), TaskClaim.awarded_at >= start,
                   TaskClaim.awarded_at < end)
        )).one()
        meetings, attended, expected = await self._attendance(s, cid, start, min(end, now))
        extra: list[str] = []
        for part in self.stats_parts:
            extra.extend(await part.lines(s, cid, start, end, locale))
        ordered = sorted(by_category.items(), key=lambda kv: (-kv[1], kv[0]))
        return Stats(community, p, rates, by_state, ordered, accept, resolve, overdue, int(minutes), int(points),
                     int(people), meetings, attended, expected, extra)

    async def meeting_attendance(self, s: AsyncSession, cid: int,
                                 meetings: list[Meeting]) -> dict[int, tuple[set[int], set[int], set[int]]]:
        """Per meeting: (checked in, on leave, expected) — for party meetings the community's
        members and anyone accounted for, for 议事协商会 those who said they would come, took leave
        or checked in (as /attendance counts them)."""
        if not meetings:
            return {}
        members = set(await s.scalars(
            select(ChatMember.user_id).join(Chat, Chat.id == ChatMember.chat_id)
            .where(Chat.community_id == cid, Chat.kind == "member", ChatMember.status.in_(PRESENT))))
        rows = (await s.execute(select(MeetingAttendee.meeting_id, MeetingAttendee.user_id, MeetingAttendee.response,
                                       MeetingAttendee.checked_in_at)
                                .where(MeetingAttendee.meeting_id.in_([m.id for m in meetings])))).all()
        by_meeting: dict[int, list[Any]] = {}
        for r in rows:
            by_meeting.setdefault(r[0], []).append(r)
        out: dict[int, tuple[set[int], set[int], set[int]]] = {}
        for m in meetings:
            mine = by_meeting.get(m.id, [])
            came = {r[1] for r in mine if r[3] is not None}
            leave = {r[1] for r in mine if r[3] is None and r[2] == LEAVE}
            accounted = came | leave
            if m.audience == "member":
                expected = members | accounted
            else:
                expected = accounted | {r[1] for r in mine if r[2] == ATTEND}
            out[m.id] = (came, leave, expected)
        return out

    async def _attendance(self, s: AsyncSession, cid: int, start: datetime, end: datetime) -> tuple[int, int, int]:
        """Meetings held in the period (not cancelled, begun by now): (meetings, check-ins, expected)."""
        if end <= start:
            return 0, 0, 0
        held = list(await s.scalars(select(Meeting).where(
            Meeting.community_id == cid, Meeting.status != "cancelled", Meeting.starts_at >= start,
            Meeting.starts_at < end)))
        detail = await self.meeting_attendance(s, cid, held)
        return len(held), sum(len(v[0]) for v in detail.values()), sum(len(v[2]) for v in detail.values())

    # ------------------------------------------------------------------ the chart

    async def chart_png(self, s: AsyncSession, community: Community, p: Period, st: Stats, locale: str) -> bytes:
        """The three rates of the 12 months up to the period's (or this) month, and its categories."""
        tr = Translator(locale)
        if p.month is not None:
            last = p.month
        else:
            local = self.ctx.clock().astimezone(ZoneInfo(community.timezone))
            last = date(local.year, local.month, 1)
        months = chart_months(last, community.timezone)
        monthly = await self.monthly_rates(s, community.id, months)
        def text(key: str, **params: Any) -> str:  # drawn, not sent as HTML: no entities
            return html.unescape(str(tr(key, **params)))

        data = chart.ChartData(
            title=text("ledger_chart_rates"),
            months=[m.label for m in months],
            series=[(text("ledger_rate_response"), [r.response.value for r in monthly]),
                    (text("ledger_rate_resolution"), [r.resolution.value for r in monthly]),
                    (text("ledger_rate_satisfaction"), [r.satisfaction.value for r in monthly])],
            categories_title=text("ledger_chart_categories",
                                  period=p.label if p.kind != "all" else tr("ledger_all")),
            categories=[(text(f"cat_{k}"), n) for k, n in st.by_category],
            empty_note=text("ledger_chart_empty"),
        )
        return await asyncio.to_thread(chart.render, data)

    async def stats_with_chart(self, *, actor_id: int, community_id: int, period: str = "",
                               locale: str | None = None) -> tuple[Stats, bytes]:
        async with self.ctx.read() as s:
            await self.ctx.roles.require_secretary(s, community_id, actor_id)
            community = await self._community(s, community_id)
            p = self.period(period, community)
            loc = locale or community.locale or self._locale
            st = await self.figures(s, community, p, loc)
            png = await self.chart_png(s, community, p, st, loc)
        await self.ensure_digest(community_id)
        return st, png

    # ------------------------------------------------------------------ export

    async def export(self, *, actor_id: int, community_id: int, month: str = "",
                     locale: str | None = None) -> tuple[Period, bytes, int]:
        """(period, xlsx bytes, demands in it). Only a secretary's: the only export there is."""
        from bot.services.ledger_export import build_workbook

        async with self.ctx.read() as s:
            await self.ctx.roles.require_secretary(s, community_id, actor_id)
            community = await self._community(s, community_id)
            p = self.period(month, community, allow_all=False)
            loc = locale or community.locale or self._locale
            started = time.perf_counter()
            data, count = await build_workbook(self, s, community, p, loc)
        log.info("export community=%s month=%s demands=%s bytes=%s seconds=%.2f", community_id, p.label, count,
                 len(data), time.perf_counter() - started)
        return p, data, count

    # ------------------------------------------------------------------ the weekly digest

    async def set_digest(self, *, actor_id: int, community_id: int, on: bool | None) -> bool:
        """/digest on|off (None: just tell); returns whether it is on now."""
        async with self.ctx.tx() as s:
            await self.ctx.roles.require_secretary(s, community_id, actor_id)
            await self._community(s, community_id)
            key = (community_id, actor_id)
            if on is True:
                await s.execute(delete(DigestOptOut).where(DigestOptOut.community_id == community_id,
                                                           DigestOptOut.user_id == actor_id))
            elif on is False:
                await upsert(s, DigestOptOut, {"community_id": community_id, "user_id": actor_id,
                                               "created_at": self.ctx.clock()}, ["community_id", "user_id"])
            state = await s.get(DigestOptOut, key) is None
            await self._schedule_digest(s, community_id)
        return state

    async def _schedule_digest(self, s: AsyncSession, community_id: int) -> None:
        community = await s.get(Community, community_id)
        if community is None:
            return
        at = next_digest_at(self.ctx.clock(), community.timezone, DIGEST_HOUR)
        await add_job(s, JOB_DIGEST, community_id, at, at.isoformat(timespec="minutes"))

    async def ensure_digest(self, community_id: int) -> None:
        async with self.ctx.tx() as s:
            await self._schedule_digest(s, community_id)

    async def schedule(self) -> None:
        """On start: every community has its next digest, and the daily seeding timer runs."""
        async with self.ctx.tx() as s:
            await self._seed(s)

    async def _seed(self, s: AsyncSession) -> None:
        for cid in list(await s.scalars(select(Community.id))):
            await self._schedule_digest(s, cid)
        now = self.ctx.clock()
        day = now.date().isoformat()
        await add_job(s, JOB_DIGEST_SEED, 0, now + timedelta(days=1), day)

    async def _job_seed(self, s: AsyncSession, job: Job) -> str:
        await self._seed(s)
        return "seeded"

    async def _job_digest(self, s: AsyncSession, job: Job) -> str:
        """Last week's figures and the chart to each secretary who started the bot, unless off.
        The week is the one before the job's own Monday, so a digest run late (the bot was down)
        still reports that week; then the next Monday's job is made."""
        community = await s.get(Community, job.ref_id)
        if community is None:
            return "gone"
        p = last_week(job.due_at, community.timezone)
        off = set(await s.scalars(select(DigestOptOut.user_id).where(DigestOptOut.community_id == community.id)))
        told = 0
        cache: dict[str, tuple[str, bytes]] = {}
        for user in await secretary_users(s, self.ctx.roles, community.id):
            if not user.started or user.id in off:
                continue
            loc = locale_of(user, community, self._locale)
            if loc not in cache:
                st = await self.figures(s, community, p, loc)
                text = str(Translator(loc)("ledger_digest_head", name=community.name)) + "\n" + stats_text(
                    Translator(loc), st)
                cache[loc] = (text, await self.chart_png(s, community, p, st, loc))
            text, png = cache[loc]
            await enqueue_message(
                s, OutMessage(chat_id=user.id, text=text, document=Document(f"stats-{p.start.date()}.png", png)),
                community_id=community.id, dedup_key=f"digest:{community.id}:{job.guard}:u{user.id}",
            )
            told += 1
        await self._schedule_digest(s, community.id)
        log.info("weekly digest community=%s week=%s secretaries=%s", community.id, p.start.date(), told)
        return f"sent:{told}"

    # ------------------------------------------------------------------ personal data

    async def _export_user(self, s: AsyncSession, user_id: int) -> dict[str, Any]:
        rows = await s.scalars(select(DigestOptOut).where(DigestOptOut.user_id == user_id))
        return {"digest_off": [row_dict(r) for r in rows]}

    async def _forget_user(self, s: AsyncSession, user_id: int) -> None:
        await s.execute(delete(DigestOptOut).where(DigestOptOut.user_id == user_id))


async def iterate_rows(rows: Any) -> AsyncIterator[list[Any]]:
    """A sheet part's rows as an async iterator, whether it gave one, a list, or an awaitable list."""
    if hasattr(rows, "__aiter__"):
        async for r in rows:
            yield list(r)
        return
    if asyncio.iscoroutine(rows) or isinstance(rows, asyncio.Future):
        rows = await rows
    for r in rows if isinstance(rows, Iterable) else []:
        yield list(r)


