"""zh is the default and complete; en is complete too: both catalogs keep the same keys and placeholders."""

from __future__ import annotations

import json

import pytest

from bot.ui.i18n import LOCALES_DIR, catalog, placeholders, t


def test_same_files_in_every_locale() -> None:
    zh = sorted(p.name for p in (LOCALES_DIR / "zh").glob("*.json"))
    en = sorted(p.name for p in (LOCALES_DIR / "en").glob("*.json"))
    assert zh == en and zh


def test_same_keys() -> None:
    zh, en = catalog("zh"), catalog("en")
    assert sorted(set(zh) - set(en)) == [], "keys missing in en"
    assert sorted(set(en) - set(zh)) == [], "keys missing in zh"


@pytest.mark.parametrize("key", sorted(catalog("zh")))
def test_same_placeholders(key: str) -> None:
    assert placeholders(catalog("zh")[key]) == placeholders(catalog("en")[key])


def test_no_empty_strings() -> None:
    for locale in ("zh", "en"):
        for key, value in catalog(locale).items():
            assert value.strip(), f"{locale}:{key} is empty"


def test_files_are_valid_json_objects_of_strings() -> None:
    for path in LOCALES_DIR.glob("*/*.json"):
        data = json.loads(path.read_text(encoding="utf-8"))
        assert all(isinstance(v, str) for v in data.values()), path


def test_params_are_escaped() -> None:
    out = t("zh", "whoami_head", name="<b>x</b> & co", id=1)
    assert "&lt;b&gt;x&lt;/b&gt; &amp; co" in out
