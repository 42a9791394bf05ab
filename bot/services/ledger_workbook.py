"""/export's workbook, written by XlsxWriter (constant_memory) in a child process of its own.

Writing the cells' XML and zipping it is about a third of a large export's CPU. In a process of its
own it runs on another core while the bot reads and shapes the next rows, and the bot's event loop
never waits on it. This module therefore imports nothing but the standard library and XlsxWriter:
the child starts in a fraction of a second (the bot's own modules, SQLAlchemy and the models, take
about ten times as long).

    python -m bot.services.ledger_workbook TMPDIR < frames > workbook.xlsx

Standard input: frames, each an 8-byte big-endian length and a pickle (made by the bot, our own
parent, never by a user) of a list of messages:

    ("sheet", title, headers, widths, date_columns)   a new sheet; the rows that follow are its
    ("rows", [row, ...])                              values already as a cell takes them
    ("close",)                                        the workbook to standard output, exit 0

A row's values are str, int, float, bool, Decimal, Fraction, naive datetime, None, or `Styled` (a
value with a number format of its own: a date, a time, a percentage). Anything else, or standard
input ending before "close" (the bot stopped), is an error: exit 1, the traceback on stderr.
Every temporary file is in TMPDIR (the bot's to give), removed on the way out; the bot removes it
too, should the child be killed.

A row of plain values (str, int, finite float, None) is written by `RowWriter`, not cell by cell
through XlsxWriter's write_row: the same XML XlsxWriter writes for such a row (tests compare the
two), made with a few string operations a cell. XlsxWriter's own path (about 7 µs a cell, most of
a large month's export) remains for every other row.
"""

from __future__ import annotations

import functools
import pickle
import re
import shutil
import struct
import sys
import tempfile
import zipfile
from typing import Any, BinaryIO, NamedTuple

PERCENT_FORMAT = "0.0%"
DATE_FORMAT = "yyyy-mm-dd h:mm:ss"  # what openpyxl gives a datetime cell: readers see the same cells
DAY_FORMAT = "yyyy-mm-dd"
TIME_FORMAT = "h:mm:ss"
FRAME = struct.Struct(">Q")
_PIXELS = 7  # XlsxWriter's width of a digit: a width of n characters is n × 7 pixels
_BAD_TITLE = re.compile(r"[\[\]:*?/\\]")
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\ufffe\uffff]")


class Styled(NamedTuple):
    """A value written with a number format of its own."""

    value: Any
    fmt: str


def sane(text: str) -> str:
    """A lone surrogate (possible in text stored from a client) as "?": the sheet files are UTF-8."""
    return text.encode("utf-8", "replace").decode("utf-8")


class Book:
    """The workbook: XlsxWriter in constant_memory mode writing into `fh`; formats made once."""

    def __init__(self, fh: Any, tmpdir: str) -> None:
        import xlsxwriter  # here, not at the top: the bot imports this module for its constants only

        self.wb = xlsxwriter.Workbook(fh, {
            "constant_memory": True,  # each row goes to the sheet's temporary file as it is written
            "in_memory": False,
            "tmpdir": tmpdir,
            # Text is text: no formulas, numbers or links made of what a resident typed.
            "strings_to_numbers": False, "strings_to_formulas": False, "strings_to_urls": False,
            "nan_inf_to_errors": True,
            "default_date_format": DATE_FORMAT,  # a datetime cell written without a format gets it
        })
        self.wb.use_zip64()  # a month past 4 GiB of XML never fails the zip
        self.bold = self.wb.add_format({"bold": True})
        self.formats: dict[str, Any] = {}
        self.titles: set[str] = set()
        self.sheet: Sheet | None = None

    def format(self, fmt: str) -> Any:
        """The Format of a number format, made on first use."""
        f = self.formats.get(fmt)
        if f is None:
            f = self.formats[fmt] = self.wb.add_format({"num_format": fmt})
        return f

    def title(self, title: str) -> str:
        """A valid, unique sheet name: forbidden characters replaced, at most 31 characters, and a
        repeated name numbered (as openpyxl does)."""
        title = _BAD_TITLE.sub("_", _CONTROL.sub("", sane(title))).strip("'")[:31] or "Sheet"
        base, n = title, 1
        while title.lower() in self.titles:
            suffix = str(n)
            title, n = base[:31 - len(suffix)] + suffix, n + 1
        self.titles.add(title.lower())
        return title

    def handle(self, message: tuple[Any, ...]) -> bool:
        """One message; True once the workbook is closed."""
        kind = message[0]
        if kind == "rows":
            if self.sheet is None:
                raise ValueError("rows before any sheet")
            self.sheet.append_many(message[1])
        elif kind == "sheet":
            self.sheet = Sheet(self, *message[1:])
        elif kind == "close":
            self.close()
            return True
        else:
            raise ValueError(f"unknown message {kind!r}")
        return False

    def close(self) -> None:
        if not self.titles:
            self.wb.add_worksheet()
        self.wb.close()


class Sheet:
    """A constant-memory sheet: bold frozen header, set widths, date columns formatted."""

    def __init__(self, book: Book, title: str, headers: list[str], widths: list[float],
                 dates: frozenset[int] | tuple[int, ...] = ()) -> None:
        self.book = book
        self.ws = ws = book.wb.add_worksheet(book.title(title))
        for i, w in enumerate(widths):
            if w:
                # Read back as w (set_column would add a padding). A date column's format is the
                # cells' own when a serial number is written without one (`dates`: column indexes).
                ws.set_column_pixels(i, i, w * _PIXELS, book.format(DATE_FORMAT) if i in dates else None)
        ws.add_write_handler(Styled, self._styled)
        self.next = 0  # the sheet row the next row goes to
        if headers:
            ws.freeze_panes(1, 0)
            ws.write_row(0, 0, [sane(h) for h in headers], book.bold)
            self.next = 1

        self.fast = RowWriter(ws)

    def _styled(self, ws: Any, r: int, c: int, v: Styled, fmt: Any = None) -> int:
        return ws.write(r, c, v.value, self.book.format(v.fmt))

    def append_many(self, rows: list[Any]) -> None:
        self.next = self.fast.write(self.next, rows)


class RowWriter:
    """Rows of plain values straight into an XlsxWriter constant-memory sheet's row file.

    What XlsxWriter writes for such a row: `<row r="n">`, then each value that is not None as an
    inline string or a number (an empty text is no cell, as None), the column's format (set_column)
    as its style, text with control characters as _xHHHH_ escapes and XML's three escaped. One
    difference, on purpose: XlsxWriter writes a text that looks like "<r>…</r>" as raw XML (its
    rich strings), which a resident's text must never be; here it is text like any other. Any other
    row (a bool, a date, a Styled, a Decimal, a text too long for a cell, ...) goes through
    XlsxWriter's write_row.
    """

    def __init__(self, ws: Any) -> None:
        from xlsxwriter.utility import xl_col_to_name

        self.ws = ws
        self.names = xl_col_to_name
        self.refs: list[str] = []  # column letters by index
        self.styles: dict[int, str] = {}  # column → ' s="n"' or "" (the column's format, on first use)

    def _style(self, col: int) -> str:
        info = self.ws.col_info.get(col)
        fmt = info.column_format if info is not None else None
        s = self.styles[col] = f' s="{fmt._get_xf_index()}"' if fmt is not None else ""
        return s

    def write(self, r: int, rows: list[Any]) -> int:
        """Write `rows` from sheet row `r` (0-based); the next row's index."""
        ws = self.ws
        if ws.table or r > ws.previous_row:  # the header (or a fallback row) to the file first
            ws._write_single_row(r)
        out: list[str] = []
        refs, styles, limit = self.refs, self.styles, ws.xls_rowmax
        top = bottom = low = high = -1  # `out`'s first and last rows, leftmost and rightmost cells

        def flush() -> None:
            if out:
                ws.fh.write("".join(out))
                out.clear()
                ws._check_dimensions(top, low)  # as XlsxWriter's write_row would have
                ws._check_dimensions(bottom, high)

        for values in rows:
            line = self._row(r, values, refs, styles) if r < limit else None
            if line is None:  # not plain: XlsxWriter's own way, after the rows so far
                flush()
                ws.write_row(r, 0, values)
                ws._write_single_row(r + 1)
            elif line:
                if not out:
                    top, low, high = r, len(values), -1
                first, last = 0, len(values) - 1
                while values[first] in _BLANK:
                    first += 1
                while values[last] in _BLANK:
                    last -= 1
                low, high, bottom = min(low, first), max(high, last), r
                out.append(line)
            r += 1
        flush()
        ws.previous_row = max(r - 1, 0)  # the next row XlsxWriter writes finds nothing of ours held
        return r

    def _row(self, r: int, values: Any, refs: list[str], styles: dict[int, str]) -> str | None:
        """A row's XML, "" for a row of None only, or None if a value is not plain."""
        n = str(r + 1)
        cells = []
        for c, v in enumerate(values):
            if v is None or v == "":  # a blank cell without a format: XlsxWriter writes nothing
                continue
            t = v.__class__
            if t is str:
                if len(v) > _HALF_MAX:  # XlsxWriter cuts a text past 32,767 UTF-16 units: its way
                    return None
                if _SPECIAL.search(v):  # rare: XlsxWriter's own escape
                    v = self.ws._escape_control_characters(v)
                # XlsxWriter's test (a regex's \s at either end), without two searches a cell.
                space = ' xml:space="preserve"' if v[0].isspace() or v[-1].isspace() else ""
                if "&" in v or "<" in v or ">" in v:
                    v = v.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
                body = f' t="inlineStr"><is><t{space}>{v}</t></is></c>'
            elif t is int or (t is float and v - v == 0):  # not inf or nan (XlsxWriter: error cells)
                body = f"><v>{v:.16G}</v></c>"
            else:
                return None
            if c >= len(refs):
                refs.extend(self.names(i) for i in range(len(refs), c + 1))
            style = styles.get(c)
            if style is None:  # after the value's check: a fallback row numbers its own formats first
                style = self._style(c)
            cells.append(f'<c r="{refs[c]}{n}"{style}{body}')
        if not cells:
            return ""
        return f'<row r="{n}">{"".join(cells)}</row>'


_BLANK = (None, "")
_HALF_MAX = 32767 // 2  # shorter than this, a text cannot pass Excel's limit in UTF-16 units
# What XlsxWriter escapes in a cell's text: "_xHHHH_" itself, control characters, two non-characters.
_SPECIAL = re.compile("[\x00-\x08\x0b-\x1f\ufffe\uffff]|_x[0-9a-fA-F]{4}_")


def read_frames(src: BinaryIO) -> Any:
    """The frames of `src`, each a list of messages; EOF inside a frame or before "close" is an error."""
    while True:
        head = src.read(FRAME.size)
        if len(head) < FRAME.size:
            raise EOFError("the bot stopped before the workbook was closed")
        size, = FRAME.unpack(head)
        body = src.read(size)
        if len(body) < size:
            raise EOFError("a frame was cut short")
        yield pickle.loads(body)


def fast_zip() -> None:
    """XlsxWriter zips at zlib's default level (6) and has no option for it. Level 1 saves about a
    tenth of the writer's CPU time on a large month (deflate at level 6 is about a fifth of it), for
    a file about a quarter larger. Set in the writer's own process only; should XlsxWriter stop
    naming ZipFile so, nothing changes but the level."""
    import xlsxwriter.workbook

    if xlsxwriter.workbook.ZipFile is zipfile.ZipFile:
        xlsxwriter.workbook.ZipFile = functools.partial(zipfile.ZipFile, compresslevel=1)  # type: ignore[misc]


def serve(src: BinaryIO, dst: BinaryIO, tmpdir: str) -> None:
    """Build the workbook the frames of `src` describe and copy it to `dst`; `tmpdir` (a directory
    of its own) holds the temporary files and is removed at the end."""
    fast_zip()
    try:
        with tempfile.TemporaryFile(dir=tmpdir) as out:
            book = Book(out, tmpdir)
            done = False
            for messages in read_frames(src):
                for message in messages:
                    if done:
                        raise ValueError("a message after close")
                    done = book.handle(message)
                if done:
                    break
            out.seek(0)
            shutil.copyfileobj(out, dst)
            dst.flush()
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


if __name__ == "__main__":
    # The module by its own name, not __main__: the frames' Styled values are of that one.
    from bot.services import ledger_workbook

    ledger_workbook.serve(sys.stdin.buffer, sys.stdout.buffer, sys.argv[1])
