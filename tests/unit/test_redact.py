"""Taking one person out of stored text, without harming the words around them."""

from __future__ import annotations

from bot.domain.redact import Identity, mentions, redact
from bot.ui.html import mention

ANON = "（已匿名）"


def test_identity_spellings() -> None:
    who = Identity.of(42, "Zelda", "Quimby", "zq")
    assert who.names == ("Zelda Quimby", "Zelda")
    assert who.terms()[0] == "Zelda Quimby"  # the full name goes before the first name inside it
    assert {"@zq", "zq", "42"} <= set(who.terms())


def test_mention_name_username_and_id() -> None:
    who = Identity.of(7300123457, "Zelda", "Quimby", "zq_forget")
    text = f'{mention(7300123457, "Zelda Quimby")} 已派给 Zelda Quimby，联系 @zq_forget（7300123457）'
    out = redact(text, who, ANON)
    assert out == f"{ANON} 已派给 {ANON}，联系 {ANON}（{ANON}）"
    assert not mentions(out, who)


def test_word_boundaries_for_latin_names_and_ids() -> None:
    who = Identity.of(12, "Li", None, None)
    assert redact("Linli: Li asked, user 123 and 12 too", who, "X") == "Linli: X asked, user 123 and X too"
    assert not mentions("Linli 123", who)


def test_cjk_names_match_inside_text_but_not_single_characters() -> None:
    assert redact("我是王大爷，家在3号楼", Identity.of(1, "王大爷", None, None), ANON) == f"我是{ANON}，家在3号楼"
    # A one-character name would erase parts of unrelated words: only mentions, username and id go.
    assert redact("王先生说王大爷", Identity.of(1, "王", None, None), ANON) == "王先生说王大爷"


def test_escaped_names_in_html_texts() -> None:
    who = Identity.of(5, "<b>Eve</b>", None, None)
    assert redact("举报人：&lt;b&gt;Eve&lt;/b&gt;", who, ANON) == f"举报人：{ANON}"


def test_case_insensitive_usernames_and_empty_text() -> None:
    who = Identity.of(5, "Eve", None, "EveX")
    assert redact("ask @evex", who, ANON) == f"ask {ANON}"
    assert redact(None, who, ANON) is None and redact("", who, ANON) == ""
