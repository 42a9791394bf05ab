"""/export: the month's ledger as an .xlsx workbook (XlsxWriter, constant_memory): memory stays flat.

Sheets: 诉求 (each demand with its timeline as text), 任务 (claimers, hours, points), 会议
(attendance), 三率 (the month's rates with their fractions), then any sheet another capability
added with `LedgerService.add_sheet`. Headers in the user's language, the header row frozen,
real date cells in the community's timezone, column widths set.

The 诉求 sheet's columns are `LedgerService.demand_columns`, a list another capability may add
to (`DemandColumn(header_key, width, value)`; `value(row)` reads a `DemandRow`; a column may also
give `many(page)`, the values of a whole `DemandPage` at once, which the default ones do).

Two processes share the work. Here (the bot): the 诉求 sheet is read in keyset pages of 2,000 Core
rows (times raw, made datetimes only where a column uses them), and a page's cells are built column
by column (a list comprehension each, date columns straight to Excel's serial numbers in a
date-formatted column) in a worker thread. A child process (bot/services/ledger_workbook.py) gets
the pages down a pipe and writes the workbook: on another core, overlapped with the reading, and
never on the bot's event loop (bench/stats.py --export-only).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import pickle
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from fractions import Fraction
from operator import attrgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, or_, select, type_coerce
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import NullType

from bot.domain.ledger import Period
from bot.services.ledger_workbook import (
    DAY_FORMAT,
    FRAME,
    PERCENT_FORMAT,
    TIME_FORMAT,
    Styled,
)
from bot.services.ledger_workbook import sane as _sane
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
from bot.storage.models.base import UTCDateTime
from bot.ui.html import Html
from bot.ui.i18n import Translator
from bot.ui.tasks import hours

if TYPE_CHECKING:
    from bot.services.ledger import LedgerService

BATCH = 2000
MAX_CELL = 32000  # Excel holds at most 32,767 characters in a cell
_EPOCH = datetime(1899, 12, 30)  # Excel's day 0 for every date after 1900-02-28
_DAY = timedelta(days=1)
log = logging.getLogger("linli.ledger")
# The checkout the writer child imports from, however the bot was started (PYTHONPATH).
_ROOT = str(Path(__file__).resolve().parents[2])


def plain(value: object) -> str:
    """A catalog text for a cell: no HTML (catalog names carry none but escaped entities)."""
    import html

    return html.unescape(str(value))


def utc(value: Any) -> datetime | None:
    """A time column's value as read raw (SQLite: SQLAlchemy's ISO text in UTC; PostgreSQL: an aware
    datetime) as an aware UTC datetime."""
    if value is None:
        return None
    if value.__class__ is str:
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


_DAY_US = 86_400_000_000
_US = timedelta(microseconds=1)
_UNSEEN = object()


def _minute_local(minute: str, tz: ZoneInfo) -> datetime | None:
    """The wall time in `tz` (naive) of a UTC minute ("2026-05-01 04:10"); None (each time of it then
    made the long way) if the zone's offset changes within that minute or is not whole minutes (local
    mean time before 1900), so that a time of that minute is its wall minute plus its seconds."""
    try:
        start = datetime.fromisoformat(minute).replace(tzinfo=UTC)
    except ValueError:
        return None
    local = start.astimezone(tz)
    offset = local.utcoffset()
    end = (start + timedelta(seconds=59, microseconds=999_999)).astimezone(tz)
    if offset is None or end.utcoffset() != offset or offset % timedelta(minutes=1):
        return None
    return local.replace(tzinfo=None)


def _minute_us(minute: str, tz: ZoneInfo) -> int | None:
    """A UTC minute's wall time in `tz` in microseconds from Excel's day 0 (None: as _minute_local)."""
    local = _minute_local(minute, tz)
    return None if local is None else (local - _EPOCH) // _US


# The demands table's time columns. The export reads them raw and makes datetimes of the ones a column
# uses: SQLAlchemy's per-value conversion of all of them was a third of a large export's reading.
TIME_COLUMNS = frozenset(c.name for c in Demand.__table__.c if isinstance(c.type, UTCDateTime))


class DemandView:
    """A demand's row as a column reads it: every column of the demands table an attribute, a time
    an aware UTC datetime."""

    __slots__ = ("_row",)

    def __init__(self, row: Any) -> None:
        self._row = row

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._row, name)
        return utc(value) if name in TIME_COLUMNS else value


@dataclass(slots=True)
class DemandRow:
    """What a column of the 诉求 sheet may read: `demand` has every column of the demands table as an
    attribute (a DemandView of a row, not an ORM object: a large export reads fast); `name(key)` is a
    catalog text."""

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
    minutes: dict[str, int | None] = field(default_factory=dict)  # see serials; shared by a sheet's pages
    _rows: list[DemandRow] | None = None
    _raw: dict[str, tuple[Any, ...]] | None = None  # the columns as read (times raw)
    _times: dict[str, tuple[datetime | None, ...]] = field(default_factory=dict)  # time columns made datetimes

    def rows(self) -> list[DemandRow]:
        """The page as DemandRows (for a column without `many`)."""
        if self._rows is None:
            self._rows = [DemandRow(DemandView(d), a, t, self.tz, self.tr, self.names)
                          for d, a, t in zip(self.demands, self.assignees, self.timelines, strict=True)]
        return self._rows

    def name(self, key: str) -> str:
        text = self.names.get(key)
        if text is None:
            text = self.names[key] = plain(self.tr(key))
        return text

    def raw(self, attr: str) -> tuple[Any, ...]:
        """A column's values as read (a time raw: see `utc`); the page is turned into columns once, in C."""
        columns = self._raw
        if columns is None:
            fields = getattr(self.demands[0], "_fields", None) if self.demands else None  # a Row's names
            columns = self._raw = dict(zip(fields, zip(*self.demands, strict=True), strict=True)) if fields else {}
        values = columns.get(attr)
        if values is None:
            values = columns[attr] = tuple(map(attrgetter(attr), self.demands))
        return values

    def column(self, attr: str) -> tuple[Any, ...]:
        """A column's values, row by row, a time as an aware UTC datetime."""
        if attr not in TIME_COLUMNS:
            return self.raw(attr)
        values = self._times.get(attr)
        if values is None:
            values = self._times[attr] = tuple(map(utc, self.raw(attr)))
        return values

    def local(self, attr: str) -> list[datetime | None]:
        """A time column as the community's wall times (as DemandRow.local)."""
        tz = self.tz
        return [None if v is None else v.astimezone(tz).replace(tzinfo=None) for v in self.column(attr)]

    def serials(self, attr: str) -> list[float | None]:
        """A time column as Excel serial numbers of the community's wall times (what a date cell holds).

        A time SQLite gives as text ("2026-05-01 04:10:59.250000", UTC) is read by its parts: the
        minute's wall time in microseconds from Excel's day 0 is looked up once per minute (`minutes`),
        the seconds added, and the microseconds divided by a day's: the same float as the datetime way
        below (an aware time in the zone minus day 0 in the zone, a wall-time difference; timedelta
        division divides the two microsecond counts too), at a fraction of its cost."""
        tz, minutes = self.tz, self.minutes
        epoch = datetime(1899, 12, 30, tzinfo=tz)  # Excel's day 0 (for every date after 1900-02-28)
        out: list[float | None] = []
        for v in self.raw(attr):
            if v is None:
                out.append(None)
                continue
            if v.__class__ is str and len(v) == 26:
                key = v[:16]
                base = minutes.get(key, _UNSEEN)
                if base is _UNSEEN:
                    if len(minutes) > 50_000:  # a month has 44,640 minutes: the cache stays small
                        minutes.clear()
                    base = minutes[key] = _minute_us(key, tz)
                if base is not None:
                    out.append((base + int(v[17:19]) * 1_000_000 + int(v[20:])) / _DAY_US)
                    continue
            out.append((utc(v).astimezone(tz) - epoch) / _DAY)  # type: ignore[union-attr]
        return out

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
        # SQLite's times are texts of one fixed width, so they compare as the times do.
        return yes_no(p, [None if at is None else (at <= by if at.__class__ is str and by.__class__ is str
                                                   and len(at) == len(by) == 26 else utc(at) <= utc(by))
                          for at, by in zip(p.raw("accepted_at"), p.raw("accept_by"), strict=True)])

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
                     lambda p: [n or r for n, r in zip(p.column("resolution_note"), p.column("rejection_reason"),
                                                         strict=True)]),
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


def _sane_column(values: list[Any]) -> list[Any]:
    """A page's column as it is, unless one of its strings cannot be UTF-8 (checked once, in C)."""
    try:
        "".join([v for v in values if v.__class__ is str]).encode("utf-8")
    except UnicodeEncodeError:
        return [_sane(v) if v.__class__ is str else v for v in values]
    return values


class WriterFailed(RuntimeError):
    """The workbook's child process failed (its last words are the message)."""


class _Book:
    """The workbook, written by a child process (bot/services/ledger_workbook.py) on another core.

    Sheets and rows are messages, buffered here and sent a frame at a time down the child's standard
    input; the pipe's back-pressure (drain) keeps the bot at most a page or two ahead of the writer,
    so memory stays flat on both sides. The workbook comes back on the child's standard output.
    """

    def __init__(self) -> None:
        self.proc: asyncio.subprocess.Process | None = None
        self.messages: list[tuple[Any, ...]] = []
        self.rows: list[Any] = []  # the current sheet's rows not yet in a message
        self._out: asyncio.Future[bytes] | None = None
        self._err: asyncio.Future[bytes] | None = None
        self.tmpdir: str | None = None

    async def start(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_ROOT, env.get("PYTHONPATH")) if p)
        self.tmpdir = tempfile.mkdtemp(prefix="linli-export-")  # the child's temporary files
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.services.ledger_workbook", self.tmpdir, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        # Both read from the start: a pipe left unread would stall the child.
        self._out = asyncio.ensure_future(self._read_out(self.proc.stdout))
        self._err = asyncio.ensure_future(self.proc.stderr.read())

    @staticmethod
    async def _read_out(stream: asyncio.StreamReader) -> bytes:
        """The workbook, by way of an unnamed temporary file: one buffer of its size at the end, not
        the chunks and their join side by side."""
        with tempfile.TemporaryFile() as fh:
            while chunk := await stream.read(1 << 20):
                fh.write(chunk)
            fh.seek(0)
            return fh.read()

    @staticmethod
    def frame(messages: list[tuple[Any, ...]]) -> bytes:
        """Messages as one frame (also built in a worker thread: it touches nothing of the book)."""
        body = pickle.dumps(messages, protocol=pickle.HIGHEST_PROTOCOL)
        return FRAME.pack(len(body)) + body

    def _end_rows(self) -> None:
        if self.rows:
            self.messages.append(("rows", self.rows))
            self.rows = []

    def add_sheet(self, message: tuple[Any, ...]) -> None:
        self._end_rows()  # the rows so far are the previous sheet's
        self.messages.append(message)

    async def send(self, frame: bytes) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        try:
            self.proc.stdin.write(frame)
            await self.proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError) as e:
            raise await self._failed() from e

    async def flush(self) -> None:
        self._end_rows()
        messages, self.messages = self.messages, []
        if messages:
            await self.send(self.frame(messages))

    async def pump(self) -> None:
        """Send the buffered rows once they are a page: a long sheet part never piles up here."""
        if len(self.rows) >= BATCH:
            await self.flush()

    async def close(self) -> bytes:
        """The workbook's bytes, once the child has zipped it."""
        assert self.proc is not None and self._out is not None and self.proc.stdin is not None
        self._end_rows()  # the last sheet's rows before the close
        self.messages.append(("close",))
        await self.flush()
        self.proc.stdin.close()
        data = await self._out
        if await self.proc.wait() != 0:
            raise await self._failed()
        return data

    async def _failed(self) -> WriterFailed:
        assert self.proc is not None and self._err is not None
        code = await self.proc.wait()
        text = (await self._err).decode("utf-8", "replace").strip()
        log.error("workbook writer exited %s:\n%s", code, text)
        lines = text.splitlines()
        return WriterFailed(f"workbook writer exited {code}: {lines[-1] if lines else 'no message'}")

    async def abort(self) -> None:
        """End the child if it still runs (an error or a cancelled export) and leave nothing behind.
        (Should the bot itself be killed, the child reads the end of its input and cleans up.)"""
        proc = self.proc
        try:
            if proc is not None and proc.returncode is None:
                try:
                    proc.kill()
                except ProcessLookupError:
                    pass
                await proc.wait()
            for f in (self._out, self._err):
                if f is not None and not f.done():
                    f.cancel()
                if f is not None:
                    await asyncio.gather(f, return_exceptions=True)
        finally:
            if self.tmpdir is not None:
                shutil.rmtree(self.tmpdir, ignore_errors=True)


class _Sheet:
    """A sheet of the workbook: bold frozen header, set widths, dates formatted (by the child);
    here, each row's values made what a cell takes."""

    def __init__(self, book: _Book, title: str, headers: list[str], widths: list[float],
                 tz: ZoneInfo | None = None, dates: frozenset[int] = frozenset()) -> None:
        self.tz = tz
        self.book = book
        book.add_sheet(("sheet", title, list(headers), list(widths), tuple(sorted(dates))))
        self.rows = 0  # not the header

    def cell(self, value: Any, fmt: str | None = None) -> Any:
        """A value as it goes in a cell: `fmt` a number format of its own (e.g. PERCENT_FORMAT)."""
        return Styled(value, fmt) if fmt is not None and value is not None else value

    def clean(self, v: Any) -> Any:
        """Any value as XlsxWriter takes it: an aware time as the zone's wall time, a date as a date
        cell, a string valid and short enough, catalog HTML as its text, an unknown type as its text."""
        t = v.__class__
        if v is None or t is int or t is bool:
            return v
        if t is float:
            return v if math.isfinite(v) else str(v)
        if t is str:
            return _sane(v[:MAX_CELL])
        if t is Html:
            return _sane(plain(v)[:MAX_CELL])
        if t is Styled:
            inner = self.clean(v.value)
            return Styled(inner.value if inner.__class__ is Styled else inner, v.fmt)  # the asked format wins
        if isinstance(v, datetime):
            if v.tzinfo is not None:
                v = (v.astimezone(self.tz) if self.tz else v).replace(tzinfo=None)
            return v
        if isinstance(v, date):
            return Styled(v, DAY_FORMAT)
        if isinstance(v, (time, timedelta)):
            return Styled(v, TIME_FORMAT)
        if isinstance(v, (Decimal, Fraction)):
            return v
        # A subclass (an enum, ...) as its plain value: the child need not import its class.
        if isinstance(v, int):
            return int(v)
        if isinstance(v, float):
            return self.clean(float(v))
        if isinstance(v, str):
            return _sane(str.__str__(v)[:MAX_CELL])
        return _sane(str(v)[:MAX_CELL])

    def append(self, values: list[Any]) -> None:
        clean = self.clean
        self.book.rows.append([clean(v) for v in values])
        self.rows += 1

    def append_many(self, rows: list[Any]) -> None:
        """Rows already clean (as `clean` makes them)."""
        self.book.rows.extend(rows)
        self.rows += len(rows)


async def build_workbook(ledger: LedgerService, s: AsyncSession, community: Community, p: Period,
                         locale: str) -> tuple[bytes, int]:
    """The workbook's bytes and how many demands it lists."""
    tr = Translator(locale)
    tz = ZoneInfo(community.timezone)
    book = _Book()
    await book.start()  # the child starts while the first page is read
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
                await book.pump()
        data = await book.close()
    finally:
        await book.abort()  # an error or a cancelled export: the child ended, not left writing
    return data, count


async def _demands_sheet(ledger: LedgerService, s: AsyncSession, book: _Book, community: Community, p: Period,
                         tr: Translator, tz: ZoneInfo) -> int:
    columns = list(ledger.demand_columns)
    sheet = _Sheet(book, plain(tr("ledger_sheet_demands")), [plain(tr(c.header_key)) for c in columns],
                   [c.width for c in columns], tz, frozenset(i for i, c in enumerate(columns) if c.raw and c.dates))
    await book.flush()  # the sheet before its pages
    clean = sheet.clean
    d = Demand.__table__
    # The times raw (see TIME_COLUMNS): a NullType value is what the driver gives.
    query = (select(*(type_coerce(c, NullType()).label(c.name) if c.name in TIME_COLUMNS else c for c in d.c),
                    User.first_name.label("_first"), User.last_name.label("_last"),
                    User.username.label("_username"))
             .outerjoin(User, User.id == d.c.assignee_id)
             .where(d.c.community_id == community.id, d.c.filed_at < p.end)
             .order_by(d.c.filed_at, d.c.id).limit(BATCH))
    # The event's time as the driver gives it (ISO text on SQLite, aware on PostgreSQL): made a
    # wall-time text once per distinct time below, not an aware datetime per event first.
    events_query = (select(DemandEvent.demand_id, type_coerce(DemandEvent.created_at, NullType()),
                           DemandEvent.action, DemandEvent.note)
                    .order_by(DemandEvent.demand_id, DemandEvent.id))
    conn = await s.connection()  # Core rows, not ORM entities: no identity map, no per-row object
    names: dict[str, str] = {}
    acts: dict[str, str] = {}
    stamps: dict[Any, str] = {}  # one text per event minute: a demand's steps often share it
    minutes: dict[str, int | None] = {}  # DemandPage.serials' minutes, for the whole sheet

    async def batch(after: tuple[datetime, int] | None) -> list[Any]:
        # Keyset pages in filing order along the ledger index: each page costs its own rows, however
        # far into a large month it is.
        q = query.where(d.c.filed_at >= p.start) if after is None else query.where(
            d.c.filed_at >= after[0], or_(d.c.filed_at > after[0], and_(d.c.filed_at == after[0], d.c.id > after[1])))
        return list(await conn.execute(q))

    def timelines(event_rows: list[Any]) -> dict[int, list[str]]:
        events: dict[int, list[str]] = {}
        for demand_id, at, action, note in event_rows:
            what = acts.get(action)
            if what is None:
                what = acts[action] = plain(tr(f"act_{action}"))
            # SQLite's text by its minute (a step's time is shown to the minute), unless that minute's
            # wall minute is not one (see _minute_local); PostgreSQL's datetime as it is.
            key = at[:16] if at.__class__ is str and len(at) == 26 else at
            stamp = stamps.get(key)
            if stamp is None:
                if len(stamps) > 50_000:
                    stamps.clear()
                local = _minute_local(key, tz) if key is not at else None
                if local is None:
                    key, local = at, utc(at).astimezone(tz)
                stamp = stamps[key] = f"{local:%Y-%m-%d %H:%M} "
            line = stamp + what
            lines = events.get(demand_id)
            if lines is None:
                lines = events[demand_id] = []
            lines.append(f"{line}：{note}" if note else line)
        return events

    def shape(rows: list[Any], event_rows: list[Any]) -> bytes:
        """A page as one frame of cells: column by column (a list comprehension each, or the column's
        value() a row), then rows."""
        events = timelines(event_rows)
        page = DemandPage(rows, [], [], tz, tr, names, minutes)
        page.assignees = [_display(*who) for who in zip(page.raw("_first"), page.raw("_last"),
                                                          page.raw("_username"), page.raw("assignee_id"),
                                                          strict=True)]
        page.timelines = ["\n".join(events.get(i, ())) for i in page.raw("id")]
        cells = [c.many(page) if c.many is not None else [c.value(r) for r in page.rows()] for c in columns]
        # A column another capability added: each value made one XlsxWriter takes; every column: a
        # lone surrogate made "?" (one check a column, most pages pass it).
        cells = [_sane_column(v if c.raw else [clean(x) for x in v]) for c, v in zip(columns, cells, strict=True)]
        return book.frame([("rows", list(zip(*cells, strict=True)) if cells else [() for _ in rows])])

    count = 0
    rows = await batch(None)
    while rows:
        event_rows = list(await conn.execute(events_query.where(DemandEvent.demand_id.in_([r.id for r in rows]))))
        # The page's Python work off the event loop, then down the pipe. Not while the next page is
        # read: the two threads would take turns at the interpreter (sqlite3 lets go of it at every
        # row), and the export was slower so than one after the other; the writer works meanwhile.
        await book.send(await asyncio.to_thread(shape, rows, event_rows))
        count += len(rows)
        last = rows[-1]
        rows = await batch((utc(last.filed_at), last.id)) if len(rows) == BATCH else []
    sheet.rows = count
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
