"""Message catalogs (zh default, en) with HTML-safe interpolation."""

from __future__ import annotations

import json
import string
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from bot.ui.html import Html, esc

LOCALES_DIR = Path(__file__).resolve().parents[2] / "config" / "locales"
LOCALES = ("zh", "en")
DEFAULT_LOCALE = "zh"


@cache
def catalog(locale: str) -> Mapping[str, str]:
    """All files of config/locales/<locale>/, one per capability, merged; a key lives in one file."""
    data: dict[str, str] = {}
    for path in sorted((LOCALES_DIR / locale).glob("*.json")):
        with open(path, encoding="utf-8") as fh:
            part: dict[str, str] = json.load(fh)
        clash = data.keys() & part.keys()
        if clash:
            raise ValueError(f"{path.name} repeats catalog keys: {sorted(clash)}")
        data.update(part)
    return data


def placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def normalize_locale(value: str | None) -> str | None:
    if not value:
        return None
    value = value.lower()
    if value.startswith("zh") or value in ("cn", "中文"):
        return "zh"
    if value.startswith("en"):
        return "en"
    return None


def t(locale: str, key: str, /, **params: Any) -> Html:
    """Render `key` in `locale`. Params are escaped unless they are `Html` already."""
    cat = catalog(locale if locale in LOCALES else DEFAULT_LOCALE)
    template = cat.get(key)
    if template is None:
        template = catalog(DEFAULT_LOCALE).get(key, key)
    safe = {k: (v if isinstance(v, Html) else esc(v)) for k, v in params.items()}
    return Html(template.format(**safe))


class Translator:
    """`t` bound to one locale, handed to handlers."""

    def __init__(self, locale: str) -> None:
        self.locale = locale if locale in LOCALES else DEFAULT_LOCALE

    def __call__(self, key: str, /, **params: Any) -> Html:
        return t(self.locale, key, **params)
