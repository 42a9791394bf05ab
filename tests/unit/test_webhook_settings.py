"""Webhook mode refuses to start without a proper secret, and says why."""

from __future__ import annotations

import pytest

from config.settings import SettingsError, load_settings, split_listen

GOOD = "A" * 16 + "b_-9" * 4


def test_webhook_needs_a_secret_of_32_characters() -> None:
    for secret in (None, "", "short", "x" * 31):
        with pytest.raises(SettingsError, match="WEBHOOK_SECRET"):
            load_settings(webhook_url="https://bot.example.org/hook", webhook_secret=secret)
    with pytest.raises(SettingsError, match="WEBHOOK_SECRET"):
        load_settings(webhook_url="https://bot.example.org/hook", webhook_secret="ä" * 40)
    s = load_settings(webhook_url="https://bot.example.org/hook", webhook_secret=GOOD)
    assert s.webhook_listen == "127.0.0.1:8081" and s.webhook_max_connections == 40
    assert GOOD not in repr(s)
    assert load_settings().webhook_url is None  # polling stays the default


def test_main_refuses_webhook_mode_without_secret(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    import main

    monkeypatch.setenv("BOT_TOKEN", "1:x")
    monkeypatch.setenv("WEBHOOK_URL", "https://bot.example.org/hook")
    monkeypatch.delenv("WEBHOOK_SECRET", raising=False)
    assert main.main([]) == 2
    assert "WEBHOOK_SECRET" in capsys.readouterr().err


def test_listen_addresses() -> None:
    assert split_listen("127.0.0.1:8081") == ("127.0.0.1", 8081)
    assert split_listen("[::1]:9000") == ("::1", 9000)
    for bad in ("8081", "host:", "host:http", "h:70000"):
        with pytest.raises(ValueError):
            split_listen(bad)
    with pytest.raises(SettingsError, match="METRICS_LISTEN"):
        load_settings(metrics_listen="nowhere")
    assert load_settings(inbox_retention="3d").inbox_retention == "3d"
    with pytest.raises(SettingsError, match="INBOX_RETENTION"):
        load_settings(inbox_retention="soon")


def test_listen_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METRICS_LISTEN", "")
    assert load_settings().metrics_listen is None
    monkeypatch.setenv("WEBHOOK_LISTEN", "")
    with pytest.raises(SettingsError, match="WEBHOOK_LISTEN"):
        load_settings()
