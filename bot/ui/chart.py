"""The /stats chart: the three rates by month for the last 12 months, and demands by category.

matplotlib with the Agg backend (no display), its object API only (no pyplot state), so a chart can
be drawn in a worker thread. Chinese labels are drawn with Noto Sans CJK SC, which the `mplfonts`
wheel carries under the SIL Open Font License (its SimHei file is not used: not an open licence).
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path

CJK_FAMILY = "Noto Sans CJK SC"
FALLBACK_FAMILY = "DejaVu Sans"
_lock = threading.Lock()  # matplotlib's font cache is shared: one chart at a time


@cache
def cjk_font_path() -> Path | None:
    """The Noto Sans CJK SC file shipped by mplfonts, or None when the wheel is missing."""
    import importlib.util

    # Found, not imported: the package itself only adds rc helpers this module does not use.
    spec = importlib.util.find_spec("mplfonts")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "fonts" / "NotoSansCJKsc-Regular.otf"
    return path if path.is_file() else None


@cache
def _setup() -> list[str]:
    """Register the CJK font once; the font families to draw with, in order."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib import font_manager

    path = cjk_font_path()
    if path is None:
        return [FALLBACK_FAMILY]
    fm = font_manager.fontManager
    fm.addfont(str(path))
    # A system with the same family (Debian's fonts-noto-cjk) would win the tie, matplotlib taking
    # the first it knows: the shipped file goes first, so every machine draws with the same file.
    ours = [f for f in fm.ttflist if Path(f.fname) == path]
    fm.ttflist[:] = ours + [f for f in fm.ttflist if Path(f.fname) != path]
    cached = getattr(fm, "_findfont_cached", None)
    if cached is not None:
        cached.cache_clear()
    return [CJK_FAMILY, FALLBACK_FAMILY]


def font_families() -> list[str]:
    return list(_setup())


def resolved_font_file(family: str | None = None) -> str:
    """The file matplotlib draws `family` (default: the chart's first family) with (tests check it)."""
    from matplotlib import font_manager

    families = _setup()
    return str(font_manager.findfont(font_manager.FontProperties(family=family or families[0]),
                                     fallback_to_default=False))


@dataclass(frozen=True)
class ChartData:
    title: str
    months: list[str]  # x labels, oldest first
    series: list[tuple[str, list[float | None]]]  # (label, rate per month 0..1 or None)
    categories_title: str
    categories: list[tuple[str, int]]  # (name, demands)
    empty_note: str  # shown where there are no demands to draw


def render(data: ChartData) -> bytes:
    """The chart as PNG bytes (about 1200×1000 px)."""
    with _lock:
        return _render(data)


def _render(data: ChartData) -> bytes:
    families = _setup()
    from matplotlib import rc_context
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import PercentFormatter

    with rc_context({"font.family": families, "axes.unicode_minus": False}):
        fig = Figure(figsize=(10, 8.4), dpi=120)
        FigureCanvasAgg(fig)
        top, bottom = fig.subplots(2, 1, gridspec_kw={"height_ratios": [1.15, 1]})
        x = list(range(len(data.months)))
        markers = ("o", "s", "^")
        for (label, values), marker in zip(data.series, markers, strict=False):
            pts = [(i, v * 100) for i, v in zip(x, values, strict=True) if v is not None]
            top.plot([p[0] for p in pts], [p[1] for p in pts], marker=marker, label=label)
        top.set_title(data.title)
        top.set_xticks(x, data.months, rotation=45, ha="right", fontsize=8)
        top.set_xlim(-0.5, len(x) - 0.5)
        top.set_ylim(0, 105)
        top.yaxis.set_major_formatter(PercentFormatter())
        top.grid(True, alpha=0.3)
        top.legend(loc="lower left", fontsize=9)
        bottom.set_title(data.categories_title)
        if data.categories:
            names = [n for n, _ in data.categories]
            counts = [c for _, c in data.categories]
            bars = bottom.barh(names[::-1], counts[::-1], color="#c0392b", height=0.6)
            bottom.bar_label(bars, padding=3)
            bottom.set_xlim(0, max(counts) * 1.15 + 1)
        else:
            bottom.set_axis_off()
            bottom.text(0.5, 0.5, data.empty_note, ha="center", va="center", fontsize=14,
                        transform=bottom.transAxes)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
    return buf.getvalue()
