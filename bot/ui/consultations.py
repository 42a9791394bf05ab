"""How consultations look: the proposal with its 附议 count, the consultation post with its turnout
only (the tally stays hidden until the close), and the published result (公示)."""

from __future__ import annotations

from bot.domain.consultations import ABSTAIN, AGREE, CLOSED, DISAGREE, percent
from bot.storage.models import Consultation, Proposal
from bot.transport.port import Button, Keyboard
from bot.ui.dates import format_when
from bot.ui.html import Html
from bot.ui.i18n import Translator

SHOWN_COMMENTS = 8  # published comments in the 公示, each cut to COMMENT_CHARS: it stays one message
COMMENT_CHARS = 200


def until_text(tr: Translator, c: Consultation, tz: str) -> str:
    """The close time with its weekday, e.g. `2026年12月10日 星期四 18:00`."""
    return format_when(c.closes_at, tr.locale, tz)


def proposal_post(tr: Translator, p: Proposal, consult_number: int | None) -> tuple[Html, Keyboard | None]:
    lines = [tr("prp_post_head", n=p.number), tr("prp_post_text", text=p.text),
             tr("prp_post_seconds", count=p.seconds)]
    if consult_number is not None:
        lines.append(tr("prp_post_consulted", n=consult_number))
        return Html("\n".join(lines)), None
    keyboard = Keyboard.of([Button(str(tr("btn_prp_second", count=p.seconds)), f"prp:s:{p.id}")])
    return Html("\n".join(lines)), keyboard


def consult_keyboard(tr: Translator, consultation_id: int) -> Keyboard:
    return Keyboard.of(
        [Button(str(tr("btn_cst_agree")), f"cst:a:{consultation_id}"),
         Button(str(tr("btn_cst_disagree")), f"cst:d:{consultation_id}"),
         Button(str(tr("btn_cst_abstain")), f"cst:x:{consultation_id}")],
        [Button(str(tr("btn_cst_comment")), f"cst:c:{consultation_id}")],
    )


def consult_post(tr: Translator, c: Consultation, tz: str, turnout: int) -> tuple[Html, Keyboard | None]:
    """While open: the matter, the close time and the turnout (`已参与 37`), never a tally."""
    lines = [tr("cst_post_head", n=c.number, title=c.title)]
    if c.plan:
        lines.append(tr("cst_post_plan", plan=c.plan))
    if c.state == CLOSED:
        lines.append(tr("cst_post_closed", turnout=c.turnout))
        return Html("\n".join(lines)), None
    lines.append(tr("cst_post_until", when=until_text(tr, c, tz)))
    lines.append(tr("cst_post_turnout", count=turnout))
    lines.append(tr("cst_post_note"))
    return Html("\n".join(lines)), consult_keyboard(tr, c.id)


def tally_lines(tr: Translator, c: Consultation) -> list[Html]:
    """Only for a closed consultation: counts with their share of the turnout."""
    assert c.state == CLOSED, "a tally of an open consultation is never shown"
    return [
        tr("cst_result_turnout", turnout=c.turnout, eligible=c.eligible, rate=percent(c.turnout, c.eligible)),
        tr("cst_result_line", label=tr("cst_choice_" + AGREE), count=c.agree, share=percent(c.agree, c.turnout)),
        tr("cst_result_line", label=tr("cst_choice_" + DISAGREE), count=c.disagree,
           share=percent(c.disagree, c.turnout)),
        tr("cst_result_line", label=tr("cst_choice_" + ABSTAIN), count=c.abstain,
           share=percent(c.abstain, c.turnout)),
    ]


def result_post(tr: Translator, c: Consultation, tz: str, comments: list[str]) -> tuple[Html, None]:
    """The 公示: counts, turnout, the comments chosen for publication, the decision once recorded."""
    lines = [tr("cst_result_head", n=c.number, title=c.title)]
    if c.closed_at is not None:
        lines.append(tr("cst_result_closed_at", when=format_when(c.closed_at, tr.locale, tz)))
    lines += tally_lines(tr, c)
    if comments:
        lines.append(tr("cst_result_comments"))
        lines += [tr("cst_result_comment", text=text if len(text) <= COMMENT_CHARS else text[:COMMENT_CHARS - 1] + "…")
                  for text in comments[:SHOWN_COMMENTS]]
        if len(comments) > SHOWN_COMMENTS:
            lines.append(tr("cst_result_more", n=len(comments) - SHOWN_COMMENTS))
    if c.decision:
        lines.append(tr("cst_result_decision", text=c.decision))
    else:
        lines.append(tr("cst_result_no_decision"))
    if c.finished_at is not None:
        lines.append(tr("cst_result_finished"))
    lines.append(tr("cst_result_disclaimer"))
    return Html("\n".join(lines)), None


def consult_line(tr: Translator, c: Consultation, tz: str, turnout: int) -> Html:
    """One line of /consults: open ones show the turnout only; closed ones their result."""
    if c.state != CLOSED:
        return tr("cst_line_open", n=c.number, title=c.title, when=until_text(tr, c, tz), count=turnout)
    return tr("cst_line_closed", n=c.number, title=c.title, agree=c.agree, disagree=c.disagree,
              abstain=c.abstain, turnout=c.turnout,
              state=tr("cst_state_finished" if c.finished_at else ("cst_state_decided" if c.decision
                                                                    else "cst_state_closed")))
