"""Settings: environment, .env, a TOML file; invalid values stop the bot with a clear message."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from config.settings import SettingsError, load_settings, parse_duration

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("BOT_TOKEN", "DATABASE_URL", "BOT_FRAMEWORK", "SUPERADMINS", "TIMEZONE", "LINLI_CONFIG",
                 "SLA_OVERRIDES", "CATEGORY_KEYWORDS", "DEFAULT_LOCALE", "TELEGRAM_API_BASE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_defaults() -> None:
    s = load_settings()
    assert s.bot_framework == "aiogram" and s.default_locale == "zh" and s.timezone == "Asia/Shanghai"
    assert s.database_url == "sqlite+aiosqlite:///data/linli.sqlite3"
    assert s.superadmins == [] and s.send_rate_global == 30


def test_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOT_TOKEN", "1:abc")
    monkeypatch.setenv("SUPERADMINS", "11, 22")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h/db")
    monkeypatch.setenv("BOT_FRAMEWORK", "ptb")
    monkeypatch.setenv("SLA_OVERRIDES", '{"lifts": {"urgent": {"accept": "1h"}}}')
    monkeypatch.setenv("CATEGORY_KEYWORDS", '{"lifts": ["扶梯"]}')
    s = load_settings()
    assert s.bot_token == "1:abc" and s.superadmins == [11, 22] and s.bot_framework == "ptb"
    assert s.database_url == "postgresql+asyncpg://u@h/db"
    assert s.sla_overrides["lifts"]["urgent"]["accept"] == "1h" and s.category_keywords == {"lifts": ["扶梯"]}


def test_dotenv_and_toml_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("BOT_TOKEN=2:from-dotenv\n", encoding="utf-8")
    cfg = tmp_path / "linli.toml"
    cfg.write_text('timezone = "Asia/Urumqi"\nDEFAULT_LOCALE = "en"\n', encoding="utf-8")
    monkeypatch.setenv("LINLI_CONFIG", str(cfg))
    s = load_settings()
    assert (s.bot_token, s.timezone, s.default_locale) == ("2:from-dotenv", "Asia/Urumqi", "en")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("TIMEZONE", "Mars/Olympus", "unknown timezone"),
        ("DATABASE_URL", "mysql://x/y", "DATABASE_URL must be sqlite or postgresql"),
        ("BOT_FRAMEWORK", "telethon", "BOT_FRAMEWORK"),
        ("DEFAULT_LOCALE", "fr", "DEFAULT_LOCALE"),
        ("SEND_RATE_GLOBAL", "0", "SEND_RATE_GLOBAL"),
        ("SLA_OVERRIDES", '{"*": {"soon": {"accept": "1h"}}}', "unknown urgency"),
        ("SLA_OVERRIDES", '{"*": {"urgent": {"accept": "fast"}}}', "bad duration"),
        ("CATEGORY_KEYWORDS", '{"weather": ["雨"]}', "unknown categories"),
        ("RATING_REASK_AFTER", "soon", "bad duration"),
        ("TELEGRAM_API_BASE", "ftp://x", "must start with http"),
    ],
)
def test_invalid_values_are_named(monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert name in str(err.value) and message in str(err.value)


def test_durations() -> None:
    assert parse_duration("90s").total_seconds() == 90
    assert parse_duration("2h").total_seconds() == 7200
    for bad in ("", "h", "-1h", "2w", "xh"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def run_main(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in __import__("os").environ.items() if k not in ("BOT_TOKEN", "TIMEZONE")}
    return subprocess.run(
        [sys.executable, str(ROOT / "main.py")], env={**clean, **env}, cwd=tmp_path, capture_output=True,
        text=True, timeout=60,
    )


# With no BOT_TOKEN, main.py runs the sandbox: tests/e2e/test_sandbox.py covers it.


def test_invalid_setting_exits_2(tmp_path: Path) -> None:
    done = run_main({"BOT_TOKEN": "1:x", "TIMEZONE": "Nowhere/Land"}, tmp_path)
    assert done.returncode == 2 and "TIMEZONE" in done.stderr
