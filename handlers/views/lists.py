"""Lists of requests, a page at a time: in a `/dsr list` reply, in a modal opened from the Home
tab, and the Home tab's groups. Each page says which rows of how many it shows, and its buttons
carry the filter (as the words of `/dsr list`) and the offset, so a click shows the next page."""

from __future__ import annotations

from datetime import date

from slack_sdk.models.blocks import ActionsBlock, Block, ButtonElement
from slack_sdk.models.views import View

from handlers.ids import Action
from handlers.views.common import context, line_sections, one_line, section
from services.request_lists import RequestPage

PAGE_SIZE = 20  # rows of a list page: 2 sections, well inside a message's 50 blocks
HOME_ROWS = 5  # rows of each Home group; "N more" opens the whole list


def list_value(words: str, offset: int) -> str:
    """A button's value: the offset, then the filter as `/dsr list` words (at most 2,000
    characters, Slack's limit for a value: the words are kept well under it)."""
    return f"{offset}|{words}"


def read_list_value(value: str) -> tuple[int, str]:
    offset, _, words = value.partition("|")
    return (int(offset) if offset.isascii() and offset.isdigit() and len(offset) < 10 else 0,
            words)


def list_blocks(page: RequestPage, today: date, title: str, words: str, *,
                csv: bool = True) -> list[Block]:
    """A page of the list `words` selects: "title: rows 21–40 of 204", the rows, and Previous /
    Next / CSV buttons as they apply."""
    if not page.total:
        return [section(f"*{title}*: none.")]
    first, last = page.offset + 1, page.offset + len(page.requests)
    blocks: list[Block] = [
        section(f"*{title}*: {first:,}–{last:,} of {page.total:,}" if page.total > 1
                else f"*{title}*: 1 request"),
        *line_sections([one_line(r, today) for r in page.requests]),
    ]
    buttons = []
    if page.offset > 0:
        buttons.append(ButtonElement(text="Previous", action_id=f"{Action.LIST_PAGE}:prev",
                                     value=list_value(words, max(page.offset - PAGE_SIZE, 0))))
    if last < page.total:
        buttons.append(ButtonElement(text="Next", action_id=f"{Action.LIST_PAGE}:next",
                                     value=list_value(words, last), style="primary"))
    if csv:
        buttons.append(ButtonElement(text="CSV by DM", action_id=Action.LIST_CSV,
                                     value=list_value(words, 0)))
    if buttons:
        blocks.append(ActionsBlock(block_id="list_pages", elements=buttons))
    if page.total > PAGE_SIZE:
        blocks.append(context(f"Page {page.offset // PAGE_SIZE + 1} of "
                              f"{(page.total + PAGE_SIZE - 1) // PAGE_SIZE}. `/dsr list {words} csv`"
                              " sends all of them as a CSV file."))
    return blocks


def list_modal(page: RequestPage, today: date, title: str, words: str) -> View:
    return View(type="modal", title="Requests", close="Close",
                private_metadata=title[:100], blocks=list_blocks(page, today, title, words))


def home_group(title: str, page: RequestPage, today: date, words: str) -> list[Block]:
    """A Home group: its count, its first HOME_ROWS rows, and "N more" opening the whole list."""
    if not page.total:
        return [section(f"*{title}*: none")]
    blocks: list[Block] = [section(f"*{title}* ({page.total:,})\n"
                                   + "\n".join(one_line(r, today) for r in page.requests))]
    if page.total > len(page.requests):
        blocks.append(ActionsBlock(elements=[ButtonElement(
            text=f"{page.total - len(page.requests):,} more", action_id=f"{Action.LIST_OPEN}:{words}"[:255],
            value=list_value(words, 0))]))
    return blocks
