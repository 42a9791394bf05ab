"""Grids' plain rules: buildings as typed, buildings named in a demand, periods, and the chart."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.domain.grids import (
    DOWN,
    UP,
    BuildingError,
    Level,
    buildings_in,
    month_bounds,
    parse_building,
    parse_buildings,
)
from bot.services.grid_ledger import CommunityFigures, chart_png, pct


@pytest.mark.parametrize(("raw", "expected"), [
    ("1-6号楼", [f"{n}号楼" for n in range(1, 7)]),
    ("7,9号楼", ["7号楼", "9号楼"]),
    ("7，9号楼", ["7号楼", "9号楼"]),
    ("1-3栋、5栋", ["1号楼", "2号楼", "3号楼", "5号楼"]),
    ("１０～１２号楼", ["10号楼", "11号楼", "12号楼"]),
    ("3号楼 3号楼", ["3号楼"]),
    ("12", ["12号楼"]),
])
def test_parse_buildings(raw: str, expected: list[str]) -> None:
    assert parse_buildings(raw) == expected


@pytest.mark.parametrize("raw", ["", "一号楼", "6-1号楼", "1-999号楼", "楼", "3楼层"])
def test_bad_buildings(raw: str) -> None:
    with pytest.raises(BuildingError):
        parse_buildings(raw)


def test_buildings_named_in_text() -> None:
    # 5楼 is a floor, not a building; 13800138000 is a phone number.
    assert buildings_in("3号楼5楼漏水，电话13800138000，12栋也有") == ["3号楼", "12号楼"]
    assert buildings_in("小区门口垃圾") == []
    assert parse_building("３栋") == "3号楼"
    with pytest.raises(BuildingError):
        parse_building("三栋")


def test_levels_up_and_down() -> None:
    assert UP == {Level.GRID: Level.COMMUNITY, Level.COMMUNITY: Level.STREET}
    assert DOWN == {Level.STREET: Level.COMMUNITY, Level.COMMUNITY: Level.GRID}


def test_month_bounds() -> None:
    now = datetime(2026, 11, 30, 17, 0, tzinfo=UTC)  # 12-01 01:00 in Shanghai
    start, end, label = month_bounds(None, now, "Asia/Shanghai")
    assert label == "2026-12" and start == datetime(2026, 11, 30, 16, 0, tzinfo=UTC)
    assert end == datetime(2026, 12, 31, 16, 0, tzinfo=UTC)
    assert month_bounds("2026-2", now, "Asia/Shanghai")[2] == "2026-02"
    assert month_bounds("all", now, "Asia/Shanghai")[:2] == (None, None)
    for bad in ("2026-13", "last", "11"):
        with pytest.raises(ValueError):
            month_bounds(bad, now, "Asia/Shanghai")


def test_rates_and_chart() -> None:
    f = CommunityFigures(1, "幸福里", filed=10, accepted_in_time=8, resolved=5, ratings=4, satisfied=3, overdue=1,
                         solved_at={"grid": 2, "community": 2, "street": 1})
    assert (pct(f.response_rate), pct(f.resolution_rate), pct(f.satisfaction_rate)) == ("80%", "50%", "75%")
    assert pct(f.level_share("grid")) == "40%" and pct(f.level_share("street")) == "20%"
    empty = CommunityFigures(2, "阳光苑", 0, 0, 0, 0, 0, 0, {})
    assert pct(empty.response_rate) == "-"
    png = chart_png([f, empty], "城关街道", {"response": "响应率", "resolution": "解决率", "satisfaction": "满意率"})
    assert png.startswith(b"\x89PNG")
