"""Slack's mrkdwn and Block Kit as terminal text, for the offline demo's transcript.

    render = Renderer(people={"U0PRIYA": "Priya"}, channels={"C0PRIVACY": "privacy"}, ansi=False)
    render.text("*Status:* :hourglass: awaiting <@U0PRIYA>")   # "Status: ⌛ awaiting @Priya"
    render.blocks(message["blocks"])                           # header, sections, [Approve] ...

With `ansi` (stdout is a terminal) *bold*, _italic_, ~strike~ and `code` become ANSI styles;
without it they are plain words, except that `code` keeps its backticks: they are how a reader
tells a command apart from the sentence around it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# The shortcodes the app writes (tests/bot/test_terminal.py finds them in the source); others
# stay as written.
EMOJI = {
    "alarm_clock": "⏰", "arrows_counterclockwise": "🔄", "black_large_square": "⬛",
    "bookmark_tabs": "📑", "bust_in_silhouette": "👤", "calendar": "📆", "clipboard": "📋",
    "electric_plug": "🔌", "file_cabinet": "🗄️", "gear": "⚙️",
    "heavy_check_mark": "✔️", "heavy_minus_sign": "➖", "hourglass": "⌛",
    "hourglass_flowing_sand": "⏳", "incoming_envelope": "📨", "information_source": "ℹ️",
    "mag": "🔍", "mag_right": "🔎", "no_entry": "⛔", "package": "📦", "page_facing_up": "📄",
    "rotating_light": "🚨", "satellite_antenna": "📡", "tada": "🎉", "test_tube": "🧪",
    "warning": "⚠️", "wastebasket": "🗑️",
    "white_check_mark": "✅", "white_circle": "⚪", "x": "❌",
}
# (opening, closing) escape codes; the closings undo only their own style, so styles nest.
STYLES = {"*": ("\x1b[1m", "\x1b[22m"), "_": ("\x1b[3m", "\x1b[23m"),
          "~": ("\x1b[9m", "\x1b[29m"), "`": ("\x1b[36m", "\x1b[39m")}
RULE = "─" * 40

_CODE = re.compile(r"```\n?(.+?)\n?```|`([^`\n]+)`", re.DOTALL)
_ANGLE = re.compile(r"<([^<>\n]+)>")
_SHORTCODE = re.compile(r":([a-z0-9_+-]+):")
# Slack's emphasis: the marks hug the words and sit at word boundaries (so snake_case stays).
_EMPHASIS = {mark: re.compile(rf"(?<![\w{mark}]){re.escape(mark)}(?=\S)([^{mark}\n]+?)(?<=\S)"
                              rf"{re.escape(mark)}(?![\w{mark}])")
             for mark in "*_~"}
_SLOT = re.compile("\x00(\\d+)\x00")  # a piece already rendered, put back at the end


def unescape(text: str) -> str:
    """Slack's three escapes back to characters (&amp; last, so "&amp;lt;" stays "&lt;")."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


class Renderer:
    def __init__(self, *, people: Mapping[str, str] | None = None,
                 channels: Mapping[str, str] | None = None, ansi: bool = False) -> None:
        self.people = dict(people or {})
        self.channels = dict(channels or {})
        self.ansi = ansi

    def style(self, mark: str, text: str) -> str:
        if self.ansi:
            on, off = STYLES[mark]
            return f"{on}{text}{off}"
        return f"`{text}`" if mark == "`" else text

    # -- mrkdwn -------------------------------------------------------------------------------

    def text(self, mrkdwn: str) -> str:
        """One mrkdwn string as terminal text."""
        done: list[str] = []

        def keep(rendered: str) -> str:
            done.append(rendered)
            return f"\x00{len(done) - 1}\x00"

        # Code and <...> first: nothing inside them is formatting, and emphasis may wrap them.
        text = _CODE.sub(lambda m: keep(self._code(m)), mrkdwn)
        text = _ANGLE.sub(lambda m: keep(self._angle(m.group(1))), text)
        text = self.emoji(text)
        for mark, pattern in _EMPHASIS.items():
            text = pattern.sub(lambda m, mark=mark: self.style(mark, m.group(1)), text)
        text = "\n".join("│ " + line[5:] if line.startswith("&gt; ") else line
                         for line in text.split("\n"))
        return _SLOT.sub(lambda m: done[int(m.group(1))], unescape(text))

    def _code(self, match: re.Match[str]) -> str:
        if match.group(1) is not None:  # a ``` block: its lines as they are
            return unescape(match.group(1))
        return self.style("`", unescape(match.group(2)))

    def _angle(self, inner: str) -> str:
        """<@U…>, <#C…>, <!here>, <!subteam^…>, <!date^…|fallback>, <url|label> and <url>."""
        target, _, label = inner.partition("|")
        label = unescape(label)
        if target.startswith("@"):
            return "@" + self.people.get(target[1:], label or target[1:])
        if target.startswith("#"):
            return "#" + self.channels.get(target[1:], label or target[1:])
        if target.startswith("!"):
            special = target[1:].split("^")[0]
            if special in ("here", "channel", "everyone"):
                return "@" + special
            return label or "@" + special  # a user group's handle, a date's fallback
        url = unescape(target)
        if not label or label == url.removeprefix("mailto:"):
            return url.removeprefix("mailto:")
        return f"{label} ({url})"

    # -- Block Kit ----------------------------------------------------------------------------

    def blocks(self, blocks: list[dict[str, Any]]) -> str:
        """A message's or a view's blocks, one after the other."""
        return "\n".join(part for b in blocks if (part := self.block(b)))

    def block(self, block: dict[str, Any]) -> str:
        kind = block.get("type")
        if kind == "header":
            return self.style("*", self.text_object(block["text"]))
        if kind == "divider":
            return RULE
        if kind == "section":
            lines = [self.text_object(block["text"])] if block.get("text") else []
            lines += [self.text_object(field) for field in block.get("fields") or []]
            if accessory := block.get("accessory"):
                lines.append(self.element(accessory))
            return "\n".join(line for line in lines if line)
        if kind == "context":
            return "  ".join(part for e in block.get("elements") or [] if (part := self.element(e)))
        if kind == "actions":
            return " ".join(self.element(e) for e in block.get("elements") or [])
        if kind == "input":
            return self._input(block)
        if kind == "image":
            return f"[image: {block.get('alt_text', '')}]"
        return f"[{kind} block]"  # not one the app sends: say so rather than drop it silently

    def text_object(self, obj: dict[str, Any]) -> str:
        if obj.get("type") == "mrkdwn":
            return self.text(obj["text"])
        return self.emoji(obj["text"])  # plain_text: only shortcodes are converted

    @staticmethod
    def emoji(text: str) -> str:
        return _SHORTCODE.sub(lambda m: EMOJI.get(m.group(1), m.group(0)), text)

    def element(self, element: dict[str, Any]) -> str:
        """An element of a context, actions or input block, or a section's accessory."""
        kind = element.get("type")
        if kind in ("mrkdwn", "plain_text"):
            return self.text_object(element)
        if kind == "image":
            return ""  # a picture beside context text: the text says it
        if kind == "button":
            return f"[{self.text_object(element['text'])}]"
        if kind == "overflow":
            return "[…]"
        if kind == "plain_text_input":
            return "[" + element.get("initial_value", "").ljust(20, "_") + "]"
        if kind in ("checkboxes", "radio_buttons"):
            ticked = [o["value"] for o in element.get("initial_options") or []]
            if chosen := element.get("initial_option"):
                ticked.append(chosen["value"])
            boxes = ("[x]", "[ ]") if kind == "checkboxes" else ("(•)", "( )")
            return "\n".join(f"{boxes[o['value'] not in ticked]} {self._option(o)}"
                             for o in element.get("options") or [])
        if placeholder := element.get("placeholder"):  # selects, pickers
            return f"[{placeholder['text']} ▾]"
        return f"[{kind}]"

    def _option(self, option: dict[str, Any]) -> str:
        text = self.text_object(option["text"])
        if description := option.get("description"):
            text += f" ({self.text_object(description)})"
        return text

    def _input(self, block: dict[str, Any]) -> str:
        label = self.text_object(block["label"])
        if block.get("optional"):
            label += " (optional)"
        shown = self.element(block["element"])
        if block["element"].get("type") in ("checkboxes", "radio_buttons"):  # one option a line
            return label + ":\n" + "\n".join("  " + line for line in shown.split("\n"))
        return f"{label}: {shown}"
