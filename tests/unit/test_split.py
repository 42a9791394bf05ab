"""split_html / truncate_html / visible_length: parts fit, stay well-formed, lose nothing."""

from __future__ import annotations

import pytest

from bot.transport.split import ELLIPSIS, RAW_LIMIT, split_html, truncate_html, visible_length
from tests.fakeapi.html_check import parse_html


def plain(html_text: str) -> str:
    return parse_html(html_text)[0]  # raises when Telegram would refuse the markup


def utf16(s: str) -> int:
    return len(s.encode("utf-16-le")) // 2


def check_parts(text: str, parts: list[str], limit: int) -> None:
    assert parts, "no parts"
    for p in parts:
        assert visible_length(p) <= limit
        assert utf16(plain(p)) <= limit  # the strict parser agrees with our count
        assert len(p) <= RAW_LIMIT
        assert plain(p).strip(), "empty part"
    # Nothing lost, nothing doubled (only whitespace-only parts may be dropped).
    assert "".join(plain(p) for p in parts) == plain(text)


@pytest.mark.parametrize(
    ("html_text", "expected"),
    [
        ("", 0),
        ("hello", 5),
        ("<b>bold</b> <i>it</i>", 7),
        ("a &amp; b &lt;c&gt; &quot;", 11),
        ("&#20013;&#x6587;", 2),
        ('<a href="https://e.com/?a=1&amp;b=2">link</a>', 4),
        ('<pre><code class="language-python">x = 1</code></pre>', 5),
        ("中文字", 3),
        ("😀", 2),  # UTF-16 units, as Telegram counts entity offsets
        ("<tg-spoiler>s</tg-spoiler>\n", 2),
    ],
)
def test_visible_length(html_text: str, expected: int) -> None:
    assert visible_length(html_text) == expected


@pytest.mark.parametrize(
    ("text", "limit", "sizes"),
    [
        ("short", 4096, [5]),
        ("a" * 4096, 4096, [4096]),
        ("a" * 4097, 4096, [4096, 1]),
        ("<b>" + "a" * 4096 + "</b>", 4096, [4096]),
        ("<b>" + "a" * 4097 + "</b>", 4096, [4096, 1]),
        ("&amp;" * 2000, 2000, [2000]),
        ("&amp;" * 2001, 2000, [2000, 1]),
        ("中" * 10_000, 4096, [4096, 4096, 1808]),
        ("x" * 10_000, 4096, [4096, 4096, 1808]),  # one line, no spaces: cut anywhere
        ("😀" * 3000, 4096, [4096, 1904]),  # 2 units each, never split in half
    ],
)
def test_sizes(text: str, limit: int, sizes: list[int]) -> None:
    parts = split_html(text, limit)
    check_parts(text, parts, limit)
    assert [visible_length(p) for p in parts] == sizes


def test_text_within_limit_is_returned_untouched() -> None:
    text = "<b>x</b>\n\n" + "y" * 100
    assert split_html(text) == [text]


def test_prefers_blank_line_then_newline_then_space() -> None:
    para = "word " * 10  # 50 chars
    text = f"{para}\n\n{para}\n{para} {para}"
    parts = split_html(text, 120)
    check_parts(text, parts, 120)
    assert parts[0] == f"{para}\n\n"  # the blank line, though a later newline also fits
    text2 = f"{para}\n{para} {para}"
    parts2 = split_html(text2, 80)
    check_parts(text2, parts2, 80)
    assert parts2[0] == f"{para}\n"
    text3 = "word " * 30
    parts3 = split_html(text3, 52)
    check_parts(text3, parts3, 52)
    assert all(p.endswith(" ") for p in parts3[:-1])  # words are never cut


def test_chinese_paragraphs_split_at_blank_lines() -> None:
    para = "邻里互助，守望相助。" * 100  # 1000 chars, no spaces
    text = "\n\n".join([para] * 10)
    parts = split_html(text)
    check_parts(text, parts, 4096)
    assert [visible_length(p) for p in parts] == [4008, 4008, 2002]
    assert all(p.endswith("\n\n") for p in parts[:-1])


def test_single_long_line_of_words() -> None:
    text = " ".join(["邻里"] * 3334)[:10_000]  # 10,000 chars on one line
    parts = split_html(text)
    check_parts(text, parts, 4096)
    assert len(parts) == 3
    assert all(p.endswith(" ") for p in parts[:-1])


def test_nested_tags_closed_and_reopened() -> None:
    text = "<b>bold <i>" + "both " * 30 + "</i> tail</b>"
    parts = split_html(text, 60)
    check_parts(text, parts, 60)
    assert parts[0].startswith("<b>bold <i>") and parts[0].endswith("</i></b>")
    assert parts[1].startswith("<b><i>")
    assert parts[-1].endswith("</i> tail</b>")
    # Every part renders bold+italic where the original did.
    for p in parts[1:-1]:
        ents = {e.type for e in parse_html(p)[1]}
        assert ents == {"bold", "italic"}


def test_link_reopened_with_its_attributes() -> None:
    href = "https://example.com/?a=1&amp;b=2"
    text = f'see <a href="{href}">' + "long link text " * 20 + "</a> end"
    parts = split_html(text, 100)
    check_parts(text, parts, 100)
    assert len(parts) >= 3
    for p in parts:
        links = [e for e in parse_html(p)[1] if e.type == "text_link"]
        assert links and all(e.extra == "https://example.com/?a=1&b=2" for e in links)
    assert parts[1].startswith(f'<a href="{href}">')


def test_pre_spanning_the_split() -> None:
    code = "\n".join(f"line {i} &lt;tag&gt; = {i * i}" for i in range(400))
    text = f'Code:\n<pre><code class="language-python">{code}</code></pre>\nafter'
    parts = split_html(text, 4096)
    check_parts(text, parts, 4096)
    assert len(parts) == 3
    for p in parts[1:]:
        assert p.startswith('<pre><code class="language-python">')
    for p in parts[:-1]:
        assert p.endswith("\n</code></pre>")  # cut at a line end inside the block
    assert parts[-1].endswith("</code></pre>\nafter")


@pytest.mark.parametrize(
    ("text", "first_tail", "second"),
    [
        ("a" * 4095 + "&amp;" + "b", "a&amp;", "b"),
        ("a" * 4095 + "&amp;&amp;", "a&amp;", "&amp;"),
        ("a" * 4095 + "&#x1F600;", "a", "&#x1F600;"),  # an emoji entity is 2 units: does not fit
        ("a" * 4094 + "<b>&lt;&gt;</b>c", "a<b>&lt;&gt;</b>", "c"),
        ("a" * 4096 + "<b>b</b>", "a", "<b>b</b>"),  # the opening tag moves with its text
    ],
)
def test_entities_and_tags_at_the_boundary(text: str, first_tail: str, second: str) -> None:
    parts = split_html(text)
    check_parts(text, parts, 4096)
    assert parts[0].endswith(first_tail)
    assert parts[1] == second


def test_emoji_sequences_not_broken() -> None:
    family = "👨\u200d👩\u200d👧"  # 8 UTF-16 units
    text = family * 1000
    parts = split_html(text)
    check_parts(text, parts, 4096)
    assert all(plain(p).startswith("👨") and plain(p).endswith("👧") for p in parts)


def test_raw_length_bounded_even_when_visible_text_is_short() -> None:
    text = '<a href="https://example.com/a/rather/long/path/to/somewhere">x</a> ' * 500
    assert visible_length(text) == 1000
    parts = split_html(text)
    check_parts(text, parts, 4096)
    assert len(parts) >= 4
    assert all(len(p) <= RAW_LIMIT for p in parts)


def test_whitespace_only_tail_is_dropped() -> None:
    text = "a" * 10 + " " * 20
    parts = split_html(text, 10)
    assert parts == ["a" * 10]


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("short caption", 1024, "short caption"),
        ("a" * 1024, 1024, "a" * 1024),
        ("a" * 1025, 1024, "a" * 1023 + ELLIPSIS),
        ("<b>" + "中" * 2000 + "</b>", 10, "<b>" + "中" * 9 + ELLIPSIS + "</b>"),
        ("one two three four five six", 16, "one two three" + ELLIPSIS),
        ("<b>bold <i>italic text here</i></b> after", 14, "<b>bold <i>italic" + ELLIPSIS + "</i></b>"),
        ("a &amp; b &amp; c &amp; d", 8, "a &amp; b" + ELLIPSIS),
        ("abcdefgh <b>bold</b>", 10, "abcdefgh" + ELLIPSIS),
    ],
)
def test_truncate_html(text: str, limit: int, expected: str) -> None:
    out = truncate_html(text, limit)
    assert out == expected
    assert visible_length(out) <= limit
    plain(out)  # well-formed


def test_truncate_long_caption_is_well_formed() -> None:
    text = '<a href="https://e.com">' + "链接 " * 800 + "</a>"
    out = truncate_html(text, 1024)
    assert visible_length(out) <= 1024
    assert plain(out).endswith(ELLIPSIS)
    assert out.endswith("</a>")


def test_truncate_huge_text_reads_only_what_it_needs() -> None:
    text = "<b>x</b> 邻里 &amp; " * 20_000
    out = truncate_html(text, 1024)
    assert visible_length(out) <= 1024 and len(out) <= RAW_LIMIT
    assert plain(out).endswith(ELLIPSIS)
    raw_bound = truncate_html("<i>" + "y" * 20_000 + "</i>", 100_000)
    assert len(raw_bound) <= RAW_LIMIT and raw_bound.endswith(ELLIPSIS + "</i>")
