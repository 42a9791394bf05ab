"""/export: the month's ledger as an .xlsx workbook, written with XlsxWriter (constant_memory): memory stays flat.

Sheets: 诉求 (each demand with its timeline as text), 任务 (claimers, hours, points), 会议
(attendance), 三率 (the month's rates with their fractions), then any sheet another capability
added with `LedgerService.add_sheet`. Headers in the user's language, the header row frozen,
real date cells in the community's timezone, column widths set.

The 诉求 sheet's columns are `LedgerService.demand_columns`, a list another capability may add
to (`DemandColumn(header_key, width, value)`; `value(row)` reads a `DemandRow`; a column may also
give `many(page)`, the values of a whole `DemandPage` at once, which the default ones do).

XlsxWriter in constant_memory mode: each row goes to the sheet's temporary file as it is written
(nothing of the month is held), strings inline, formats made once. The 诉求 sheet is read in keyset
pages of 2,000 Core rows; a page's cells are built column by column (a list comprehension each,
date columns straight to Excel's serial numbers in a date-formatted column) and written a row at
a time (`write_row`) in a worker thread while the next page is read. XlsxWriter's own per-cell
work is most of a 100,000-demand export's time (bench/stats.py --export-only).
"""

from __future__ import annotations

import asyncio
import math
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from fractions import Fraction
from operator import attrgetter
from typing import TYPE_CHECKING, Any, NamedTuple
from zoneinfo import ZoneInfo

import xlsxwriter
from sqlalchemy import DateTime, and_, or_, select, type_coerce
from sqlalchemy.ext.asyncio import AsyncSession

from bot.domain.ledger import Period
from bot.storage.models import (
    Community,
    Demand,
    DemandEvent,
    Meeting,
    MeetingAttendee,
    Task,
    TaskClaim,
    User,
)
from bot.ui.html import Html
from bot.ui.i18n import Translator
from bot.ui.tasks import hours

if TYPE_CHECKING:
    from bot.services.ledger import LedgerService

BATCH = 2000
PERCENT_FORMAT = "0.0%"
MAX_CELL = 32000  # Excel holds at most 32,767 characters in a cell
DATE_FORMAT = "yyyy-mm-dd h:mm:ss"  # what openpyxl gives a datetime cell: readers see the same cells
DAY_FORMAT = "yyyy-mm-dd"
TIME_FORMAT = "h:mm:ss"
_EPOCH = datetime(1899, 12, 30)  # Excel's day 0 for every date after 1900-02-28
_DAY = timedelta(days=1)
_PIXELS = 7  # XlsxWriter's width of a digit: a width of n characters is n × 7 pixels
_BAD_TITLE = re.compile(r"[\[\]:*?/\\]")
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\ufffe\uffff]")


def plain(value: object) -> str:
    """A catalog text for a cell: no HTML (catalog names carry none but escaped entities)."""
    import html

    return html.unescape(str(value))


@dataclass(slots=True)
class DemandRow:
    """What a column of the 诉求 sheet may read: `demand` has every column of the demands table as an
    attribute (a row, not an ORM object: a large export reads fast); `name(key)` is a catalog text."""

    demand: Any
    assignee: str | None
    timeline: str
    tz: ZoneInfo
    tr: Translator
    names: dict[str, str]

    def name(self, key: str) -> str:
        text = self.names.get(key)
        if text is None:
            text = self.names[key] = plain(self.tr(key))
        return text

    def local(self, when: datetime | None) -> datetime | None:
        """An aware UTC time as the community's wall time (Excel has no timezones)."""
        return when.astimezone(self.tz).replace(tzinfo=None) if when is not None else None


@dataclass(slots=True)
class DemandPage:
    """A page of demands (up to BATCH) for a column's `many`: the same facts as its DemandRows, as
    lists, so a column is one list comprehension a page rather than one call a cell."""

    demands: list[Any]
    assignees: list[str | None]
    timelines: list[str]
    tz: ZoneInfo
    tr: Translator
    names: dict[str, str]
    _rows: list[DemandRow] | None = None

    def rows(self) -> list[DemandRow]:
        """The page as DemandRows (for a column without `many`)."""
        if self._rows is None:
            self._rows = [DemandRow(d, a, t, self.tz, self.tr, self.names)
                          for d, a, t in zip(self.demands, self.assignees, self.timelines, strict=True)]
        return self._rows

    def name(self, key: str) -> str:
        text = self.names.get(key)
        if text is None:
            text = self.names[key] = plain(self.tr(key))
        return text

    def column(self, attr: str) -> list[Any]:
        return list(map(attrgetter(attr), self.demands))

    def local(self, attr: str) -> list[datetime | None]:
        """A time column as the community's wall times (as DemandRow.local)."""
        tz = self.tz
        return [None if v is None else v.astimezone(tz).replace(tzinfo=None) for v in self.column(attr)]

    def serials(self, attr: str) -> list[float | None]:
        """A time column as Excel serial numbers of the community's wall times (what a date cell
        holds): aware times in one zone subtract as wall times, so no naive copy is made first."""
        tz = self.tz
        epoch = datetime(1899, 12, 30, tzinfo=tz)  # Excel's day 0 (for every date after 1900-02-28)
        return [None if v is None else (v.astimezone(tz) - epoch) / _DAY for v in self.column(attr)]

    def named(self, prefix: str, attr: str) -> list[str]:
        """A code column as its catalog texts (as DemandRow.name(prefix + code))."""
        texts: dict[Any, str] = {}
        out = []
        for v in self.column(attr):
            text = texts.get(v)
            if text is None:
                text = texts[v] = self.name(f"{prefix}{v}")
            out.append(text)
        return out


@dataclass
class DemandColumn:
    header_key: str  # catalog key of the header
    width: float
    value: Callable[[DemandRow], Any]
    # Optional: the whole page's values at once, the same as `value` gives row by row (faster).
    many: Callable[[DemandPage], list[Any]] | None = None
    # True: the values are already what a cell takes (str, int, float, naive datetime, None), as the
    # default columns give; otherwise each is made so (an aware time the community's wall time, ...).
    raw: bool = False
    # With raw: `many` gives Excel serial numbers (DemandPage.serials; `value` the datetimes), written
    # as date cells (the column's format, DATE_FORMAT).
    dates: bool = False


def default_demand_columns() -> list[DemandColumn]:
    def name(prefix: str, attr: str) -> Callable[[DemandRow], Any]:
        return lambda r: r.name(f"{prefix}{getattr(r.demand, attr)}")

    def yes_no(p: DemandPage, flags: list[bool | None]) -> list[str | None]:
        yes, no = p.name("ledger_yes"), p.name("ledger_no")
        return [None if f is None else (yes if f else no) for f in flags]

    def in_sla(p: DemandPage) -> list[str | None]:
        return yes_no(p, [None if d.accepted_at is None else d.accepted_at <= d.accept_by for d in p.demands])

    columns = [
        DemandColumn("ledger_col_number", 8, lambda r: r.demand.number, lambda p: p.column("number")),
        DemandColumn("ledger_col_filed", 18, lambda r: r.local(r.demand.filed_at), lambda p: p.serials("filed_at")),
        DemandColumn("ledger_col_category", 12, name("cat_", "category"), lambda p: p.named("cat_", "category")),
        DemandColumn("ledger_col_urgency", 8, name("urg_", "urgency"), lambda p: p.named("urg_", "urgency")),
        DemandColumn("ledger_col_state", 12, name("state_", "state"), lambda p: p.named("state_", "state")),
        DemandColumn("ledger_col_text", 50, lambda r: r.demand.text[:MAX_CELL],
                     lambda p: [t[:MAX_CELL] for t in p.column("text")]),
        DemandColumn("ledger_col_location", 16, lambda r: r.demand.location, lambda p: p.column("location")),
        DemandColumn("ledger_col_public", 8, lambda r: r.name("ledger_yes" if r.demand.public else "ledger_no"),
                     lambda p: yes_no(p, [bool(v) for v in p.column("public")])),
        DemandColumn("ledger_col_accept_by", 18, lambda r: r.local(r.demand.accept_by),
                     lambda p: p.serials("accept_by")),
        DemandColumn("ledger_col_accepted", 18, lambda r: r.local(r.demand.accepted_at),
                     lambda p: p.serials("accepted_at")),
        DemandColumn("ledger_col_in_sla", 10, lambda r: None if r.demand.accepted_at is None else r.name(
            "ledger_yes" if r.demand.accepted_at <= r.demand.accept_by else "ledger_no"), in_sla),
        DemandColumn("ledger_col_assignee", 14, lambda r: r.assignee, lambda p: p.assignees),
        DemandColumn("ledger_col_resolve_by", 18, lambda r: r.local(r.demand.resolve_by),
                     lambda p: p.serials("resolve_by")),
        DemandColumn("ledger_col_resolved", 18, lambda r: r.local(r.demand.resolved_at),
                     lambda p: p.serials("resolved_at")),
        DemandColumn("ledger_col_resolution", 30, lambda r: r.demand.resolution_note or r.demand.rejection_reason,
                     lambda p: [d.resolution_note or d.rejection_reason for d in p.demands]),
        DemandColumn("ledger_col_rating", 8, lambda r: r.demand.rating, lambda p: p.column("rating")),
        DemandColumn("ledger_col_comment", 30, lambda r: r.demand.rating_comment,
                     lambda p: p.column("rating_comment")),
        DemandColumn("ledger_col_timeline", 60, lambda r: r.timeline[:MAX_CELL],
                     lambda p: [t[:MAX_CELL] for t in p.timelines]),
    ]
    for c in columns:
        c.raw = True
        c.dates = c.header_key in ("ledger_col_filed", "ledger_col_accept_by", "ledger_col_accepted",
                                   "ledger_col_resolve_by", "ledger_col_resolved")
    return columns


def _display(first: str | None, last: str | None, username: str | None, uid: int | None) -> str | None:
    if uid is None:
        return None
    name = " ".join(p for p in (first, last) if p)
    return name or (f"@{username}" if username else str(uid))


class Styled(NamedTuple):
    """A value written with a number format of its own (`_Sheet.cell(value, fmt)`)."""

    value: Any
    fmt: str


def _sane(text: str) -> str:
    """A lone surrogate (possible in text stored from a client) as "?": the sheet files are UTF-8."""
    return text.encode("utf-8", "replace").decode("utf-8")


def _sane_column(values: list[Any]) -> list[Any]:
    """A page's column as it is, unless one of its strings cannot be UTF-8 (checked once, in C)."""
    try:
        "".join([v for v in values if v.__class__ is str]).encode("utf-8")
    except UnicodeEncodeError:
        return [_sane(v) if v.__class__ is str else v for v in values]
    return values


class _Book:
    """The workbook: XlsxWriter in constant_memory mode writing into `fh`; formats made once."""

    def __init__(self, fh: Any) -> None:
        self.wb = xlsxwriter.Workbook(fh, {
            "constant_memory": True,  # each row goes to the sheet's temporary file as it is written
            "in_memory": False,
            "tmpdir": tempfile.gettempdir(),
            # Text is text: no formulas, numbers or links made of what a resident typed.
            "strings_to_numbers": False, "strings_to_formulas": False, "strings_to_urls": False,
            "nan_inf_to_errors": True,
            "default_date_format": DATE_FORMAT,  # a datetime cell written without a format gets it
        })
        self.wb.use_zip64()  # a month past 4 GiB of XML never fails the zip
        self.bold = self.wb.add_format({"bold": True})
        self.formats: dict[str, Any] = {}
        self.titles: set[str] = set()

    def format(self, fmt: str) -> Any:
        """The Format of a number format, made on first use."""
        f = self.formats.get(fmt)
        if f is None:
            f = self.formats[fmt] = self.wb.add_format({"num_format": fmt})
        return f

    def title(self, title: str) -> str:
        """A valid, unique sheet name: forbidden characters replaced, at most 31 characters, and a
        repeated name numbered (as openpyxl does)."""
        title = _BAD_TITLE.sub("_", _CONTROL.sub("", _sane(title))).strip("'")[:31] or "Sheet"
        base, n = title, 1
        while title.lower() in self.titles:
            suffix = str(n)
            title, n = base[:31 - len(suffix)] + suffix, n + 1
        self.titles.add(title.lower())
        return title

    def close(self) -> None:
        if not self.titles:
            self.wb.add_worksheet()
        self.wb.close()


class _Sheet:
    """A constant-memory sheet: bold frozen header, set widths, dates formatted."""

    def __init__(self, book: _Book, title: str, headers: list[str], widths: list[float],
                 tz: ZoneInfo | None = None, dates: frozenset[int] = frozenset()) -> None:
        self.tz = tz
        self.book = book
        self.ws = ws = book.wb.add_worksheet(book.title(title))
        for i, w in enumerate(widths):
            if w:
                # Read back as w (set_column would add a padding). A date column's format is the
                # cells' own when a serial number is written without one (`dates`: column indexes).
                ws.set_column_pixels(i, i, w * _PIXELS, book.format(DATE_FORMAT) if i in dates else None)
        # Values other than str, int, float, bool, datetime, None: a handler of XlsxWriter's each.
        ws.add_write_handler(Html, lambda ws, r, c, v, fmt=None: ws.write_string(r, c, plain(v)[:MAX_CELL], fmt))
        ws.add_write_handler(Styled, self._styled)
        self.headed = 1 if headers else 0
        if headers:
            ws.freeze_panes(1, 0)
            ws.write_row(0, 0, [_sane(h) for h in headers], book.bold)
        self.next = self.headed  # the sheet row the next append writes

    @property
    def rows(self) -> int:
        return self.next - self.headed  # not the header

    def cell(self, value: Any, fmt: str | None = None) -> Any:
        """A value as it goes in a cell: `fmt` a number format of its own (e.g. PERCENT_FORMAT)."""
        return Styled(value, fmt) if fmt is not None and value is not None else value

    def _styled(self, ws: Any, r: int, c: int, v: Styled, fmt: Any = None) -> int:
        value = self.clean(v.value)
        if value.__class__ is Styled:  # a date's own format: the one asked for wins
            value = value.value
        return ws.write(r, c, value, self.book.format(v.fmt))

    def clean(self, v: Any) -> Any:
        """Any value as XlsxWriter takes it: an aware time as the zone's wall time, a date as a date
        cell, a string valid and short enough, an unknown type as its text."""
        t = v.__class__
        if v is None or t is int or t is bool or t is Html or t is Styled:
            return v
        if t is float:
            return v if math.isfinite(v) else str(v)
        if t is str:
            return _sane(v[:MAX_CELL])
        if isinstance(v, datetime):
            if v.tzinfo is not None:
                v = (v.astimezone(self.tz) if self.tz else v).replace(tzinfo=None)
            return v
        if isinstance(v, date):
            return Styled(v, DAY_FORMAT)
        if isinstance(v, (time, timedelta)):
            return Styled(v, TIME_FORMAT)
        if isinstance(v, (int, float, Decimal, Fraction, Html, str)):
            return v
        return _sane(str(v)[:MAX_CELL])

    def append(self, values: list[Any]) -> None:
        clean = self.clean
        self.ws.write_row(self.next, 0, [clean(v) for v in values])
        self.next += 1

    def append_many(self, rows: list[Any]) -> None:
        """Rows already clean (str, int, float, naive datetime, None, Html, Styled): a write_row each."""
        write_row = self.ws.write_row
        r = self.next
        for values in rows:
            write_row(r, 0, values)
            r += 1
        self.next = r


async def build_workbook(ledger: LedgerService, s: AsyncSession, community: Community, p: Period,
                         locale: str) -> tuple[bytes, int]:
    """The workbook's bytes and how many demands it lists."""
    tr = Translator(locale)
    tz = ZoneInfo(community.timezone)
    # Spooled: a big workbook goes to a temporary file while it is zipped, not a growing buffer.
    with tempfile.SpooledTemporaryFile(max_size=1024 * 1024) as fh:
        book = _Book(fh)
        try:
            count = await _demands_sheet(ledger, s, book, community, p, tr, tz)
            await _tasks_sheet(s, book, community, p, tr, tz)
            await _meetings_sheet(ledger, s, book, community, p, tr, tz)
            await _rates_sheet(ledger, s, book, community, p, tr)
            from bot.services.ledger import iterate_rows

            for part in ledger.sheet_parts:
                headers = [str(h) for h in part.headers(locale)]
                sheet = _Sheet(book, part.title(locale), headers,
                               [max(10.0, min(40.0, len(h) * 2.2)) for h in headers], tz)
                async for row in iterate_rows(part.rows(s, community.id, p.start, p.end, locale)):
                    sheet.append(row)
        finally:
            await asyncio.to_thread(book.close)  # the zip, off the event loop (also on an error: temp files)
        fh.seek(0)
        data = fh.read()
    return data, count


async def _demands_sheet(ledger: LedgerService, s: AsyncSession, book: _Book, community: Community, p: Period,
                         tr: Translator, tz: ZoneInfo) -> int:
    columns = list(ledger.demand_columns)
    sheet = _Sheet(book, plain(tr("ledger_sheet_demands")), [plain(tr(c.header_key)) for c in columns],
                   [c.width for c in columns], tz, frozenset(i for i, c in enumerate(columns) if c.raw and c.dates))
    clean = sheet.clean
    d = Demand.__table__
    query = (select(*d.c, User.first_name.label("_first"), User.last_name.label("_last"),
                    User.username.label("_username"))
             .outerjoin(User, User.id == d.c.assignee_id)
             .where(d.c.community_id == community.id, d.c.filed_at < p.end)
             .order_by(d.c.filed_at, d.c.id).limit(BATCH))
    # The event's time as the driver gives it (naive UTC on SQLite, aware on PostgreSQL): made a
    # wall-time text once per distinct time below, not an aware datetime per event first.
    events_query = (select(DemandEvent.demand_id, type_coerce(DemandEvent.created_at, DateTime(timezone=True)),
                           DemandEvent.action, DemandEvent.note)
                    .order_by(DemandEvent.demand_id, DemandEvent.id))
    conn = await s.connection()  # Core rows, not ORM entities: no identity map, no per-row object
    names: dict[str, str] = {}
    acts: dict[str, str] = {}
    stamps: dict[datetime, str] = {}  # one text per event time: a demand's steps often share it

    async def batch(after: tuple[datetime, int] | None) -> list[Any]:
        # Keyset pages in filing order along the ledger index: each page costs its own rows, however
        # far into a large month it is.
        q = query.where(d.c.filed_at >= p.start) if after is None else query.where(
            d.c.filed_at >= after[0], or_(d.c.filed_at > after[0], and_(d.c.filed_at == after[0], d.c.id > after[1])))
        return list(await conn.execute(q))

    count = 0
    pending: asyncio.Future[Any] | None = None
    try:
        rows = await batch(None)
        while rows:
            ids = [r.id for r in rows]
            events: dict[int, list[str]] = {}
            for demand_id, at, action, note in await conn.execute(
                    events_query.where(DemandEvent.demand_id.in_(ids))):
                what = acts.get(action)
                if what is None:
                    what = acts[action] = plain(tr(f"act_{action}"))
                stamp = stamps.get(at)
                if stamp is None:
                    if len(stamps) > 4096:
                        stamps.clear()
                    aware = at.replace(tzinfo=UTC) if at.tzinfo is None else at
                    stamp = stamps[at] = f"{aware.astimezone(tz):%Y-%m-%d %H:%M} "
                line = stamp + what
                lines = events.get(demand_id)
                if lines is None:
                    lines = events[demand_id] = []
                lines.append(f"{line}：{note}" if note else line)
            if pending is not None:
                await pending
            last = rows[-1]

            def write(rows: list[Any] = rows, events: dict[int, list[str]] = events) -> None:
                page = DemandPage(rows, [_display(d._first, d._last, d._username, d.assignee_id) for d in rows],
                                  ["\n".join(events.get(d.id, ())) for d in rows], tz, tr, names)
                # Column by column: a list comprehension each (or the column's value() a row), then rows.
                cells = [c.many(page) if c.many is not None else [c.value(r) for r in page.rows()]
                         for c in columns]
                # A column another capability added: each value made one XlsxWriter takes; every
                # column: a lone surrogate made "?" (one check a column, most pages pass it).
                cells = [_sane_column(v if c.raw else [clean(x) for x in v]) for c, v in zip(columns, cells, strict=True)]
                sheet.append_many(list(zip(*cells, strict=True)) if cells else [[] for _ in rows])

            # The cells and their XML off the event loop, while the next page is read.
            pending = asyncio.ensure_future(asyncio.to_thread(write))
            count += len(rows)
            rows = await batch((last.filed_at, last.id)) if len(rows) == BATCH else []
    finally:
        if pending is not None:  # never leave the writer running into the next sheet or the close
            await asyncio.gather(pending, return_exceptions=True)
    if pending is not None:
        pending.result()  # its error, if it had one
    if not count:
        sheet.append([plain(tr("ledger_export_empty", month=p.label))])
    return count


async def _tasks_sheet(s: AsyncSession, wb: _Book, community: Community, p: Period, tr: Translator,
                       tz: ZoneInfo) -> None:
    headers = ["ledger_col_number", "ledger_col_task", "ledger_col_starts", "ledger_col_place", "ledger_col_state",
               "ledger_col_slots", "ledger_col_claimed", "ledger_col_points", "ledger_col_hours",
               "ledger_col_claimers", "ledger_col_confirmed", "ledger_col_awarded_hours",
               "ledger_col_awarded_points"]
    sheet = _Sheet(wb, plain(tr("ledger_sheet_tasks")), [plain(tr(h)) for h in headers],
                   [8, 30, 18, 16, 10, 8, 8, 8, 10, 40, 10, 12, 12])
    tasks = list(await s.scalars(select(Task).where(Task.community_id == community.id, Task.starts_at >= p.start,
                                                    Task.starts_at < p.end).order_by(Task.starts_at, Task.id)))
    claims: dict[int, list[tuple[TaskClaim, str | None]]] = {}
    if tasks:
        for c, first, last, username in (await s.execute(
            select(TaskClaim, User.first_name, User.last_name, User.username)
            .outerjoin(User, User.id == TaskClaim.user_id)
            .where(TaskClaim.task_id.in_([t.id for t in tasks]))
            .order_by(TaskClaim.task_id, TaskClaim.status, TaskClaim.seq, TaskClaim.id)
        )).all():
            name = _display(first, last, username, c.user_id) or plain(tr("someone_anonymous"))
            claims.setdefault(c.task_id, []).append((c, name))
    for t in tasks:
        mine = claims.get(t.id, [])
        names = []
        for c, name in mine:
            tag = "ledger_claim_awarded" if c.awarded_at else (
                "ledger_claim_waiting" if c.status == "waiting" else "ledger_claim_claimed")
            names.append(f"{name}（{plain(tr(tag))}）" if tr.locale == "zh" else f"{name} ({plain(tr(tag))})")
        awarded = [c for c, _ in mine if c.awarded_at is not None]
        sheet.append([
            t.number, t.title, t.starts_at.astimezone(tz).replace(tzinfo=None), t.place,
            plain(tr(f"ledger_task_{t.state}")), t.slots, t.claimed, t.points, float(hours(t.minutes)),
            "、".join(names) if tr.locale == "zh" else ", ".join(names), len(awarded),
            float(hours(sum(c.minutes for c in awarded))), sum(c.points for c in awarded),
        ])


async def _meetings_sheet(ledger: LedgerService, s: AsyncSession, wb: _Book, community: Community, p: Period,
                          tr: Translator, tz: ZoneInfo) -> None:
    headers = ["ledger_col_number", "ledger_col_meeting", "ledger_col_starts", "ledger_col_place",
               "ledger_col_state", "ledger_col_attended", "ledger_col_leave", "ledger_col_expected",
               "ledger_col_attendance", "ledger_col_attendees"]
    sheet = _Sheet(wb, plain(tr("ledger_sheet_meetings")), [plain(tr(h)) for h in headers],
                   [8, 30, 18, 16, 10, 8, 8, 8, 10, 50])
    meetings = list(await s.scalars(select(Meeting).where(
        Meeting.community_id == community.id, Meeting.starts_at >= p.start, Meeting.starts_at < p.end
    ).order_by(Meeting.starts_at, Meeting.id)))
    if not meetings:
        return
    detail = await ledger.meeting_attendance(s, community.id, meetings)
    names = {u.id: u.display_name for u in await s.scalars(select(User).where(User.id.in_(
        select(MeetingAttendee.user_id).where(MeetingAttendee.meeting_id.in_([m.id for m in meetings]))
        .where(MeetingAttendee.checked_in_at.is_not(None))
    )))}
    for m in meetings:
        came, leave, expected = detail[m.id]
        rate = len(came) / len(expected) if expected and m.status != "cancelled" else None
        who = sorted(names.get(u, str(u)) for u in came)
        sheet.append([
            m.number, m.title, m.starts_at.astimezone(tz).replace(tzinfo=None), m.place,
            plain(tr("ledger_meeting_cancelled" if m.status == "cancelled" else "ledger_meeting_held")),
            len(came), len(leave), len(expected), sheet.cell(rate, PERCENT_FORMAT) if rate is not None else None,
            "、".join(who) if tr.locale == "zh" else ", ".join(who),
        ])


async def _rates_sheet(ledger: LedgerService, s: AsyncSession, wb: _Book, community: Community, p: Period,
                       tr: Translator) -> None:
    headers = ["ledger_col_metric", "ledger_col_percent", "ledger_col_numerator", "ledger_col_denominator",
               "ledger_col_fraction"]
    sheet = _Sheet(wb, plain(tr("ledger_sheet_rates")), [plain(tr(h)) for h in headers], [16, 10, 10, 10, 12])
    r = await ledger.rates(s, community.id, p.start, p.end)
    for key, rate in (("ledger_rate_response", r.response), ("ledger_rate_resolution", r.resolution),
                      ("ledger_rate_satisfaction", r.satisfaction)):
        value = rate.value
        sheet.append([plain(tr(key)), sheet.cell(value, PERCENT_FORMAT) if value is not None else None,
                      rate.num, rate.den, f"{rate.num}/{rate.den}"])
    sheet.append([plain(tr("ledger_filed_total")), None, r.filed, None, None])
    sheet.append([plain(tr("ledger_excluded_total")), None, r.filed - r.counted, None, None])
