"""Deadlines (SLA) per category and urgency, after Beijing 12345's standard.

Overrides come as `{"<category or *>": {"<urgency or *>": {"accept": "2h", "resolve": "7d"}}}`,
first from the community's config, then from SLA_OVERRIDES, then these defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from config.settings import parse_duration

DEFAULTS: dict[str, dict[str, timedelta]] = {
    "urgent": {"accept": timedelta(hours=2), "resolve": timedelta(hours=24)},
    "general": {"accept": timedelta(hours=24), "resolve": timedelta(days=7)},
    "complex": {"accept": timedelta(hours=24), "resolve": timedelta(days=15)},
}


@dataclass(frozen=True)
class Deadlines:
    accept_by: datetime
    resolve_by: datetime


def _lookup(overrides: Mapping[str, Any] | None, category: str, urgency: str, step: str) -> timedelta | None:
    if not overrides:
        return None
    for cat in (category, "*"):
        by_urgency = overrides.get(cat)
        if not isinstance(by_urgency, Mapping):
            continue
        for urg in (urgency, "*"):
            steps = by_urgency.get(urg)
            if isinstance(steps, Mapping) and steps.get(step):
                try:
                    return parse_duration(str(steps[step]))
                except ValueError:  # a community's config is not validated on load: skip, don't crash
                    continue
    return None


def sla_for(
    category: str, urgency: str, *overrides: Mapping[str, Any] | None
) -> dict[str, timedelta]:
    """{"accept": ..., "resolve": ...}; the first override that names a step wins."""
    base = DEFAULTS.get(urgency, DEFAULTS["general"])
    out = {}
    for step in ("accept", "resolve"):
        found = None
        for layer in overrides:
            found = _lookup(layer, category, urgency, step)
            if found is not None:
                break
        out[step] = found if found is not None else base[step]
    return out


def deadlines(filed_at: datetime, category: str, urgency: str, *overrides: Mapping[str, Any] | None) -> Deadlines:
    sla = sla_for(category, urgency, *overrides)
    return Deadlines(filed_at + sla["accept"], filed_at + sla["resolve"])


def validate_overrides(value: Mapping[str, Any]) -> None:
    """Raise ValueError for a malformed SLA_OVERRIDES (checked when settings load)."""
    for cat, by_urgency in value.items():
        if not isinstance(by_urgency, Mapping):
            raise ValueError(f"SLA_OVERRIDES[{cat!r}] must be an object of urgencies")
        for urg, steps in by_urgency.items():
            if urg != "*" and urg not in DEFAULTS:
                raise ValueError(f"unknown urgency {urg!r}; use urgent, general, complex or *")
            if not isinstance(steps, Mapping):
                raise ValueError(f"SLA_OVERRIDES[{cat!r}][{urg!r}] must be an object")
            for step, dur in steps.items():
                if step not in ("accept", "resolve"):
                    raise ValueError(f"unknown SLA step {step!r}; use accept or resolve")
                parse_duration(str(dur))
