"""Command parsing shared by both adapters."""

from __future__ import annotations

import pytest

from bot.transport.base import split_command


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/start", ("start", "")),
        ("/START d12", ("start", "d12")),
        ("/demand 电梯坏了", ("demand", "电梯坏了")),
        ("/demand路灯坏了", ("demand", "路灯坏了")),  # Chinese needs no space
        ("/demand　路灯坏了", ("demand", "路灯坏了")),  # a full-width space
        ("/demand\n第一行\n第二行", ("demand", "第一行\n第二行")),
        ("/view_12", ("view_12", "")),
        ("/view_12@linli_test_bot", ("view_12", "")),
        ("/demand@Linli_Test_Bot 灯坏了", ("demand", "灯坏了")),
        ("/notice! all 停水通知", ("notice!", "all 停水通知")),
        ("/rate 1,5", ("rate", "1,5")),
    ],
)
def test_commands(text: str, expected: tuple[str, str]) -> None:
    assert split_command(text, "linli_test_bot") == expected


@pytest.mark.parametrize(
    "text",
    [None, "", "hello", " /start", "#诉求 灯坏了", "/", "/ start", "/demand@other_bot 灯坏了", "/" + "a" * 33],
)
def test_not_commands_for_us(text: str | None) -> None:
    assert split_command(text, "linli_test_bot") is None
