"""The sandbox's pieces that need no server: Telegram's HTML parse mode, the clock, its settings."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.sandbox.clock import OffsetClock
from bot.sandbox.entities import HtmlError, command_entities, parse_html
from bot.sandbox.run import is_loopback
from config.settings import SettingsError, load_settings


def test_html_becomes_text_and_entities() -> None:
    text, entities = parse_html('<b>#1</b> 已受理：<i>3号楼 <u>电梯</u></i> &lt;b&gt; &amp; <a href="https://t.me/x?start=d1">链接</a>')
    assert text == "#1 已受理：3号楼 电梯 <b> & 链接"
    assert entities == [
        {"type": "bold", "offset": 0, "length": 2},
        {"type": "italic", "offset": 7, "length": 6},
        {"type": "underline", "offset": 11, "length": 2},
        {"type": "text_link", "url": "https://t.me/x?start=d1", "offset": 20, "length": 2},
    ]


def test_offsets_count_utf16_units() -> None:
    # ⭐ is one UTF-16 unit, 🏠 two (a surrogate pair), as Telegram counts them.
    text, entities = parse_html("🏠<b>⭐⭐</b>")
    assert text == "🏠⭐⭐" and entities == [{"type": "bold", "offset": 2, "length": 2}]


def test_pre_with_language_spoiler_and_blockquote() -> None:
    text, entities = parse_html(
        '<pre><code class="language-python">x = 1</code></pre><tg-spoiler>秘</tg-spoiler>'
        '<span class="tg-spoiler">密</span><blockquote expandable>长</blockquote>'
    )
    assert text == "x = 1秘密长"
    assert [e["type"] for e in entities] == ["pre", "spoiler", "spoiler", "expandable_blockquote"]
    assert entities[0]["language"] == "python"


@pytest.mark.parametrize("bad", ["<b>未闭合", "<b><i>x</b></i>", "<div>x</div>", "<span>x</span>", "<a>x</a>",
                                 "x</b>", "<br/>"])
def test_html_telegram_refuses(bad: str) -> None:
    with pytest.raises(HtmlError):
        parse_html(bad)


def test_command_entities() -> None:
    assert command_entities("/demand 电梯坏了") == [{"type": "bot_command", "offset": 0, "length": 7}]
    assert command_entities("/demand路灯坏了") == [{"type": "bot_command", "offset": 0, "length": 7}]
    assert command_entities("/start@linli_bot x") == [{"type": "bot_command", "offset": 0, "length": 16}]
    assert command_entities("你好 /help") == []


def test_offset_clock_moves_forward_only() -> None:
    clock = OffsetClock()
    before = clock()
    clock.advance(timedelta(days=1))
    assert timedelta(hours=23, minutes=59) < clock() - before < timedelta(days=1, minutes=1)
    with pytest.raises(ValueError):
        clock.advance(timedelta(0))


def test_loopback_hosts() -> None:
    assert all(map(is_loopback, ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost")))
    assert not any(map(is_loopback, ("0.0.0.0", "::", "192.168.1.5", "example.org")))


def test_sandbox_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    s = load_settings()
    assert (s.sandbox_host, s.sandbox_port) == ("127.0.0.1", 8080)
    monkeypatch.setenv("SANDBOX_PORT", "70000")
    with pytest.raises(SettingsError, match="SANDBOX_PORT"):
        load_settings()
