"""Grids and levels: buildings, where a demand is handled (网格 → 社区 → 街道). Plain rules, no I/O."""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime
from enum import StrEnum
from zoneinfo import ZoneInfo

MAX_BUILDINGS = 200  # one grid covers at most this many buildings
MAX_GRID_NAME = 32
MAX_STREET_NAME = 64


class Level(StrEnum):
    GRID = "grid"
    COMMUNITY = "community"
    STREET = "street"


LEVELS = (Level.GRID, Level.COMMUNITY, Level.STREET)
UP = {Level.GRID: Level.COMMUNITY, Level.COMMUNITY: Level.STREET}
DOWN = {Level.STREET: Level.COMMUNITY, Level.COMMUNITY: Level.GRID}

# A building in text: 3号楼, 3栋, 3幢, 3号院 (not 3楼, which is a floor).
_SUFFIX = r"(?:号楼|号院|栋|幢|號樓|棟)"
_IN_TEXT = re.compile(r"(?<!\d)(\d{1,4})\s*" + _SUFFIX)
_ONE = re.compile(r"(\d{1,4})(?:\s*" + _SUFFIX + r")?")
_RANGE = re.compile(r"(\d{1,4})\s*(?:" + _SUFFIX + r")?\s*[-~～至到]\s*(\d{1,4})\s*(?:" + _SUFFIX + r")?")


class BuildingError(ValueError):
    pass


def key(number: int) -> str:
    """The one spelling a building is stored and compared in."""
    return f"{number}号楼"


def _norm(text: str) -> str:
    return unicodedata.normalize("NFKC", text).strip()


def parse_buildings(raw: str) -> list[str]:
    """`1-6号楼`, `7,9号楼`, `1-3栋、5栋`, `12` -> building keys, in order, each once."""
    text = _norm(raw)
    if not text:
        raise BuildingError("empty")
    out: list[str] = []
    for part in re.split(r"[,，、;；\s]+", text):
        if not part:
            continue
        m = _RANGE.fullmatch(part)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            if lo > hi or hi - lo + 1 > MAX_BUILDINGS:
                raise BuildingError(part)
            out += [key(n) for n in range(lo, hi + 1)]
            continue
        m = _ONE.fullmatch(part)
        if not m:
            raise BuildingError(part)
        out.append(key(int(m.group(1))))
    seen: dict[str, None] = dict.fromkeys(out)
    if not seen or len(seen) > MAX_BUILDINGS:
        raise BuildingError(text)
    return list(seen)


def parse_building(raw: str) -> str:
    """One building for /mybuilding: `3号楼`, `3栋`, `3`."""
    m = _ONE.fullmatch(_norm(raw))
    if not m:
        raise BuildingError(raw)
    return key(int(m.group(1)))


def buildings_in(text: str) -> list[str]:
    """The buildings a demand's text names, in order."""
    return list(dict.fromkeys(key(int(m.group(1))) for m in _IN_TEXT.finditer(_norm(text))))


def share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def month_bounds(arg: str | None, now: datetime, tz: str) -> tuple[datetime | None, datetime | None, str]:
    """`/street stats [month|YYYY-MM|all]` -> (start, end) in UTC and a label; None bounds for all."""
    value = _norm(arg or "").lower()
    local = now.astimezone(ZoneInfo(tz))
    if value in ("", "month", "本月"):
        year, month = local.year, local.month
    elif value in ("all", "全部"):
        return None, None, "all"
    else:
        m = re.fullmatch(r"(\d{4})-(\d{1,2})", value)
        if not m or not 1 <= int(m.group(2)) <= 12:
            raise ValueError(value)
        year, month = int(m.group(1)), int(m.group(2))
    start = datetime(year, month, 1, tzinfo=ZoneInfo(tz))
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=ZoneInfo(tz))
    return start.astimezone(UTC), end.astimezone(UTC), f"{year:04d}-{month:02d}"
