"""Volunteer-task rules without I/O: reading /task, times with an end, skills, the roster's shape,
reminder offsets, periods; and the rendered post (escaping, the contract's roster wording)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.domain.tasks import (
    DEFAULT_MINUTES,
    MAX_SLOTS,
    TaskInputError,
    parse_int,
    parse_points,
    parse_skills,
    parse_slots,
    parse_task,
    parse_time,
    period_start,
    reminder_due,
    short_name,
    skill_key,
    waitlist_shown,
)
from bot.storage.models import Task
from bot.ui.i18n import Translator
from bot.ui.tasks import Roster, digest, hours, roster_lines, task_post
from config.settings import load_settings, parse_durations

TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # Monday 10:00 in Shanghai


def err(fn, *args, **kw) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(TaskInputError) as e:
        fn(*args, **kw)
    return e.value.key


def test_parse_task_all_fields() -> None:
    d = parse_task("清理楼道杂物 | 周六 9:00-11:30 | 5 | 10 | 3号楼 | 搬运", now=NOW, tz=TZ)
    assert (d.title, d.slots, d.points, d.place, d.skill) == ("清理楼道杂物", 5, 10, "3号楼", "搬运")
    assert d.when.starts_at == datetime(2026, 3, 7, 9, 0, tzinfo=TZ) and d.when.minutes == 150 and d.when.ranged


def test_parse_task_full_width_bars_and_digits() -> None:
    d = parse_task("义诊｜明天 19:30｜３｜０", now=NOW, tz=TZ)
    assert (d.slots, d.points, d.place, d.skill, d.when.minutes) == (3, 0, None, None, DEFAULT_MINUTES)


@pytest.mark.parametrize(("args", "key"), [
    ("", "err_task_usage"),
    ("a | b | c", "err_task_usage"),
    ("a | 明天 9:00 | 1 | 1 | p | s | extra", "err_task_usage"),
    (" | 明天 9:00 | 1 | 1", "err_task_missing_title"),
    ("a |  | 1 | 1", "err_task_missing_when"),
    ("a | 明天 9:00 |   | 1", "err_task_missing_slots"),
    ("a | 明天 9:00 | 1 |  ", "err_task_missing_points"),
    ("a | 明天 9:00 | 0 | 1", "err_task_slots"),
    ("a | 明天 9:00 | 1.5 | 1", "err_task_slots"),
    (f"a | 明天 9:00 | {MAX_SLOTS + 1} | 1", "err_task_slots"),
    ("a | 明天 9:00 | 1 | -1", "err_task_points"),
    ("a | 明天 9:00 | 1 | x", "err_task_points"),
    ("a | 后天晚上八点半左右吧 | 1 | 1", "err_task_date_unreadable"),
    ("a | 2026-03-01 09:00 | 1 | 1", "err_task_date_past"),
    ("a | 明天 9:00-8:00 | 1 | 1", "err_task_end_before_start"),
    ("a | 明天 9:00-25:00 | 1 | 1", "err_task_date_unreadable"),
    ("a | 明天 9:00 | 1 | 1 | " + "地" * 101, "err_task_place_too_long"),
    ("a | 明天 9:00 | 1 | 1 | p | 水电, 理发", "err_task_one_skill"),
])
def test_parse_task_refusals(args: str, key: str) -> None:
    assert err(parse_task, args, now=NOW, tz=TZ) == key


def test_time_range_forms_and_dates_with_dashes() -> None:
    assert parse_time("2026-03-07 09:00", now=NOW, tz=TZ).minutes == DEFAULT_MINUTES  # a date's dashes are no range
    assert parse_time("2026-03-07 09:00-10:00", now=NOW, tz=TZ).minutes == 60
    assert parse_time("3月7日 9:00至11:00", now=NOW, tz=TZ).minutes == 120
    assert parse_time("周六 9：00～9：45", now=NOW, tz=TZ).minutes == 45


def test_numbers() -> None:
    assert parse_int(" １２ ") == 12 and parse_int("-3") == -3 and parse_int("3a") is None
    assert parse_slots("5") == 5 and parse_points("0") == 0
    assert err(parse_slots, "-1") == "err_task_slots"


def test_skills() -> None:
    assert parse_skills("水电维修, 理发、陪护就医；理发") == ["水电维修", "理发", "陪护就医"]
    assert skill_key("Ｐｌｕｍｂｉｎｇ ") == skill_key("plumbing") == "plumbing"
    assert skill_key("水电 维修") == skill_key("水电维修")
    assert err(parse_skills, " ，、 ") == "err_skills_usage"
    assert err(parse_skills, "!!!") == "err_skills_usage"
    assert err(parse_skills, "x" * 21) == "err_skill_too_long"
    assert err(parse_skills, ",".join(f"s{i}" for i in range(11))) == "err_skills_too_many"


def test_waitlist_is_shortened() -> None:
    names = [f"n{i}" for i in range(12)]
    assert waitlist_shown(names[:10], 990) == (names[:10], 980)
    assert waitlist_shown(names[:3], 3) == (names[:3], 0)
    assert short_name("一二三四五六七八九十一二三四五六七八") == "一二三四五六七八九十一二三四五…"


def test_reminders_skip_past_offsets() -> None:
    start = NOW + timedelta(hours=5)
    offsets = parse_durations("24h,1h")
    assert reminder_due(start, offsets, NOW) == [(timedelta(hours=1), start - timedelta(hours=1))]
    assert reminder_due(NOW + timedelta(days=2), offsets, NOW)[0][0] == timedelta(hours=24)


def test_remind_setting_is_validated() -> None:
    assert load_settings(bot_token="1:x", task_remind_before="2d, 30m").task_remind_before == "2d, 30m"
    with pytest.raises(Exception, match="TASK_REMIND_BEFORE"):
        load_settings(bot_token="1:x", task_remind_before="soon")


def test_periods_start_in_community_time() -> None:
    assert period_start("month", NOW, TZ) == datetime(2026, 3, 1, tzinfo=TZ)
    assert period_start("year", NOW, TZ) == datetime(2026, 1, 1, tzinfo=TZ)
    assert period_start("all", NOW, TZ) is None


def _task(**kw: object) -> Task:
    values: dict[str, object] = dict(id=7, number=3, title="清理<b>楼道</b> & 杂物", starts_at=datetime(2026, 3, 7, 1, 0, tzinfo=UTC),
                                     minutes=120, slots=5, points=10, place="3号楼", skill=None, state="open",
                                     claimed=2, cancel_reason=None)
    values.update(kw)
    return Task(**values)


def test_post_shows_the_contracts_roster_and_escapes_user_text() -> None:
    roster = Roster(claimers=["张三", "李四"], waiting=["王五", "<i>赵</i>"], waiting_total=14)
    text, keyboard = task_post(Translator("zh"), _task(), "Asia/Shanghai", roster, [(42, "老周")])
    assert "已认领 2/5: 张三, 李四" in text
    assert "候补: 王五, &lt;i&gt;赵&lt;/i&gt; 等 12 人" in text
    assert "清理&lt;b&gt;楼道&lt;/b&gt; &amp; 杂物" in text
    assert "2026年3月7日 星期六 09:00（2小时）" in text
    assert [b.text for b in keyboard.rows[0]] == ["🙋 认领", "取消认领"]
    assert [b.data for b in keyboard.rows[0]] == ["task:c:7", "task:u:7"]
    en, _ = task_post(Translator("en"), _task(), "Asia/Shanghai", roster)
    assert "Claimed 2/5: 张三, 李四" in en and "Waitlist: 王五, &lt;i&gt;赵&lt;/i&gt; and 12 more" in en
    assert "Sat, 7 Mar 2026 09:00" in en


def test_roster_without_claimers_or_waitlist() -> None:
    lines = roster_lines(Translator("zh"), _task(claimed=0), Roster())
    assert lines == ["已认领 0/5"]


def test_digest_tells_texts_and_keyboards_apart() -> None:
    _, kb = task_post(Translator("zh"), _task(), "Asia/Shanghai", Roster())
    assert digest("a", kb) != digest("a", None) and digest("a", kb) == digest("a", kb) != digest("b", kb)
    assert hours(120) == "2" and hours(90) == "1.5" and hours(0) == "0"
