"""The streaming .xlsx writer (/export's): read back with openpyxl, every part well-formed XML."""

from __future__ import annotations

import io
import zipfile
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from xml.etree import ElementTree
from zoneinfo import ZoneInfo

import pytest
from openpyxl import load_workbook

from bot.services.xlsx_stream import Styled, XlsxStream, column_letter


def build(write) -> bytes:  # type: ignore[no-untyped-def]
    fh = io.BytesIO()
    book = XlsxStream(fh)
    write(book)
    book.close()
    return fh.getvalue()


def test_column_letters() -> None:
    assert [column_letter(i) for i in (0, 25, 26, 51, 52, 701, 702, 16383)] == [
        "A", "Z", "AA", "AZ", "BA", "ZZ", "AAA", "XFD"]


def test_values_types_formats_and_layout_read_back() -> None:
    tz = ZoneInfo("Asia/Shanghai")

    def write(book: XlsxStream) -> None:
        s = book.add_sheet("诉求", [8, 18, 50.5], ["编号", "提交时间", "内容"], tz=tz)
        s.append_rows([
            [1, datetime(2026, 3, 1, 0, 10), "3号楼电梯坏了"],
            [2, datetime(2026, 2, 28, 16, 10, tzinfo=UTC), "a < b & c > d \"q\" 'x'"],
            [None, None, "  spaced  "],
            [True, 2.5, "line 1\nline 2"],
            [Decimal("1.25"), date(2026, 3, 1), time(9, 30)],
            [Styled(0.5, "0.0%"), Styled(None, "0.0%"), "bell\x07 and \x00, CR\r, _x0041_"],
            [timedelta(hours=6), float("inf"), ""],
            [object.__new__(type("Thing", (), {"__str__": lambda self: "thing"})), -3, "=1+1"],
        ])
        s2 = book.add_sheet("三率", [16, 10])
        s2.append_rows([["响应率", Styled(5 / 9, "0.0%")]])

    wb = load_workbook(io.BytesIO(build(write)))
    assert wb.sheetnames == ["诉求", "三率"]
    ws = wb["诉求"]
    assert ws.freeze_panes == "A2"
    assert ws.column_dimensions["A"].width == 8 and ws.column_dimensions["C"].width == 50.5
    assert ws.cell(row=1, column=1).font.b and not ws.cell(row=2, column=1).font.b
    rows = list(ws.iter_rows(values_only=True))
    assert rows[0] == ("编号", "提交时间", "内容")
    assert rows[1] == (1, datetime(2026, 3, 1, 0, 10), "3号楼电梯坏了")
    assert ws.cell(row=2, column=2).is_date and ws.cell(row=2, column=2).number_format == "yyyy-mm-dd h:mm:ss"
    assert rows[2] == (2, datetime(2026, 3, 1, 0, 10), "a < b & c > d \"q\" 'x'")  # aware: the zone's wall time
    assert rows[3] == (None, None, "  spaced  ")
    assert rows[4] == (True, 2.5, "line 1\nline 2")
    assert rows[5][0] == 1.25 and rows[5][1] == datetime(2026, 3, 1) and ws.cell(row=6, column=2).is_date
    assert ws.cell(row=6, column=3).is_date and rows[5][2] == time(9, 30)
    assert rows[6][0] == 0.5 and ws.cell(row=7, column=1).number_format == "0.0%" and rows[6][1] is None
    # XML cannot hold control characters: Excel's escape (Excel shows them; openpyxl leaves it as written)
    assert rows[6][2] == "bell_x0007_ and _x0000_, CR_x000D_, _x005F_x0041_"
    assert rows[7][1] == "inf" and rows[7][2] is None
    assert rows[8] == ("thing", -3, "=1+1")  # text, never a formula
    assert ws.cell(row=9, column=3).data_type == "s"
    assert list(wb["三率"].iter_rows(values_only=True)) == [("响应率", pytest.approx(5 / 9))]
    assert wb["三率"].cell(row=1, column=2).number_format == "0.0%"


def test_every_part_is_well_formed_xml_and_typed() -> None:
    def write(book: XlsxStream) -> None:
        book.add_sheet("A & <B>", [10], ["h"]).append_rows([["x"]])
        book.add_sheet("空", [], freeze_header=False)

    with zipfile.ZipFile(io.BytesIO(build(write))) as z:
        names = z.namelist()
        assert {"[Content_Types].xml", "_rels/.rels", "xl/workbook.xml", "xl/_rels/workbook.xml.rels",
                "xl/styles.xml", "xl/worksheets/sheet1.xml", "xl/worksheets/sheet2.xml"} <= set(names)
        for name in names:
            ElementTree.fromstring(z.read(name))
        types = z.read("[Content_Types].xml").decode()
        assert types.count("worksheet+xml") == 2 and "sheet.main+xml" in types and "styles+xml" in types
    wb = load_workbook(io.BytesIO(build(write)))
    assert wb.sheetnames == ["A & <B>", "空"] and wb["空"].max_row == 1 and wb["空"].freeze_panes is None


def test_sheet_titles_are_made_valid_and_unique() -> None:
    def write(book: XlsxStream) -> None:
        for title in ("议事", "议事", "a/b:c*d?[e]", "x" * 40, "x" * 40):
            book.add_sheet(title, [])

    assert load_workbook(io.BytesIO(build(write))).sheetnames == [
        "议事", "议事1", "a_b_c_d__e_", "x" * 31, "x" * 30 + "1"]


def test_an_empty_book_still_has_a_sheet_and_a_finished_sheet_takes_no_rows() -> None:
    assert load_workbook(io.BytesIO(build(lambda book: None))).sheetnames == ["Sheet"]

    def write(book: XlsxStream) -> None:
        first = book.add_sheet("one", [])
        book.add_sheet("two", [])
        with pytest.raises(RuntimeError):
            first.append_rows([[1]])

    assert load_workbook(io.BytesIO(build(write))).sheetnames == ["one", "two"]


def test_long_text_is_cut_to_what_a_cell_holds() -> None:
    def write(book: XlsxStream) -> None:
        book.add_sheet("s", []).append_rows([["字" * 40000]])

    ws = load_workbook(io.BytesIO(build(write)))["s"]
    assert len(ws.cell(row=1, column=1).value) == 32767


def test_a_lone_surrogate_is_replaced_not_a_failed_export() -> None:
    def write(book: XlsxStream) -> None:
        book.add_sheet("s\ud83d", [], ["h\ud83d"]).append_rows([["坏\ud83d字", "😀"]])

    wb = load_workbook(io.BytesIO(build(write)))
    assert list(wb["s_"].iter_rows(values_only=True)) == [("h?", None), ("坏?字", "😀")]
