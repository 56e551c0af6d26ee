"""Slack's mrkdwn and blocks as terminal text (bot.terminal)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.terminal import EMOJI, RULE, Renderer

ROOT = Path(__file__).resolve().parents[2]

PLAIN = Renderer(people={"U0PRIYA": "Priya"}, channels={"C0PRIVACY": "privacy"})


@pytest.mark.parametrize(("mrkdwn", "shown"), [
    ("*Status:* :hourglass: awaiting approval", "Status: ⌛ awaiting approval"),
    (":tada: done _(simulation)_. `/dsr show DSR-000001` has every step.",
     "🎉 done (simulation). `/dsr show DSR-000001` has every step."),
    ("*Requested by:* <@U0PRIYA> in <#C0PRIVACY>", "Requested by: @Priya in #privacy"),
    ("<@U0OTHER> and <@U0NAMED|ana> in <#C0ELSE|general>", "@U0OTHER and @ana in #general"),
    ("*<@U0PRIYA>*", "@Priya"),
    ("<!here> <!subteam^S0DPO|@dpo> <!date^1700000000^{date}|14 Nov 2023>",
     "@here @dpo 14 Nov 2023"),
    ("see <https://example.com/a_b|the guide> or <https://example.com>",
     "see the guide (https://example.com/a_b) or https://example.com"),
    ("<mailto:dpo@example.com|dpo@example.com>", "dpo@example.com"),
    ("R&amp;D wrote &lt;@U0PRIYA&gt; &amp;lt;", "R&D wrote <@U0PRIYA> &lt;"),  # escaped: no mention
    ("`*not bold* :tada:` and ~gone~", "`*not bold* :tada:` and gone"),
    ("zendesk.export_users done; 2*3*4; a * b; `h***@e******.com`",
     "zendesk.export_users done; 2*3*4; a * b; `h***@e******.com`"),
    (":unknown_code: stays", ":unknown_code: stays"),
    ("&gt; quoted\nnot", "│ quoted\nnot"),
])
def test_mrkdwn_as_plain_text(mrkdwn: str, shown: str) -> None:
    assert PLAIN.text(mrkdwn) == shown


def test_ansi_styles_only_when_asked() -> None:
    styled = Renderer(ansi=True).text("*Status:* _new_ `code` ~old~")
    assert styled == ("\x1b[1mStatus:\x1b[22m \x1b[3mnew\x1b[23m \x1b[36mcode\x1b[39m "
                      "\x1b[9mold\x1b[29m")


def test_blocks_of_a_message_and_a_modal() -> None:
    def mrkdwn(text: str) -> dict:
        return {"type": "mrkdwn", "text": text}

    def plain(text: str) -> dict:
        return {"type": "plain_text", "text": text, "emoji": True}

    blocks = [
        {"type": "header", "text": plain("DSR-000001: Access :mag:")},
        {"type": "section", "text": mrkdwn("*Status:* :hourglass: awaiting approval"),
         "fields": [mrkdwn("*Due:* 2 Jan"), plain("GDPR")],
         "accessory": {"type": "overflow", "options": []}},
        {"type": "divider"},
        {"type": "context", "elements": [{"type": "image", "image_url": "x", "alt_text": "x"},
                                         mrkdwn("by <@U0PRIYA>"), plain("today")]},
        {"type": "actions", "elements": [
            {"type": "button", "text": plain("Approve"), "action_id": "approve"},
            {"type": "button", "text": plain("Reject"), "action_id": "reject"},
            {"type": "static_select", "placeholder": plain("Reason"), "action_id": "why"}]},
        {"type": "input", "label": plain("Zendesk Support"), "optional": True,
         "element": {"type": "checkboxes", "initial_options": [{"value": "2"}], "options": [
             {"text": mrkdwn("*Helena*"), "value": "1", "description": mrkdwn("end-user")},
             {"text": plain("Other"), "value": "2"}]}},
        {"type": "input", "label": plain("Type"),
         "element": {"type": "radio_buttons", "initial_option": {"value": "a"}, "options": [
             {"text": plain("Access"), "value": "a"}, {"text": plain("Erasure"), "value": "e"}]}},
        {"type": "input", "label": plain("Why"),
         "element": {"type": "plain_text_input", "action_id": "note"}},
        {"type": "rich_text", "elements": []},
    ]
    assert PLAIN.blocks(blocks).split("\n") == [
        "DSR-000001: Access 🔍",
        "Status: ⌛ awaiting approval",
        "Due: 2 Jan",
        "GDPR",
        "[…]",
        RULE,
        "by @Priya  today",
        "[Approve] [Reject] [Reason ▾]",
        "Zendesk Support (optional):",
        "  [ ] Helena (end-user)",
        "  [x] Other",
        "Type:",
        "  (•) Access",
        "  ( ) Erasure",
        "Why: [____________________]",
        "[rich_text block]",
    ]


def test_every_shortcode_the_app_writes_has_an_emoji() -> None:
    # A shortcode stands between a quote or a space and another: not "gdpr:request:add".
    shortcode = re.compile(r"""(?<=["' ]):([a-z0-9_+-]+):(?=[ "'])""")
    written = {name for package in ("bot", "handlers", "services")
               for path in (ROOT / package).rglob("*.py")
               for name in shortcode.findall(path.read_text("utf-8"))}
    assert written, "the pattern finds the app's shortcodes"
    assert sorted(written - EMOJI.keys()) == []
