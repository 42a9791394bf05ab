"""The ledger on a real database (SQLite, and PostgreSQL when TEST_DATABASE_URL is set): a known
month of demands -> every rate to the exact fraction, periods cut in the community's timezone (not
UTC), times to accept and resolve, overdue, volunteers, meetings; the workbook read back with
openpyxl; the chart decoded; the weekly digest; the reopen deadline; the extension points."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest
from openpyxl import load_workbook
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.domain.ledger import Rates
from bot.scheduler.runner import JobRunner
from bot.services.clock import ManualClock
from bot.services.communities import CommunityService
from bot.services.demands import JOB_OVERDUE, DemandService
from bot.services.errors import Denied, UserError
from bot.services.ledger import JOB_DIGEST, LedgerService
from bot.services.people import PeopleService
from bot.services.tasks import TaskService
from bot.storage.models import Community, Demand, DigestOptOut, Job, Outbox, Task, TaskClaim
from bot.transport.port import Chat as TChat
from bot.ui.i18n import Translator
from bot.ui.ledger import stats_text
from tests.integration.conftest import ALICE, BOB, CAROL, MEM, RES, World
from tests.integration.test_tasks import make_context

BJ = timedelta(hours=8)


def bj(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    """A Beijing wall time as UTC."""
    return datetime(y, mo, d, h, mi, tzinfo=UTC) - BJ


@dataclass
class Led:
    w: World
    clock: ManualClock
    ledger: LedgerService
    runner: JobRunner
    cid: int

    def at(self, when: datetime) -> None:
        self.clock.now = when

    async def file(self, when: datetime, text: str = "楼道的灯坏了") -> int:
        self.at(when)
        filed = await self.w.demands.file(actor_id=BOB.id, community_id=self.cid, text=text, origin_chat_id=RES.id)
        return filed.demand.number

    async def accept(self, n: int, when: datetime) -> None:
        self.at(when)
        await self.w.demands.accept(actor_id=ALICE.id, community_id=self.cid, number=n)

    async def resolve(self, n: int, when: datetime) -> None:
        self.at(when)
        await self.w.demands.resolve(actor_id=ALICE.id, community_id=self.cid, number=n, note="已修好")

    async def rate(self, n: int, stars: int) -> None:
        await self.w.demands.rate(actor_id=BOB.id, community_id=self.cid, number=n, stars_given=stars)


async def build(engine: AsyncEngine) -> Led:
    from tests.integration.conftest import StatusBook

    book = StatusBook()
    clock = ManualClock(bj(2026, 2, 20, 9))
    ctx = make_context(engine, book, clock)
    demands = DemandService(ctx)
    w = World(ctx, book, PeopleService(ctx), CommunityService(ctx), demands)
    ledger = LedgerService(ctx)
    runner = JobRunner(ctx.sessions, clock=clock)
    demands.register_jobs(runner)
    ledger.register_jobs(runner)
    book.statuses[(RES.id, ALICE.id)] = "creator"
    book.statuses[(MEM.id, ALICE.id)] = "administrator"
    await w.see(ALICE, RES)
    await w.see(ALICE, MEM)
    r = await w.communities.setup(actor_id=ALICE.id, chat_id=RES.id, chat_is_group=True, thread_id=None,
                                  kind="resident", name="幸福里")
    await w.communities.setup(actor_id=ALICE.id, chat_id=MEM.id, chat_is_group=True, thread_id=None,
                              kind="member", name="幸福里")
    await w.see(BOB, RES)
    await w.see(CAROL, MEM)
    return Led(w, clock, ledger, runner, r.community.id)


async def known_month(led: Led) -> dict[str, int]:
    """March 2026 in Beijing time; numbers by role. The expected figures are worked out below."""
    h = timedelta(hours=1)
    n: dict[str, int] = {}
    # The last day of February at 23:30 Beijing: February's (in UTC it is 15:30 on the 28th, too).
    n["feb"] = await led.file(bj(2026, 2, 28, 23, 30))
    await led.accept(n["feb"], bj(2026, 2, 28, 23, 40))
    # 00:10 on 1 March Beijing is still 28 February in UTC: March's all the same.
    t = bj(2026, 3, 1, 0, 10)
    n["d1"] = await led.file(t)
    await led.accept(n["d1"], t + 1 * h)
    await led.resolve(n["d1"], t + 5 * h)
    await led.rate(n["d1"], 5)
    t = bj(2026, 3, 2, 10)
    n["d2"] = await led.file(t)
    await led.accept(n["d2"], t + 30 * h)  # out of the 24 h SLA
    await led.resolve(n["d2"], t + 40 * h)
    await led.rate(n["d2"], 4)
    for key, day, resolve_after, stars in (("d3", 4, 3, 1), ("d4", 5, 4, None), ("d11", 10, 6, 2)):
        t = bj(2026, 3, day, 10)
        n[key] = await led.file(t)
        await led.accept(n[key], t + 2 * h)
        await led.resolve(n[key], t + resolve_after * h)
        if stars:
            await led.rate(n[key], stars)
    t = bj(2026, 3, 6, 10)
    n["rej"] = await led.file(t)
    led.at(t + h)
    await led.w.demands.reject(actor_id=ALICE.id, community_id=led.cid, number=n["rej"], reason="不属于社区职责")
    n["dup"] = await led.file(t + 2 * h)
    led.at(t + 3 * h)
    await led.w.demands.duplicate(actor_id=ALICE.id, community_id=led.cid, number=n["dup"], of=n["d4"])
    t = bj(2026, 3, 7, 10)
    n["reopened"] = await led.file(t)
    await led.accept(n["reopened"], t + 2 * h)
    await led.resolve(n["reopened"], t + 3 * h)
    await led.rate(n["reopened"], 5)
    led.at(t + 26 * h)
    await led.w.demands.reopen(actor_id=BOB.id, community_id=led.cid, number=n["reopened"])  # rating dropped
    n["new"] = await led.file(bj(2026, 3, 8, 10))  # never accepted
    t = bj(2026, 3, 11, 10)
    n["d12"] = await led.file(t)
    await led.resolve(n["d12"], t + 30 * h)  # resolving a new demand accepts it then: out of SLA
    await led.rate(n["d12"], 3)
    n["last"] = await led.file(bj(2026, 3, 31, 23, 30))  # the month's last half hour: March's
    n["apr"] = await led.file(bj(2026, 4, 1, 0, 10))  # April's (in UTC still 31 March)
    return n


async def fire_due(led: Led) -> list[str | None]:
    async with led.w.ctx.read() as s:
        ids = list(await s.scalars(select(Job.id).where(Job.done_at.is_(None), Job.due_at <= led.clock())
                                   .order_by(Job.due_at)))
    return [await led.runner.fire(i) for i in ids]


@pytest.fixture
async def led(engine: AsyncEngine) -> Led:
    return await build(engine)


async def test_rates_of_a_known_month_to_the_exact_fraction(led: Led) -> None:
    await known_month(led)
    led.at(bj(2026, 4, 20, 12))
    st = await led.ledger.stats(actor_id=ALICE.id, community_id=led.cid, period="2026-03")
    # Filed in March (Beijing): d1 d2 d3 d4 d11 rej dup reopened new d12 last = 11; rej and dup excluded -> 9.
    # Accepted within the SLA: d1 d3 d4 d11 reopened = 5 (d2 and d12 late, new and last never).
    # Resolved: d1 d2 d3 d4 d11 d12 = 6 (the reopened one no longer). Ratings: 5 4 1 2 3 -> 4-5: 2 of 5.
    assert st.rates == Rates(filed=11, counted=9, accepted_in_sla=5, resolved=6, ratings=5, satisfied=2)
    assert st.rates.response.fraction == Fraction(5, 9) and st.rates.response.text() == "55.6% (5/9)"
    assert st.rates.resolution.fraction == Fraction(6, 9) and st.rates.resolution.text() == "66.7% (6/9)"
    assert st.rates.satisfaction.fraction == Fraction(2, 5) and st.rates.satisfaction.text() == "40.0% (2/5)"
    assert st.by_state == {"rated": 5, "resolved": 1, "rejected": 1, "duplicate": 1, "reopened": 1, "new": 2}
    assert sum(st.by_category and [c for _, c in st.by_category]) == 11
    # Accepted: d1 1h, d2 30h, d3 d4 d11 reopened 2h, d12 30h -> median 2h, average 69/7 h.
    assert st.accept.count == 7
    assert st.accept.median == pytest.approx(2 * 3600, abs=1)
    assert st.accept.average == pytest.approx(69 / 7 * 3600, abs=1)
    # Resolved (and still so): 5h 40h 3h 4h 6h 30h -> median 5.5h, average 88/6 h.
    assert st.resolve.count == 6
    assert st.resolve.median == pytest.approx(5.5 * 3600, abs=1)
    assert st.resolve.average == pytest.approx(88 / 6 * 3600, abs=1)
    # Overdue on 20 April, whatever the month: feb (accepted, never resolved), the reopened one (its new
    # deadline, 7 days after reopening, passed too), new, last, apr.
    assert st.overdue == 5
    text = stats_text(Translator("zh"), st)
    assert "响应率 55.6% (5/9)" in text and "解决率 66.7% (6/9)" in text and "满意率 40.0% (2/5)" in text


async def test_periods_are_cut_in_the_community_timezone(led: Led) -> None:
    await known_month(led)
    led.at(bj(2026, 4, 20, 12))
    feb = await led.ledger.stats(actor_id=ALICE.id, community_id=led.cid, period="2026-02")
    apr = await led.ledger.stats(actor_id=ALICE.id, community_id=led.cid, period="2026年4月")
    assert (feb.rates.filed, feb.rates.accepted_in_sla) == (1, 1)  # only the 23:30 one of 28 February
    assert apr.rates.filed == 1  # only 00:10 on 1 April
    now = await led.ledger.stats(actor_id=ALICE.id, community_id=led.cid, period="")
    assert now.period.label == "2026-04" and now.rates.filed == 1
    everything = await led.ledger.stats(actor_id=ALICE.id, community_id=led.cid, period="all")
    assert everything.rates.filed == 13
    async with led.w.ctx.read() as s:
        community = await s.get(Community, led.cid)
        months = [led.ledger.period(m, community) for m in ("2026-02", "2026-03", "2026-04")]
        monthly = await led.ledger.monthly_rates(s, led.cid, months)
    assert [m.filed for m in monthly] == [1, 11, 1]
    assert monthly[1] == Rates(11, 9, 5, 6, 5, 2)


async def test_forgotten_submitters_still_count(led: Led) -> None:
    await known_month(led)
    led.at(bj(2026, 4, 20, 12))
    await led.w.people.forget(BOB.id)
    async with led.w.ctx.read() as s:
        assert await s.scalar(select(func.count()).select_from(Demand).where(Demand.submitter_id.is_not(None))) == 0
    st = await led.ledger.stats(actor_id=ALICE.id, community_id=led.cid, period="2026-03")
    assert st.rates == Rates(11, 9, 5, 6, 5, 2)


@pytest.mark.parametrize(("arg", "key"), [("2026-13", "err_ledger_bad_month"), ("abc", "err_ledger_usage_stats"),
                                          ("0026-01", "err_ledger_bad_year")])
async def test_bad_periods_are_refused_clearly(led: Led, arg: str, key: str) -> None:
    with pytest.raises(UserError) as exc:
        await led.ledger.stats(actor_id=ALICE.id, community_id=led.cid, period=arg)
    assert exc.value.key == key


async def test_only_a_secretary_sees_the_ledger(led: Led) -> None:
    with pytest.raises(Denied):
        await led.ledger.stats(actor_id=BOB.id, community_id=led.cid)
    with pytest.raises(Denied):
        await led.ledger.export(actor_id=BOB.id, community_id=led.cid)
    with pytest.raises(Denied):
        await led.ledger.set_digest(actor_id=BOB.id, community_id=led.cid, on=False)


async def test_volunteer_hours_and_meeting_attendance(led: Led) -> None:
    led.at(bj(2026, 3, 2, 10))
    tasks = TaskService(led.w.ctx, led.w.demands, batch_claims=False)
    await led.w.see(CAROL, MEM)
    t = (await tasks.announce(actor_id=ALICE.id, community_id=led.cid, args="清理楼道 | 2026-03-07 09:00 | 2 | 10",
                              chat_kind="member")).task
    await tasks.claim(actor_id=CAROL.id, task_id=t.id)
    async with led.w.ctx.tx() as s:  # reported and confirmed in March: what /confirm records
        claim = await s.scalar(select(TaskClaim).where(TaskClaim.task_id == t.id))
        claim.awarded_at, claim.minutes, claim.points = bj(2026, 3, 7, 12), 120, 10
        task = await s.get(Task, t.id)
        task.state = "confirmed"
    led.at(bj(2026, 3, 20, 12))
    st = await led.ledger.stats(actor_id=ALICE.id, community_id=led.cid, period="2026-03")
    assert (st.volunteer_minutes, st.volunteer_points, st.volunteers) == (120, 10, 1)
    assert (st.meetings, st.attended, st.expected) == (0, 0, 0)
    april = await led.ledger.stats(actor_id=ALICE.id, community_id=led.cid, period="2026-04")
    assert april.volunteer_minutes == 0


# ---------------------------------------------------------------------- the workbook


async def test_export_workbook_sheets_headers_types_and_rows(led: Led) -> None:
    n = await known_month(led)
    led.at(bj(2026, 4, 20, 12))
    period, data, count = await led.ledger.export(actor_id=ALICE.id, community_id=led.cid, month="2026-03",
                                                  locale="zh")
    assert count == 11
    wb = load_workbook(io.BytesIO(data))
    assert wb.sheetnames == ["诉求", "任务", "会议", "三率"]
    ws = wb["诉求"]
    headers = [c.value for c in ws[1]]
    assert headers[:6] == ["编号", "提交时间", "类别", "紧急程度", "状态", "内容"]
    assert "办理记录" in headers and "评价" in headers and "承办人" in headers
    assert ws.freeze_panes == "A2"
    assert ws.column_dimensions["F"].width == 50
    rows = list(ws.iter_rows(min_row=2, values_only=True))
    assert len(rows) == 11
    first = dict(zip(headers, rows[0], strict=True))
    assert first["编号"] == n["d1"]
    assert isinstance(first["提交时间"], datetime)
    assert first["提交时间"] == datetime(2026, 3, 1, 0, 10)  # Beijing wall time, not UTC
    assert ws.cell(row=2, column=2).is_date
    assert first["评价"] == 5 and first["状态"] == "已评价" and first["按时受理"] == "是"
    assert "受理" in first["办理记录"] and "办结" in first["办理记录"] and "2026-03-01 00:10" in first["办理记录"]
    rates = wb["三率"]
    values = list(rates.iter_rows(min_row=2, values_only=True))
    assert values[0][0] == "响应率" and values[0][2:] == (5, 9, "5/9")
    assert values[0][1] == pytest.approx(5 / 9) and rates.cell(row=2, column=2).number_format == "0.0%"
    assert values[1][2:] == (6, 9, "6/9") and values[2][2:] == (2, 5, "2/5")
    assert period.label == "2026-03"


async def test_export_of_an_empty_month_is_headers_and_a_note(led: Led) -> None:
    _, data, count = await led.ledger.export(actor_id=ALICE.id, community_id=led.cid, month="1999-01", locale="en")
    assert count == 0
    wb = load_workbook(io.BytesIO(data))
    assert wb.sheetnames == ["Demands", "Tasks", "Meetings", "Rates"]
    ws = wb["Demands"]
    assert [c.value for c in ws[1]][:2] == ["No.", "Filed"]
    assert ws.max_row == 2 and ws.cell(row=2, column=1).value == "No demands in 1999-01."
    assert [r[1:4] for r in wb["Rates"].iter_rows(min_row=2, max_row=4, values_only=True)] == [(None, 0, 0)] * 3


async def test_a_large_export_lists_every_demand_once_in_filing_order_across_pages(
        led: Led, monkeypatch: pytest.MonkeyPatch) -> None:
    """More demands than a page, many filed at the same instant (ties at page edges): each row once,
    in (filing time, id) order, with its own timeline; the tie-break is the id, not the number."""
    from bot.services import ledger_export
    from bot.storage.models import DemandEvent

    monkeypatch.setattr(ledger_export, "BATCH", 40)  # pages of 40: the same paths as 2,000, quicker
    total = 2 * 40 * 7 + 33
    times = [bj(2026, 3, 1 + k, 9) for k in range(7)]
    async with led.w.ctx.tx() as s:
        demands = [Demand(community_id=led.cid, number=total - i, text=f"第{total - i}件", category="roads",
                          urgency="general", state="new", public=True, filed_at=times[i % 7],
                          accept_by=times[i % 7] + timedelta(days=1), resolve_by=times[i % 7] + timedelta(days=7))
                   for i in range(total)]
        s.add_all(demands)
        await s.flush()
        s.add_all([DemandEvent(demand_id=d.id, action="file", note=f"n{d.number}", created_at=d.filed_at)
                   for d in demands])
        expected = [d.number for d in sorted(demands, key=lambda d: (d.filed_at, d.id))]
    _, data, count = await led.ledger.export(actor_id=ALICE.id, community_id=led.cid, month="2026-03", locale="zh")
    assert count == total
    ws = load_workbook(io.BytesIO(data), read_only=True)["诉求"]
    rows = list(ws.iter_rows(min_row=2, values_only=True))
    assert [r[0] for r in rows] == expected
    assert all(r[-1].endswith(f"：n{r[0]}") and "\n" not in r[-1] for r in rows)
    assert rows[0][1] == datetime(2026, 3, 1, 9, 0) and rows[-1][1] == datetime(2026, 3, 7, 9, 0)


async def test_a_column_by_the_page_gives_what_it_gives_by_the_row(led: Led) -> None:
    """The default columns' `many` (a page at once) and their `value` (a row at a time) write the
    same workbook; a column with no `many` is read row by row."""
    from bot.services.ledger_export import DemandColumn

    await known_month(led)
    async with led.w.ctx.tx() as s:  # a comment, an assignee-free rejection reason, a location
        d = (await s.scalars(select(Demand).where(Demand.community_id == led.cid).order_by(Demand.id))).all()[1]
        d.location, d.rejection_reason, d.rating_comment, d.public = "3号楼", "重复", "很好", False
    led.at(bj(2026, 4, 20, 12))

    async def sheet() -> list[tuple[object, ...]]:
        _, data, _ = await led.ledger.export(actor_id=ALICE.id, community_id=led.cid, month="2026-03", locale="zh")
        return list(load_workbook(io.BytesIO(data))["诉求"].iter_rows(values_only=True))

    by_page = await sheet()
    assert all(c.many is not None for c in led.ledger.demand_columns)
    led.ledger.demand_columns[:] = [DemandColumn(c.header_key, c.width, c.value) for c in led.ledger.demand_columns]
    by_row = await sheet()
    assert by_page == by_row and len(by_page) == 12
    assert {v for row in by_page for v in row} >= {"3号楼", "很好", "否", "是"}


async def test_extension_points_add_lines_a_sheet_and_a_column(led: Led) -> None:
    from bot.services.ledger_export import DemandColumn

    class Lines:
        async def lines(self, session, community_id, start, end, locale):  # type: ignore[no-untyped-def]
            return [f"网格 {community_id} <b>"]

    class Sheet:
        def title(self, locale: str) -> str:
            return "网格"

        def headers(self, locale: str) -> list[str]:
            return ["名称", "时间"]

        async def rows(self, session, community_id, start, end, locale):  # type: ignore[no-untyped-def]
            yield ["一网格", start]

    led.ledger.add_stats(Lines())
    led.ledger.add_sheet(Sheet())
    led.ledger.demand_columns.append(DemandColumn("ledger_col_number", 6, lambda r: r.demand.number * 10))
    await led.file(bj(2026, 2, 21, 10))
    st = await led.ledger.stats(actor_id=ALICE.id, community_id=led.cid)
    assert st.extra == [f"网格 {led.cid} <b>"]
    assert "网格" in stats_text(Translator("zh"), st) and "&lt;b&gt;" in stats_text(Translator("zh"), st)
    _, data, _ = await led.ledger.export(actor_id=ALICE.id, community_id=led.cid)
    wb = load_workbook(io.BytesIO(data))
    assert wb.sheetnames[-1] == "网格"
    assert list(wb["网格"].iter_rows(values_only=True)) == [("名称", "时间"), ("一网格", datetime(2026, 2, 1))]
    assert list(wb["诉求"].iter_rows(min_row=2, values_only=True))[0][-1] == 10


# ---------------------------------------------------------------------- the chart


async def test_chart_png_decodes_and_uses_a_cjk_font(led: Led) -> None:
    from PIL import Image

    from bot.ui import chart

    await known_month(led)
    led.at(bj(2026, 4, 20, 12))
    _, png = await led.ledger.stats_with_chart(actor_id=ALICE.id, community_id=led.cid, period="2026-03")
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG" and img.size[0] >= 1000 and img.size[1] >= 800
    colours = img.convert("RGB").getcolors(maxcolors=1_000_000)
    assert colours is not None and len(colours) > 50  # drawn, not blank
    assert chart.resolved_font_file().endswith("NotoSansCJKsc-Regular.otf")
    assert "SimHei" not in chart.resolved_font_file()
    assert chart.font_families()[0] == "Noto Sans CJK SC"


# ---------------------------------------------------------------------- the digest


async def test_weekly_digest_goes_to_started_secretaries_once_and_respects_off(led: Led) -> None:
    await led.w.see(ALICE, TChat(ALICE.id, "private"), "/start")
    await led.file(bj(2026, 3, 3, 10))  # Tuesday of the week of 2 March
    led.at(bj(2026, 3, 5, 12))
    await led.ledger.schedule()
    async with led.w.ctx.read() as s:
        [job] = list(await s.scalars(select(Job).where(Job.kind == JOB_DIGEST)))
    assert job.due_at == bj(2026, 3, 9, 9) and job.ref_id == led.cid
    await led.ledger.schedule()  # a restart: still one
    led.at(bj(2026, 3, 9, 9, 1))
    await fire_due(led)
    async with led.w.ctx.read() as s:
        sent = list(await s.scalars(select(Outbox).where(Outbox.dedup_key.like("digest:%"))))
        jobs = list(await s.scalars(select(Job).where(Job.kind == JOB_DIGEST).order_by(Job.due_at)))
    assert [o.chat_id for o in sent] == [ALICE.id]
    assert "每周统计" in sent[0].text and "诉求 1 件" in sent[0].text
    assert sent[0].document_name.endswith(".png") and sent[0].document[:4] == b"\x89PNG"
    assert [j.due_at for j in jobs] == [bj(2026, 3, 9, 9), bj(2026, 3, 16, 9)]
    assert jobs[0].done_at is not None
    assert await led.ledger.set_digest(actor_id=ALICE.id, community_id=led.cid, on=False) is False
    led.at(bj(2026, 3, 16, 9, 1))
    await fire_due(led)
    async with led.w.ctx.read() as s:
        assert await s.scalar(select(func.count()).select_from(Outbox).where(Outbox.dedup_key.like("digest:%"))) == 1
        assert await s.scalar(select(func.count()).select_from(DigestOptOut)) == 1
    assert await led.ledger.set_digest(actor_id=ALICE.id, community_id=led.cid, on=True) is True


# ---------------------------------------------------------------------- the reopen fix


async def test_a_reopened_demand_gets_a_new_deadline_and_its_own_overdue_alert(led: Led) -> None:
    t = bj(2026, 3, 2, 10)
    number = await led.file(t)
    await led.accept(number, t + timedelta(hours=1))
    await led.resolve(number, t + timedelta(days=6))
    reopened_at = t + timedelta(days=10)  # after the first deadline (t + 7 days)
    led.at(reopened_at)
    await led.w.demands.reopen(actor_id=ALICE.id, community_id=led.cid, number=number)
    async with led.w.ctx.read() as s:
        d = await s.scalar(select(Demand).where(Demand.community_id == led.cid, Demand.number == number))
        jobs = list(await s.scalars(select(Job).where(Job.kind == JOB_OVERDUE, Job.ref_id == d.id)
                                    .order_by(Job.due_at)))
    assert d.resolve_by == reopened_at + timedelta(days=7)
    assert jobs[-1].due_at == d.resolve_by and jobs[-1].done_at is None
    led.at(d.resolve_by + timedelta(minutes=1))
    assert "overdue" in await fire_due(led)
    # A changed urgency keeps the deadline running from the reopening, not from the filing.
    await led.w.demands.set_urgency(actor_id=ALICE.id, community_id=led.cid, number=number, urgency="complex")
    async with led.w.ctx.read() as s:
        d = await s.scalar(select(Demand).where(Demand.community_id == led.cid, Demand.number == number))
    assert d.resolve_by == reopened_at + timedelta(days=15)


async def test_not_fixed_reopens_with_a_new_deadline(led: Led) -> None:
    t = bj(2026, 3, 2, 10)
    number = await led.file(t)
    await led.resolve(number, t + timedelta(days=1))
    led.at(t + timedelta(days=2))
    await led.w.demands.rate(actor_id=BOB.id, community_id=led.cid, number=number, stars_given=0)
    async with led.w.ctx.read() as s:
        d = await s.scalar(select(Demand).where(Demand.community_id == led.cid, Demand.number == number))
        job = await s.scalar(select(Job).where(Job.kind == JOB_OVERDUE, Job.ref_id == d.id, Job.due_at == d.resolve_by))
    assert d.state == "reopened" and d.resolve_by == t + timedelta(days=9) and job is not None


async def test_meeting_attendance_and_the_task_and_meeting_sheets(led: Led) -> None:
    from bot.storage.models import Meeting, MeetingAttendee

    led.at(bj(2026, 3, 2, 10))
    tasks = TaskService(led.w.ctx, led.w.demands, batch_claims=False)
    t = (await tasks.announce(actor_id=ALICE.id, community_id=led.cid, args="清理楼道 | 2026-03-07 09:00 | 2 | 10",
                              chat_kind="member")).task
    await tasks.claim(actor_id=CAROL.id, task_id=t.id)
    async with led.w.ctx.tx() as s:
        claim = await s.scalar(select(TaskClaim).where(TaskClaim.task_id == t.id))
        claim.awarded_at, claim.minutes, claim.points = bj(2026, 3, 7, 12), 120, 10

        def meeting(number: int, audience: str, day: int, status: str = "scheduled") -> Meeting:
            at = bj(2026, 3, day, 19)
            return Meeting(community_id=led.cid, number=number, kind="meeting", audience=audience, title=f"会议{number}",
                           starts_at=at, ends_at=at + timedelta(hours=1), planned_at=at, offsets=[], status=status)

        held = [meeting(1, "member", 5), meeting(2, "resident", 6), meeting(3, "member", 7, "cancelled"),
                meeting(4, "member", 28)]  # the last one is still to come on 20 March
        s.add_all(held)
        await s.flush()
        s.add_all([
            MeetingAttendee(meeting_id=held[0].id, user_id=CAROL.id, response="attend", checked_in_at=held[0].starts_at),
            MeetingAttendee(meeting_id=held[1].id, user_id=BOB.id, response="attend", checked_in_at=held[1].starts_at),
            MeetingAttendee(meeting_id=held[1].id, user_id=CAROL.id, response="attend"),
            MeetingAttendee(meeting_id=held[2].id, user_id=CAROL.id, response="attend", checked_in_at=held[2].starts_at),
        ])
    led.at(bj(2026, 3, 20, 12))
    st = await led.ledger.stats(actor_id=ALICE.id, community_id=led.cid, period="2026-03")
    # Meeting 1: the member chat's members (Carol; Alice was seen there before it was bound), Carol
    # came; meeting 2: Bob came, Carol said she would and did not. Cancelled and future ones don't count.
    assert (st.meetings, st.attended, st.expected) == (2, 2, 3)
    assert "会议出席率 66.7% (2/3)（2 次会议）" in stats_text(Translator("zh"), st)
    _, data, _ = await led.ledger.export(actor_id=ALICE.id, community_id=led.cid, month="2026-03", locale="zh")
    wb = load_workbook(io.BytesIO(data))
    [task_row] = list(wb["任务"].iter_rows(min_row=2, values_only=True))
    assert task_row[:3] == (1, "清理楼道", datetime(2026, 3, 7, 9, 0))
    assert task_row[9] == "Carol（已确认）" and task_row[10:] == (1, 2.0, 10)
    meetings = list(wb["会议"].iter_rows(min_row=2, values_only=True))
    assert [m[0] for m in meetings] == [1, 2, 3, 4]
    assert meetings[0][5:9] == (1, 0, 1, 1.0) and meetings[0][9] == "Carol"
    assert meetings[1][5:9] == (1, 0, 2, 0.5) and meetings[1][9] == "Bob"
    assert meetings[2][4] == "已取消" and meetings[2][8] is None


async def test_grids_and_consultations_plug_into_the_ledger(led: Led) -> None:
    """As the app wires them: /stats gains the level shares, /export the level column and the 议事 sheet."""
    from bot.services.consultations import ConsultationSheetPart
    from bot.services.grid_ledger import attach_to_ledger

    attach_to_ledger(led.ledger)
    led.ledger.add_sheet(ConsultationSheetPart())
    n = await led.file(bj(2026, 2, 21, 10))
    await led.accept(n, bj(2026, 2, 21, 11))
    await led.resolve(n, bj(2026, 2, 21, 12))
    st = await led.ledger.stats(actor_id=ALICE.id, community_id=led.cid)
    assert any("小事不出网格" in line for line in st.extra)
    _, data, _ = await led.ledger.export(actor_id=ALICE.id, community_id=led.cid, locale="zh")
    wb = load_workbook(io.BytesIO(data))
    assert wb.sheetnames[-1] == "议事"
    headers = [c.value for c in wb["诉求"][1]]
    assert headers[headers.index("状态") + 1] == "层级"
    row = dict(zip(headers, next(wb["诉求"].iter_rows(min_row=2, values_only=True)), strict=True))
    assert row["层级"] == "社区"
