"""Reading /consult and the published percentages (no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from bot.domain.consultations import ConsultInputError, parse_consult, percent, title_from

NOW = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # Monday 10:00 in Shanghai
TZ = ZoneInfo("Asia/Shanghai")


def test_title_until_and_plan() -> None:
    d = parse_consult("东门加装充电桩 | 下周三 18:00 | 安装 4 个", now=NOW, tz=TZ)
    assert (d.title, d.plan, d.proposal) == ("东门加装充电桩", "安装 4 个", None)
    assert d.closes_at == datetime(2026, 3, 11, 18, 0, tzinfo=TZ)


def test_from_a_proposal_with_or_without_a_title() -> None:
    d = parse_consult("p3 ｜ 明天 18:00", now=NOW, tz=TZ)  # a full-width bar too
    assert (d.title, d.proposal, d.plan) == (None, 3, None)
    d2 = parse_consult("ｐ12 新标题 | 明天 18:00", now=NOW, tz=TZ)
    assert (d2.title, d2.proposal) == ("新标题", 12)


def test_a_plan_may_hold_a_bar() -> None:
    assert parse_consult("t | 明天 18:00 | a | b", now=NOW, tz=TZ).plan == "a | b"


@pytest.mark.parametrize(("args", "key"), [
    ("只有标题", "err_consult_usage"),
    (" | 明天 18:00", "err_consult_missing_title"),
    ("标题 |  ", "err_consult_missing_until"),
    ("标题 | 某天", "err_consult_until_unreadable"),
    ("标题 | 2026-03-01 09:00", "err_consult_until_past"),
    ("长" * 101 + " | 明天 18:00", "err_consult_title_too_long"),
])
def test_bad_input(args: str, key: str) -> None:
    with pytest.raises(ConsultInputError) as err:
        parse_consult(args, now=NOW, tz=TZ)
    assert err.value.key == key


def test_percent_and_title() -> None:
    assert [percent(37, 100), percent(1, 3), percent(0, 0), percent(2, 2)] == ["37%", "33.3%", "0%", "100%"]
    assert title_from("第一行\n第二行") == "第一行"
    assert len(title_from("长" * 300)) == 100


def test_the_published_result_stays_one_message_however_many_comments() -> None:
    from bot.storage.models import Consultation
    from bot.ui.consultations import result_post
    from bot.ui.i18n import Translator

    c = Consultation(id=1, number=1, title="标" * 100, closes_at=NOW, closed_at=NOW, state="closed", agree=1,
                     disagree=0, abstain=0, turnout=1, eligible=1, decision="定" * 1000)
    text, _ = result_post(Translator("zh"), c, "Asia/Shanghai", ["意" * 500] * 30)
    assert len(text) < 4096 and "另有 22 条意见" in text
