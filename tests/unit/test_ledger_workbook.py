"""/export's workbook: the bot's side (_Book, _Sheet) and the writer process (XlsxWriter, constant
memory, bot/services/ledger_workbook.py) it drives; what a reader finds, read back with openpyxl."""

from __future__ import annotations

import io
import os
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from openpyxl import load_workbook

from bot.services.ledger_export import _DAY, _EPOCH, WriterFailed, _Book, _Sheet
from bot.services.ledger_workbook import DATE_FORMAT, PERCENT_FORMAT, serve
from bot.ui.html import Html


async def build(write) -> bytes:  # type: ignore[no-untyped-def]
    """The workbook `write(book)` describes, written by a real writer process."""
    book = _Book()
    await book.start()
    try:
        write(book)
        return await book.close()
    finally:
        await book.abort()


async def test_values_types_formats_and_layout_read_back() -> None:
    tz = ZoneInfo("Asia/Shanghai")

    def write(book: _Book) -> None:
        s = _Sheet(book, "诉求", ["编号", "提交时间", "内容"], [8, 18, 50.5], tz)
        for row in (
            [1, datetime(2026, 3, 1, 0, 10), "3号楼电梯坏了"],
            [2, datetime(2026, 2, 28, 16, 10, tzinfo=UTC), "a < b & c > d \"q\" 'x'"],
            [None, None, "  spaced  "],
            [True, 2.5, "line 1\nline 2"],
            [Decimal("1.25"), date(2026, 3, 1), time(9, 30)],
            [s.cell(0.5, PERCENT_FORMAT), s.cell(None, PERCENT_FORMAT), "bell\x07 and CR\r"],
            [timedelta(hours=6), float("inf"), ""],
            [object.__new__(type("Thing", (), {"__str__": lambda self: "thing"})), -3, "=1+1"],
            [Html("A &amp; B"), "http://example.org", "12"],
        ):
            s.append(row)
        assert s.rows == 9
        s2 = _Sheet(book, "三率", [], [16, 10])
        s2.append(["响应率", s2.cell(5 / 9, PERCENT_FORMAT)])

    wb = load_workbook(io.BytesIO(await build(write)))
    assert wb.sheetnames == ["诉求", "三率"]
    ws = wb["诉求"]
    assert ws.freeze_panes == "A2"
    assert ws.column_dimensions["A"].width == 8 and ws.column_dimensions["C"].width == 50.5
    assert ws.cell(row=1, column=1).font.b and not ws.cell(row=2, column=1).font.b
    rows = list(ws.iter_rows(values_only=True))
    assert rows[0] == ("编号", "提交时间", "内容")
    assert rows[1] == (1, datetime(2026, 3, 1, 0, 10), "3号楼电梯坏了")
    assert ws.cell(row=2, column=2).is_date and ws.cell(row=2, column=2).number_format == DATE_FORMAT
    assert rows[2] == (2, datetime(2026, 3, 1, 0, 10), "a < b & c > d \"q\" 'x'")  # aware: the zone's wall time
    assert rows[3] == (None, None, "  spaced  ")
    assert rows[4] == (True, 2.5, "line 1\nline 2")
    assert rows[5][0] == 1.25 and rows[5][1] == datetime(2026, 3, 1) and ws.cell(row=6, column=2).is_date
    assert ws.cell(row=6, column=2).number_format == "yyyy-mm-dd"
    assert ws.cell(row=6, column=3).is_date and rows[5][2] == time(9, 30)
    assert rows[6][0] == 0.5 and ws.cell(row=7, column=1).number_format == "0.0%" and rows[6][1] is None
    # XML cannot hold control characters: Excel's escape (Excel shows them; openpyxl leaves it as written)
    assert rows[6][2] == "bell_x0007_ and CR_x000D_"
    assert ws.cell(row=8, column=1).is_date and rows[7][1] == "inf" and rows[7][2] is None
    assert rows[8] == ("thing", -3, "=1+1")  # text, never a formula
    assert ws.cell(row=9, column=3).data_type == "s"
    assert rows[9] == ("A & B", "http://example.org", "12")  # catalog text plain; no link, no number
    assert not ws._hyperlinks
    assert list(wb["三率"].iter_rows(values_only=True)) == [("响应率", pytest.approx(5 / 9))]
    assert wb["三率"].cell(row=1, column=2).number_format == "0.0%"


async def test_a_page_of_rows_with_a_date_column_of_serial_numbers() -> None:
    """The 诉求 sheet's fast path: whole rows, a date column's cells numbers in its date format."""
    when = [datetime(2026, 5, 1, 8, 0), None, datetime(2026, 5, 31, 23, 59)]

    def write(book: _Book) -> None:
        s = _Sheet(book, "诉求", ["编号", "提交时间", "内容"], [8, 18, 50], None, frozenset({1}))
        s.append_many([[i + 1, None if w is None else (w - _EPOCH) / _DAY, f"第{i + 1}条"]
                       for i, w in enumerate(when)])
        s.append_many([[4, None, None]])
        assert s.rows == 4

    ws = load_workbook(io.BytesIO(await build(write)))["诉求"]
    assert list(ws.iter_rows(values_only=True)) == [
        ("编号", "提交时间", "内容"), (1, when[0], "第1条"), (2, None, "第2条"), (3, when[2], "第3条"),
        (4, None, None)]
    assert ws.cell(row=2, column=2).is_date and ws.cell(row=2, column=2).number_format == DATE_FORMAT
    assert not ws.cell(row=2, column=1).is_date and ws.column_dimensions["B"].width == 18


async def test_sheet_titles_are_made_valid_and_unique() -> None:
    def write(book: _Book) -> None:
        for title in ("议事", "议事", "a/b:c*d?[e]", "x" * 40, "x" * 40, "'q'", ""):
            _Sheet(book, title, [], [])

    assert load_workbook(io.BytesIO(await build(write))).sheetnames == [
        "议事", "议事1", "a_b_c_d__e_", "x" * 31, "x" * 30 + "1", "q", "Sheet"]


async def test_an_empty_book_still_has_a_sheet() -> None:
    assert len(load_workbook(io.BytesIO(await build(lambda book: None))).sheetnames) == 1


async def test_long_text_is_cut_to_what_a_cell_holds() -> None:
    def write(book: _Book) -> None:
        _Sheet(book, "s", [], []).append(["字" * 40000])

    ws = load_workbook(io.BytesIO(await build(write)))["s"]
    assert len(ws.cell(row=1, column=1).value) == 32000


async def test_a_lone_surrogate_is_replaced_not_a_failed_export() -> None:
    def write(book: _Book) -> None:
        s = _Sheet(book, "s\ud83d", ["h\ud83d"], [])
        s.append(["坏\ud83d字", "😀"])

    wb = load_workbook(io.BytesIO(await build(write)))
    assert list(wb["s_"].iter_rows(values_only=True)) == [("h?", None), ("坏?字", "😀")]


def test_serials_are_the_wall_times_excel_numbers_across_a_clock_change() -> None:
    from types import SimpleNamespace

    from bot.services.ledger_export import DemandPage
    from bot.ui.i18n import Translator

    tz = ZoneInfo("America/New_York")  # 2026-03-08 02:00 the clocks go forward
    times = [datetime(2026, 3, 8, 6, 30, tzinfo=UTC), datetime(2026, 3, 8, 7, 30, tzinfo=UTC), None,
             datetime(2026, 5, 1, 0, 0, tzinfo=UTC)]
    page = DemandPage([SimpleNamespace(at=t) for t in times], [None] * 4, [""] * 4, tz, Translator("zh"), {})
    assert page.serials("at") == [None if t is None else (t.astimezone(tz).replace(tzinfo=None) - _EPOCH) / _DAY
                                  for t in times]
    assert page.serials("at")[1] - page.serials("at")[0] == pytest.approx(2 / 24)  # 01:30 → 03:30 wall time


@pytest.mark.parametrize("zone", ["America/New_York", "Asia/Shanghai", "Australia/Lord_Howe", "Asia/Kathmandu"])
def test_serials_of_sqlite_texts_are_the_same_floats_as_of_datetimes(zone: str) -> None:
    """SQLite gives a time as SQLAlchemy's ISO text: read by its parts (a cached minute), it is the
    same float as the datetime way, across clock changes (New York; Lord Howe's is half an hour) and
    in local mean time, whose offset has seconds (Shanghai before 1901)."""
    import random
    from types import SimpleNamespace

    from bot.services.ledger_export import DemandPage
    from bot.ui.i18n import Translator

    tz = ZoneInfo(zone)
    rnd = random.Random(7)
    starts = [datetime(2026, 3, 8, 6, 0, tzinfo=UTC), datetime(2026, 4, 4, 14, 0, tzinfo=UTC),
              datetime(2026, 10, 3, 15, 0, tzinfo=UTC), datetime(1899, 12, 31, 0, 0, tzinfo=UTC),
              datetime(2026, 11, 1, 5, 0, tzinfo=UTC)]
    times = [s + timedelta(seconds=rnd.randrange(-7200, 7200), microseconds=rnd.randrange(1_000_000))
             for s in starts for _ in range(400)] + [datetime(2026, 3, 8, 7, 0, tzinfo=UTC), None]
    texts = [None if t is None else t.replace(tzinfo=None).isoformat(" ", "microseconds") for t in times]
    by_text = DemandPage([SimpleNamespace(at=t) for t in texts], [], [], tz, Translator("zh"), {}).serials("at")
    by_time = DemandPage([SimpleNamespace(at=t) for t in times], [], [], tz, Translator("zh"), {}).serials("at")
    assert by_text == by_time
    assert by_time == [None if t is None else (t.astimezone(tz).replace(tzinfo=None) - _EPOCH) / _DAY
                       for t in times]


def there(path: str) -> bool:
    return os.path.exists(path)


async def test_a_failing_writer_is_an_error_with_its_reason_and_leaves_nothing() -> None:
    book = _Book()
    await book.start()
    try:
        _Sheet(book, "s", ["h"], [8]).append_many([[object()]])  # not a cell value: the child fails
        with pytest.raises(WriterFailed, match="Unsupported type"):
            await book.close()
    finally:
        await book.abort()
    assert book.proc is not None and book.proc.returncode == 1
    assert book.tmpdir is not None and not there(book.tmpdir)


async def test_an_abandoned_export_ends_its_writer_and_leaves_nothing() -> None:
    book = _Book()
    await book.start()
    _Sheet(book, "s", ["h"], [8]).append(["x"])
    await book.flush()
    assert book.tmpdir is not None and there(book.tmpdir)
    await book.abort()  # as build_workbook does on an error or a cancellation
    assert book.proc is not None and book.proc.returncode is not None
    assert not there(book.tmpdir)


def frames(*messages_per_frame: list[tuple[object, ...]]) -> io.BytesIO:
    return io.BytesIO(b"".join(_Book.frame(m) for m in messages_per_frame))


def test_the_writer_fails_on_input_cut_short_or_past_the_close(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The bot gone mid-export (its pipe closed): the writer stops with an error and removes its files."""
    sheet = ("sheet", "s", ["h"], [8], ())
    for src, error in ((frames([sheet, ("rows", [["x"]])]), EOFError),
                       (io.BytesIO(_Book.frame([sheet])[:-3]), EOFError),
                       (frames([sheet, ("close",), ("rows", [["x"]])]), ValueError)):
        tmpdir = tmp_path / "w"
        tmpdir.mkdir()
        with pytest.raises(error):
            serve(src, io.BytesIO(), str(tmpdir))
        assert not tmpdir.exists()


def test_the_writer_writes_what_the_frames_say_in_process(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out, tmpdir = io.BytesIO(), tmp_path / "w"
    tmpdir.mkdir()
    serve(frames([("sheet", "诉求", ["编号"], [8], ())], [("rows", [[1], [2]])], [("close",)]), out, str(tmpdir))
    assert not tmpdir.exists()
    assert list(load_workbook(io.BytesIO(out.getvalue()))["诉求"].iter_rows(values_only=True)) == [
        ("编号",), (1,), (2,)]


def sheet_files(tmp_path, rows: list[tuple[object, ...]], fast: bool) -> dict[str, bytes]:  # type: ignore[no-untyped-def]
    """The workbook's files (but its creation time) after `rows` under a header, written by RowWriter
    (fast) or cell by cell by XlsxWriter's write_row."""
    import zipfile

    from bot.services.ledger_workbook import Book

    out, tmpdir = io.BytesIO(), tmp_path / ("fast" if fast else "slow")
    tmpdir.mkdir()
    book = Book(out, str(tmpdir))
    book.handle(("sheet", "诉求", ["a", "b", "c", "d", "e"], [8, 18, 12, 0, 30], (1,)))
    if fast:
        book.handle(("rows", rows))
        book.handle(("rows", rows[:3]))  # a second frame goes on where the first ended
    else:
        for i, values in enumerate(rows + rows[:3]):
            book.sheet.ws.write_row(1 + i, 0, values)
    book.handle(("sheet", "x", [], [], ()))
    book.handle(("rows", [[1, "a"]]))
    book.close()
    z = zipfile.ZipFile(io.BytesIO(out.getvalue()))
    return {n: z.read(n) for n in z.namelist() if n != "docProps/core.xml"}


def test_plain_rows_are_written_as_xlsxwriter_writes_them(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """RowWriter's XML is XlsxWriter's own, byte for byte, for any mix of plain rows and the rows it
    leaves to XlsxWriter (a bool, a date, a Styled, a Decimal, inf, a text past a cell's limit)."""
    import random

    from bot.services.ledger_workbook import Styled

    rnd = random.Random(5)
    pool = [None, "", "x", " lead", "trail ", "a&b<c>d \"q\"", "\x01ctl\x1f", "_x00aF_", "\ufffe", "中文 text", "\n",
            "line\nline", "\u3000全角", 0, -5, 10**20, 3.5, 1e-9, 46000.25, float("inf"), float("nan"), True, False,
            datetime(2026, 1, 2, 3, 4), date(2026, 1, 1), Decimal("1.5"), Styled(0.5, PERCENT_FORMAT),
            Styled(None, PERCENT_FORMAT), "y" * 20000, "😀" * 17000]
    plain = [v for v in pool if v.__class__ in (str, int, float, type(None))
             and not (v.__class__ is float and v - v != 0) and not (v.__class__ is str and len(v) > 16000)]
    for trial in range(60):
        rows = [tuple(rnd.choice(plain if trial % 2 else pool) for _ in range(rnd.randint(1, 5)))
                for _ in range(rnd.randint(3, 40))]
        trial_dir = tmp_path / str(trial)
        trial_dir.mkdir()
        assert sheet_files(trial_dir, rows, True) == sheet_files(trial_dir, rows, False), rows


async def test_a_text_like_xlsxwriters_rich_string_is_text() -> None:
    """XlsxWriter writes a text "<r>…</r>" as raw XML (its rich strings): a resident's text must never
    be, and RowWriter writes it as text."""
    def write(book: _Book) -> None:
        s = _Sheet(book, "诉求", ["内容"], [20])
        s.append_many([("<r><t>x</t></r>",), ("<r>",)])

    wb = load_workbook(io.BytesIO(await build(write)))
    assert list(wb["诉求"].iter_rows(values_only=True)) == [("内容",), ("<r><t>x</t></r>",), ("<r>",)]
