"""The rules of the shared send windows that need no database (the window rules themselves run
in PostgreSQL: tests/integration/test_shared_limits.py tests them there)."""

from __future__ import annotations

import pytest

from bot.transport.shared_limits import key_name
from config.settings import SettingsError, load_settings


def test_key_names_are_stable_strings() -> None:
    # Stable across processes (Python's hash() of a string is not): every instance names a key alike.
    assert key_name("global") == "global"
    assert key_name(("chat", -100123)) == "chat:-100123"
    assert key_name(("group", -5)) == "group:-5"


def test_shared_windows_need_postgresql() -> None:
    with pytest.raises(SettingsError, match="SEND_LIMITER=database needs PostgreSQL"):
        load_settings(bot_token="1:x", send_limiter="database")
    assert load_settings(bot_token="1:x").send_limiter == "auto"


def test_the_function_locks_in_the_namespace_the_module_names() -> None:
    from pathlib import Path

    from bot.transport.shared_limits import LOCK_NAMESPACE

    migration = Path(__file__).parents[2] / "bot/storage/migrations/versions/0012_scale_out.py"
    assert f"pg_advisory_xact_lock({LOCK_NAMESPACE}, hashtext(k))" in migration.read_text(encoding="utf-8")
