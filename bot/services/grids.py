"""Grids and the street (网格 → 社区 → 街道): routing, escalation and return, streets and officers.

Who may do what (the contract's isolation rules, checked here and in DemandService's hooks):

| action                   | grid leader (own grid) | secretary          | street officer (own street) |
|--------------------------|------------------------|--------------------|-----------------------------|
| view                     | own grid, any level    | all of community   | demands at street level     |
| accept / assign / resolve| own grid, grid level   | all of community   | demands at street level     |
| escalate                 | grid → community       | grid/community → up| (nothing above the street)  |
| return                   | —                      | community → grid   | street → community          |
| street stats / queue     | —                      | —                  | own street's communities    |

A demand handled at a new level starts again as new there: the new level's accept deadline and
resolve deadline restart from the move (the response rate keeps the first acceptance; a move counts
as responding). The timeline records every move; the submitter is told 已上报社区 / 已上报街道.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.domain.demands import MAX_NOTE, OPEN, State, excerpt
from bot.domain.grids import (
    DOWN,
    MAX_GRID_NAME,
    MAX_STREET_NAME,
    UP,
    BuildingError,
    Level,
    buildings_in,
    month_bounds,
    parse_building,
    parse_buildings,
)
from bot.domain.sla import deadlines
from bot.metrics import DEMAND_MOVES
from bot.scheduler.runner import JobRunner, add_job
from bot.services.errors import Denied, NotFound, UserError
from bot.services.notify import notify_user
from bot.services.personal import row_dict
from bot.storage.models import (
    Community,
    Demand,
    DemandEvent,
    Grid,
    Job,
    ResidentBuilding,
    Street,
    StreetCommunity,
    StreetOfficer,
    User,
)
from bot.storage.upsert import upsert
from bot.transport.port import Keyboard
from bot.ui.demands import accept_keyboard, category_name
from bot.ui.i18n import Translator

if TYPE_CHECKING:
    from bot.services.base import ServiceContext
    from bot.services.demands import DemandService

log = logging.getLogger("linli.grids")

JOB_LEVEL_ACCEPT = "demand_level_accept_due"
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I


def _guard(level: str, when: datetime) -> str:
    return f"{level}:{when.isoformat(timespec='seconds')}"


def _clean(text: str | None, *, missing: str, limit: int = MAX_NOTE) -> str:
    value = (text or "").strip()
    if not value:
        raise UserError(missing)
    if len(value) > limit:
        raise UserError("err_note_too_long", limit=limit, length=len(value))
    return value


@dataclass
class QueueItem:
    demand: Demand
    community: Community


@dataclass
class StreetInfo:
    street: Street
    communities: list[Community]


class GridService:
    def __init__(self, ctx: ServiceContext, demands: DemandService) -> None:
        self.ctx = ctx
        self.demands = demands
        demands.levels = self  # the hooks DemandService asks: route, may_handle, may_see, led_grids
        ctx.personal.register("grids", self._export_user, self._forget_user)

    def register_jobs(self, jobs: JobRunner) -> None:
        jobs.register(JOB_LEVEL_ACCEPT, self._job_level_accept)

    @property
    def _locale(self) -> str:
        return self.ctx.settings.default_locale

    # ------------------------------------------------------------------ roles

    async def officer_streets(self, s: AsyncSession, user_id: int) -> list[int]:
        return list(await s.scalars(select(StreetOfficer.street_id).where(StreetOfficer.user_id == user_id)))

    async def street_of(self, s: AsyncSession, community_id: int) -> int | None:
        return await s.scalar(select(StreetCommunity.street_id).where(StreetCommunity.community_id == community_id))

    async def is_officer_for(self, s: AsyncSession, community_id: int, user_id: int) -> bool:
        street = await self.street_of(s, community_id)
        return street is not None and await s.get(StreetOfficer, (street, user_id)) is not None

    async def leads(self, s: AsyncSession, d: Demand, user_id: int) -> bool:
        if d.grid_id is None:
            return False
        grid = await s.get(Grid, d.grid_id)
        return grid is not None and grid.leader_id == user_id

    # ------------------------------------------------------------------ hooks for DemandService

    async def may_handle(self, s: AsyncSession, d: Demand, user_id: int) -> bool:
        """Accept, assign, resolve: the grid leader while it is at their grid, the street's officer
        while it is at the street (the secretary is checked by DemandService itself)."""
        if d.level == Level.GRID:
            return await self.leads(s, d, user_id)
        if d.level == Level.STREET:
            return await self.is_officer_for(s, d.community_id, user_id)
        return False

    async def may_see(self, s: AsyncSession, d: Demand, user_id: int) -> bool:
        if await self.leads(s, d, user_id):
            return True
        return d.level == Level.STREET and await self.is_officer_for(s, d.community_id, user_id)

    async def led_grids(self, s: AsyncSession, community_id: int, user_id: int) -> list[int]:
        return list(await s.scalars(select(Grid.id).where(Grid.community_id == community_id,
                                                          Grid.leader_id == user_id)))

    async def route(self, s: AsyncSession, d: Demand, community: Community) -> bool:
        """A new demand goes to the grid whose building its text names, else to the grid of the
        submitter's /mybuilding. With a leader, the leader is alerted (first, and alone: the
        secretaries hear if it is not accepted in time, or escalated). True when routed so."""
        grids = list(await s.scalars(select(Grid).where(Grid.community_id == community.id).order_by(Grid.id)))
        if not grids:
            return False
        wanted = buildings_in(d.text + " " + (d.location or ""))
        if not wanted and d.submitter_id is not None:
            mine = await s.get(ResidentBuilding, (community.id, d.submitter_id))
            wanted = [mine.building] if mine else []
        grid = next((g for b in wanted for g in grids if b in (g.buildings or [])), None)
        if grid is None:
            return False
        d.grid_id = grid.id
        leader = await s.get(User, grid.leader_id) if grid.leader_id is not None else None
        if leader is None:
            return False
        d.level = Level.GRID
        d.level_accept_by = d.accept_by
        # The leader is reminded at the accept deadline (the secretaries' own reminder fires then too).
        await add_job(s, JOB_LEVEL_ACCEPT, d.id, d.level_accept_by, _guard(Level.GRID, d.level_accept_by))
        await self._tell_leader(s, d, community, grid, leader, "alert_grid_new", key=f"d{d.id}:grid-new")
        return True

    # ------------------------------------------------------------------ grids (the secretary)

    async def add_grid(self, *, actor_id: int, community_id: int, name: str, buildings: str) -> Grid:
        name = name.strip()
        if not name or not buildings.strip():
            raise UserError("err_grid_add_usage")
        if len(name) > MAX_GRID_NAME:
            raise UserError("err_grid_name_long", limit=MAX_GRID_NAME)
        try:
            keys = parse_buildings(buildings)
        except BuildingError:
            raise UserError("err_grid_buildings", raw=buildings) from None
        async with self.ctx.tx() as s:
            await self.ctx.roles.require_secretary(s, community_id, actor_id)
            others = list(await s.scalars(select(Grid).where(Grid.community_id == community_id)))
            grid = next((g for g in others if g.name == name), None)
            for g in others:
                clash = sorted(set(keys) & set(g.buildings or []), key=lambda b: int(b[:-2]))
                if g is not grid and clash:
                    raise UserError("err_grid_overlap", grid=g.name, buildings="、".join(clash[:5]))
            if grid is None:
                grid = Grid(community_id=community_id, name=name, buildings=keys)
                s.add(grid)
            else:  # the same name again: its buildings are replaced
                grid.buildings = keys
            await s.flush()
        return grid

    async def grids(self, *, actor_id: int, community_id: int) -> list[tuple[Grid, User | None]]:
        async with self.ctx.read() as s:
            await self.ctx.roles.require_secretary(s, community_id, actor_id)
            rows = list(await s.scalars(select(Grid).where(Grid.community_id == community_id).order_by(Grid.id)))
            return [(g, await s.get(User, g.leader_id) if g.leader_id else None) for g in rows]

    async def lead(self, *, actor_id: int, community_id: int, name: str, leader_id: int) -> tuple[Grid, User]:
        async with self.ctx.tx() as s:
            await self.ctx.roles.require_secretary(s, community_id, actor_id)
            grid = await s.scalar(select(Grid).where(Grid.community_id == community_id, Grid.name == name.strip()))
            if grid is None:
                raise NotFound("err_grid_unknown", name=name)
            user = await s.get(User, leader_id)
            if user is None:
                raise UserError("err_assign_unknown")
            roles = self.ctx.roles
            if not (await roles.is_member(s, community_id, leader_id) or await roles.is_secretary(s, community_id,
                                                                                                  leader_id)):
                raise UserError("err_grid_lead_not_member", name=user.display_name)
            grid.leader_id = leader_id
        return grid, user

    async def set_building(self, *, actor_id: int, community_id: int, raw: str) -> tuple[str, Grid]:
        """/mybuilding: only a building one of the community's grids covers."""
        try:
            building = parse_building(raw)
        except BuildingError:
            raise UserError("err_building_usage") from None
        async with self.ctx.tx() as s:
            grids = list(await s.scalars(select(Grid).where(Grid.community_id == community_id)))
            grid = next((g for g in grids if building in (g.buildings or [])), None)
            if grid is None:
                raise UserError("err_building_unknown", building=building)
            await upsert(s, ResidentBuilding, {"community_id": community_id, "user_id": actor_id,
                                               "building": building, "updated_at": self.ctx.clock()},
                         ["community_id", "user_id"], update=["building", "updated_at"])
        return building, grid

    # ------------------------------------------------------------------ escalate / return

    async def escalate(self, *, actor_id: int, community_id: int, number: int, reason: str | None) -> Demand:
        """Up one level: grid → community (its leader or a secretary), community → street (a secretary)."""
        async with self.demands._change() as s:
            d = await self.demands._demand(s, community_id, number)
            secretary = await self.ctx.roles.is_secretary(s, community_id, actor_id)
            level = Level(d.level)
            allowed = secretary or (level == Level.GRID and await self.leads(s, d, actor_id)) or (
                level == Level.STREET and await self.is_officer_for(s, community_id, actor_id))
            if not allowed:
                raise Denied("err_escalate_denied", n=number)
            if level == Level.STREET:
                raise UserError("err_escalate_top", n=number)
            if d.state not in OPEN:
                raise UserError("err_level_state", n=number)
            text = _clean(reason, missing="err_escalate_usage")
            target = UP[level]
            if target == Level.STREET and await self.street_of(s, community_id) is None:
                raise UserError("err_no_street")
            await self._move(s, d, actor_id, target, text, up=True)
        DEMAND_MOVES.labels("escalate", d.level).inc()
        log.info("demand %s escalated to %s by user %s", d.id, d.level, actor_id)
        return d

    async def return_(self, *, actor_id: int, community_id: int, number: int, reason: str | None) -> Demand:
        """Down one level: street → community (the street's officer), community → grid (a secretary)."""
        async with self.demands._change() as s:
            d = await self.demands._demand(s, community_id, number)
            secretary = await self.ctx.roles.is_secretary(s, community_id, actor_id)
            level = Level(d.level)
            if level == Level.STREET:
                allowed = await self.is_officer_for(s, community_id, actor_id)
            elif level == Level.COMMUNITY:
                allowed = secretary
            else:
                allowed = secretary or await self.leads(s, d, actor_id)
            if not allowed:
                raise Denied("err_return_denied", n=number)
            if level == Level.GRID:
                raise UserError("err_return_bottom", n=number)
            if d.state not in OPEN:
                raise UserError("err_level_state", n=number)
            text = _clean(reason, missing="err_return_usage")
            target = DOWN[level]
            if target == Level.GRID:
                grid = await s.get(Grid, d.grid_id) if d.grid_id is not None else None
                if grid is None or grid.leader_id is None:
                    raise UserError("err_return_no_grid", n=number)
            await self._move(s, d, actor_id, target, text, up=False)
        DEMAND_MOVES.labels("return", d.level).inc()
        log.info("demand %s returned to %s by user %s", d.id, d.level, actor_id)
        return d

    async def _move(self, s: AsyncSession, d: Demand, actor_id: int, target: Level, reason: str, *,
                    up: bool) -> None:
        community = await s.get(Community, d.community_id)
        assert community is not None
        now = self.ctx.clock()
        before = d.state
        d.level = target
        d.state = State.NEW  # the new level takes it on afresh
        d.assignee_id = None
        d.accepted_at = d.accepted_at or now  # passing it on in time is responding
        # The SLA restarts, with the new level's own deadlines where SLA_LEVEL_OVERRIDES sets them.
        due = deadlines(now, d.category, d.urgency, self.ctx.settings.sla_level_overrides.get(target),
                        (community.config or {}).get("sla"), self.ctx.settings.sla_overrides)
        d.level_accept_by, d.resolve_by = due.accept_by, due.resolve_by
        d.updated_at = now
        action = f"{'escalate' if up else 'return'}_{target}"
        key = await self.demands._log(s, d, actor_id, action, before, reason)  # type: ignore[arg-type]
        await self.demands._schedule_deadlines(s, d)
        await add_job(s, JOB_LEVEL_ACCEPT, d.id, d.level_accept_by, _guard(target, d.level_accept_by))

        def told(tr: Translator) -> tuple[str, Keyboard | None]:
            return tr(f"note_{action}", n=d.number, reason=reason), None

        await self.demands._tell_people(s, d, community, told, key=key, skip=actor_id)
        await self._alert_level(s, d, community, f"alert_{action}", key=f"{key}:level", reason=reason)

    async def _alert_level(self, s: AsyncSession, d: Demand, community: Community, message: str, *, key: str,
                           **params: Any) -> None:
        """Whoever handles the demand's level now: its grid's leader, the secretaries, the street's officers."""
        if d.level == Level.COMMUNITY:
            await self.demands._alert_about(s, d, community, message, key=key, with_accept=True, **params)
            return
        if d.level == Level.GRID:
            grid = await s.get(Grid, d.grid_id) if d.grid_id is not None else None
            leader = await s.get(User, grid.leader_id) if grid is not None and grid.leader_id else None
            if grid is not None and leader is not None:
                await self._tell_leader(s, d, community, grid, leader, message, key=key, **params)
            return
        street = await self.street_of(s, d.community_id)
        officers = list(await s.scalars(
            select(User).join(StreetOfficer, StreetOfficer.user_id == User.id)
            .where(StreetOfficer.street_id == street).order_by(User.id)))
        for officer in officers:
            await notify_user(s, officer, self._render(d, community, message, None, **params), community=None,
                              default_locale=self._locale, fallback_chat_id=None, dedup_key=f"{key}:o{officer.id}")

    def _render(self, d: Demand, community: Community, message: str, grid: Grid | None, **params: Any) -> Any:
        def render(tr: Translator) -> tuple[str, Keyboard | None]:
            return tr(message, n=d.number, community=community.name, grid=grid.name if grid else "-",
                      category=category_name(tr, d.category), text=d.text, location=d.location or "-",
                      ref=f"{d.community_id}-{d.number}", **params), accept_keyboard(tr, d.id)

        return render

    async def _tell_leader(self, s: AsyncSession, d: Demand, community: Community, grid: Grid, leader: User,
                           message: str, *, key: str, **params: Any) -> None:
        """Privately; a leader who has not started the bot is mentioned in the member chat (excerpt only)."""
        chat = await self.demands._member_chat(s, community.id)
        if not leader.started and d.public:
            def render_group(tr: Translator) -> tuple[str, Keyboard | None]:
                return tr("alert_grid_group", n=d.number, grid=grid.name, category=category_name(tr, d.category),
                          text=excerpt(d.text)), accept_keyboard(tr, d.id)

            await notify_user(s, leader, render_group, community=community, default_locale=self._locale,
                              fallback_chat_id=chat.id if chat else None,
                              fallback_thread_id=chat.topic_id if chat else None, dedup_key=f"{key}:leader")
            return
        await notify_user(s, leader, self._render(d, community, message, grid, **params), community=community,
                          default_locale=self._locale, fallback_chat_id=None, dedup_key=f"{key}:leader")

    async def _job_level_accept(self, s: AsyncSession, job: Job) -> str:
        """The new level has not taken the demand on by its accept deadline: remind that level, once."""
        d = await s.get(Demand, job.ref_id)
        if d is None or d.state != State.NEW or d.level_accept_by is None \
                or job.guard != _guard(d.level, d.level_accept_by):
            return "moved-on"
        community = await s.get(Community, d.community_id)
        assert community is not None
        await self.demands._log(s, d, None, "remind", d.state)  # type: ignore[arg-type]
        await self._alert_level(s, d, community, "alert_level_accept_due", key=f"d{d.id}:level-due:{job.guard}")
        return "reminded"

    # ------------------------------------------------------------------ streets

    async def create_street(self, *, actor_id: int, name: str) -> Street:
        name = name.strip()
        if actor_id not in self.ctx.roles.superadmins:
            raise Denied("err_street_superadmin")
        if not name:
            raise UserError("err_street_create_usage")
        if len(name) > MAX_STREET_NAME:
            raise UserError("err_grid_name_long", limit=MAX_STREET_NAME)
        async with self.ctx.tx() as s:
            code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(8))
            street = Street(name=name, code=code, created_by=actor_id if await s.get(User, actor_id) else None)
            s.add(street)
            await s.flush()
        return street

    async def _street_by_code(self, s: AsyncSession, code: str) -> Street:
        street = await s.scalar(select(Street).where(Street.code == code.strip().upper()))
        if street is None or not code.strip():
            raise UserError("err_street_code")
        return street

    async def join(self, *, actor_id: int, community_id: int, code: str) -> Street:
        async with self.ctx.tx() as s:
            await self.ctx.roles.require_secretary(s, community_id, actor_id)
            street = await self._street_by_code(s, code)
            await upsert(s, StreetCommunity, {"community_id": community_id, "street_id": street.id,
                                              "joined_at": self.ctx.clock()}, ["community_id"],
                         update=["street_id", "joined_at"])  # a community moves to another street
        return street

    async def officer(self, *, actor_id: int, code: str | None, target_id: int, add: bool) -> tuple[Street, User]:
        if actor_id not in self.ctx.roles.superadmins:
            raise Denied("err_street_superadmin")
        async with self.ctx.tx() as s:
            if code:
                street = await self._street_by_code(s, code)
            else:
                streets = list(await s.scalars(select(Street).limit(2)))
                if len(streets) != 1:
                    raise UserError("err_street_officer_usage")
                street = streets[0]
            user = await s.get(User, target_id)
            if user is None:
                raise UserError("err_assign_unknown")
            if add:
                await upsert(s, StreetOfficer, {"street_id": street.id, "user_id": target_id,
                                                "created_at": self.ctx.clock()}, ["street_id", "user_id"])
            else:
                await s.execute(delete(StreetOfficer).where(StreetOfficer.street_id == street.id,
                                                            StreetOfficer.user_id == target_id))
        return street, user

    async def _require_officer(self, s: AsyncSession, actor_id: int) -> list[StreetInfo]:
        ids = await self.officer_streets(s, actor_id)
        if not ids:
            raise Denied("err_street_officer_only")
        out = []
        for street in await s.scalars(select(Street).where(Street.id.in_(ids)).order_by(Street.id)):
            communities = list(await s.scalars(
                select(Community).join(StreetCommunity, StreetCommunity.community_id == Community.id)
                .where(StreetCommunity.street_id == street.id).order_by(Community.id)))
            out.append(StreetInfo(street, communities))
        return out

    async def queue(self, *, actor_id: int) -> list[QueueItem]:
        """The open demands escalated to the officer's street(s), oldest first, in full."""
        async with self.ctx.read() as s:
            infos = await self._require_officer(s, actor_id)
            by_id = {c.id: c for info in infos for c in info.communities}
            if not by_id:
                return []
            rows = await s.scalars(
                select(Demand).where(Demand.community_id.in_(list(by_id)), Demand.level == Level.STREET,
                                     Demand.state.in_([str(x) for x in OPEN]))
                .order_by(Demand.updated_at, Demand.id))
            return [QueueItem(d, by_id[d.community_id]) for d in rows]

    async def reasons(self, demand_ids: list[int]) -> dict[int, tuple[str, str]]:
        """For the queue: each demand's submitter and the reason it was escalated to the street."""
        out: dict[int, tuple[str, str]] = {}
        async with self.ctx.read() as s:
            for did in demand_ids:
                d = await s.get(Demand, did)
                if d is None:
                    continue
                who = await s.get(User, d.submitter_id) if d.submitter_id else None
                note = await s.scalar(select(DemandEvent.note).where(
                    DemandEvent.demand_id == did, DemandEvent.action == "escalate_street")
                    .order_by(DemandEvent.id.desc()).limit(1))
                out[did] = (who.display_name if who else "-", note or "-")
        return out

    async def stats(self, *, actor_id: int, period: str | None) -> tuple[list[tuple[StreetInfo, list[Any]]], str]:
        """Each community's three rates, overdue count and level shares, per street of the officer."""
        from bot.services.grid_ledger import street_figures

        now = self.ctx.clock()
        try:
            start, end, label = month_bounds(period, now, self.ctx.settings.timezone)
        except ValueError:
            raise UserError("err_street_stats_usage") from None
        async with self.ctx.read() as s:
            infos = await self._require_officer(s, actor_id)
            out = []
            for info in infos:
                out.append((info, await street_figures(s, info.communities, start, end, now)))
        return out, label

    async def street_names(self, *, actor_id: int) -> list[str]:
        async with self.ctx.read() as s:
            return [i.street.name for i in await self._require_officer(s, actor_id)]

    # ------------------------------------------------------------------ personal data

    async def _export_user(self, s: AsyncSession, user_id: int) -> dict[str, Any]:
        return {
            "buildings": [row_dict(r) for r in await s.scalars(
                select(ResidentBuilding).where(ResidentBuilding.user_id == user_id))],
            "grids_led": [row_dict(r) for r in await s.scalars(select(Grid).where(Grid.leader_id == user_id))],
            "street_officer": [row_dict(r) for r in await s.scalars(
                select(StreetOfficer).where(StreetOfficer.user_id == user_id))],
        }

    async def _forget_user(self, s: AsyncSession, user_id: int) -> None:
        await s.execute(delete(ResidentBuilding).where(ResidentBuilding.user_id == user_id))
        await s.execute(delete(StreetOfficer).where(StreetOfficer.user_id == user_id))
        await s.execute(update(Grid).where(Grid.leader_id == user_id).values(leader_id=None))
        await s.execute(update(Street).where(Street.created_by == user_id).values(created_by=None))
