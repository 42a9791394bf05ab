"""Members in the open, the rules without I/O: reading /pledge and /evaluation, and the wall's pages."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from bot.domain.members import (
    MAX_PLEDGE,
    MEMBERS,
    SERVICES,
    WALL_BUDGET,
    MemberInputError,
    paginate,
    parse_evaluation,
    parse_pledge,
    satisfaction,
)
from bot.ui.i18n import Translator
from bot.ui.members import WallEntry, WallPledge, wall_message, wall_pages

NOW = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # Monday 10:00 in Shanghai
TZ = ZoneInfo("Asia/Shanghai")


def test_pledge_with_and_without_a_date() -> None:
    assert parse_pledge("每周清理楼道", now=NOW, tz=TZ).until is None
    d = parse_pledge("每周清理楼道 | 3月31日", now=NOW, tz=TZ)
    assert d.text == "每周清理楼道" and d.until == datetime(2026, 3, 31, 23, 59, tzinfo=TZ)
    assert parse_pledge("清理｜2026-04-01 18:00", now=NOW, tz=TZ).until == datetime(2026, 4, 1, 18, 0, tzinfo=TZ)


@pytest.mark.parametrize(("args", "key"), [
    ("", "err_usage_pledge"),
    ("  | 3月31日", "err_usage_pledge"),
    ("承" * (MAX_PLEDGE + 1), "err_pledge_too_long"),
    ("清理 | 昨天 9:00", "err_member_date_past"),
    ("清理 | 某天", "err_member_date"),
])
def test_bad_pledges(args: str, key: str) -> None:
    with pytest.raises(MemberInputError) as exc:
        parse_pledge(args, now=NOW, tz=TZ)
    assert exc.value.key == key


def test_evaluation_fields() -> None:
    d = parse_evaluation("年度测评 | 2026-03-10 18:00 | members", now=NOW, tz=TZ)
    assert (d.title, d.kind, d.until) == ("年度测评", MEMBERS, datetime(2026, 3, 10, 18, 0, tzinfo=TZ))
    assert parse_evaluation("服务测评 | 下周三 9:00 | 服务", now=NOW, tz=TZ).kind == SERVICES
    for args, key in (("年度测评 | 2026-03-01 18:00 | members", "err_member_date_past"),
                      ("年度测评 | 2026-03-10 18:00 | all", "err_evaluation_kind"),
                      ("年度测评 | 2026-03-10 18:00", "err_usage_evaluation_open"),
                      ("年度测评 | | members", "err_usage_evaluation_open")):
        with pytest.raises(MemberInputError) as exc:
            parse_evaluation(args, now=NOW, tz=TZ)
        assert exc.value.key == key


def test_too_few_raters() -> None:
    assert satisfaction({"satisfied": 4}) == (4, None)
    assert satisfaction({"satisfied": 3, "fair": 1, "unsatisfied": 1}) == (5, 80)
    assert satisfaction({"excellent": 2, "good": 2, "poor": 1}) == (5, 80)


def test_pages_never_pass_the_budget_and_keep_order() -> None:
    entries = [f"{i}:" + "x" * (i * 37 % 900) for i in range(300)]
    pages = paginate(entries)
    assert [e for p in pages for e in p] == entries
    assert all(sum(len(e) for e in p) + len(p) - 1 <= WALL_BUDGET for p in pages)
    assert paginate([]) == [[]]


def test_a_member_with_many_pledges_goes_on_over_pages_whole_lines_only() -> None:
    tr = Translator("zh")
    many = WallEntry("张党员", "环境卫生岗", [WallPledge(i, "<&>" * 66, "kept", 9, NOW) for i in range(40)])
    pages = wall_pages(tr, [many, WallEntry(None, None, [WallPledge(99, "短", "active", 0, None)])], "Asia/Shanghai")
    assert len(pages) > 2
    for n in range(len(pages)):
        text, keyboard, shown = wall_message(tr, "幸福里", pages, n, 7)
        assert len(text) < 4096 and shown == n and keyboard is not None
        assert text.count("<b>") == text.count("</b>")  # never cut inside markup
        assert "<&>" not in text  # user text escaped
    assert "一名党员" in "".join(pages[-1])
