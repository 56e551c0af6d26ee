"""State and rules of the Slack Web API stand-in (`bot.slack_standin`), without HTTP.

`SlackState` holds the workspace (messages, ephemeral posts, views, DMs, files) and answers one
Web API method at a time with the body Slack sends; an error is raised as `SlackError`. It is not
thread-safe on its own: `SlackStandIn` calls it under one lock. Block Kit payloads are checked
twice: first the limits Slack states (answered in Slack's words, with its json-pointer), then
slack_sdk's own models (`Block.parse(...).validate_json()`, `View(...)`) for everything else.

Where Slack's documents are silent, this stand-in answers as follows:
- a `thread_ts` that names no message still posts (Slack answers ok and shows the reply nowhere);
  a reply's ts as `thread_ts` files the reply under that reply's parent;
- any C/G channel exists and the bot is in it; a D channel needs no conversations.open to post
  to (conversations.info knows only opened ones); any U/W user exists, with a generated profile;
- blocks without `block_id` get a random one, as on Slack; Slack's other rewriting of blocks
  (`emoji: true` on plain_text, `verbatim` on mrkdwn) is not copied;
- limit messages use Slack's wording ("must be less than 3001 characters", "no more than 50
  items allowed"); other refusals (an unknown block type, a missing `submit` with input blocks,
  slack_sdk's findings) use our own wording with the json-pointer of the offending part;
- `text` over 40,000 characters is refused with msg_too_long;
- modals never close (the stand-in does not see the app's answers to view_submission), so a
  push goes onto the user's last opened modal; views.push with none open answers not_found;
- the upload_url answers `OK - <bytes>` as text; completing a file whose bytes never arrived, or
  completing it twice, answers file_not_found;
- a response_url answers `{"ok": true}`; refusals are JSON too: 400 invalid_payload (not a JSON
  object), no_text, invalid_blocks; 404 invalid_url, expired_url (after 30 minutes), used_url
  (after 5 posts).
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import random
import re
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

MESSAGE_BLOCKS, VIEW_BLOCKS = 50, 100
MESSAGE_TEXT_LIMIT = 40_000  # longer `text` is refused with msg_too_long (Slack truncates past 4,000)
VIEW_BYTES = 250_000
VIEW_STACK = 3  # views.push stacks at most 3 views
TRIGGER_SECONDS = 3.0
RESPONSE_URL_USES, RESPONSE_URL_SECONDS = 5, 30 * 60
TRIGGER_FORMAT = re.compile(r"^\d+\.\d+\.[0-9a-f]+$")
USER_PREFIXES, CHANNEL_PREFIXES = ("U", "W"), ("C", "D", "G")
PROFILE_KEYS = {"email", "display_name", "title", "phone", "first_name", "last_name", "status_text"}
FILETYPES = {".txt": ("text", "Plain Text"), ".csv": ("csv", "CSV"), ".json": ("json", "JSON"),
             ".zip": ("zip", "Zip"), ".pdf": ("pdf", "PDF"), ".gz": ("gzip", "GZip"),
             ".html": ("html", "HTML"), ".xml": ("xml", "XML")}


class SlackError(Exception):
    """A Web API error: `{"ok": false, "error": error, ...}` with `messages` in response_metadata."""

    def __init__(self, error: str, messages: list[str] | None = None, *, status: int = 200,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(error)
        self.error, self.messages, self.status, self.headers = error, messages or [], status, headers or {}

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": False, "error": self.error}
        if self.messages:
            if self.error == "invalid_blocks":
                body["errors"] = self.messages
            body["response_metadata"] = {"messages": [f"[ERROR] {m}" for m in self.messages]}
        return body


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    at: float
    error: str | None = None  # None when Slack answered ok


# ---------------------------------------------------------------------------------------------
# Block Kit checks. Each returns Slack's messages ("must be less than 3001 characters
# [json-pointer:/blocks/0/text/text]"); an empty list means the payload passes.


def _too_long(value: Any, limit: int, at: str) -> list[str]:
    if isinstance(value, str) and len(value) > limit:
        return [f"must be less than {limit + 1} characters [json-pointer:{at}]"]
    return []


def _text(obj: Any, at: str, limit: int, *, plain: bool = False, required: bool = True) -> list[str]:
    if obj is None:
        return [f"missing required field: {at.rsplit('/', 1)[-1]} [json-pointer:{at.rsplit('/', 1)[0]}]"] \
            if required else []
    allowed = ("plain_text",) if plain else ("plain_text", "mrkdwn")
    if not isinstance(obj, dict) or obj.get("type") not in allowed or not isinstance(obj.get("text"), str):
        return [f"failed to match all allowed schemas [json-pointer:{at}]"]
    if not obj["text"]:
        return [f"must be more than 0 characters [json-pointer:{at}/text]"]
    return _too_long(obj["text"], limit, f"{at}/text")


def _items(value: Any, at: str, most: int, least: int = 0) -> list[str]:
    if not isinstance(value, list):
        return [f"must be an array [json-pointer:{at}]"]
    if len(value) > most:
        return [f"no more than {most} items allowed [json-pointer:{at}]"]
    if len(value) < least:
        return [f"must provide at least {least} items [json-pointer:{at}]"]
    return []


def _each(items: Any, at: str, check: Callable[[Any, str], list[str]]) -> list[str]:
    return [p for i, item in enumerate(items or []) for p in check(item, f"{at}/{i}")]


def _options(options: Any, at: str) -> list[str]:
    problems = _items(options, at, 100)
    for i, option in enumerate(options if not problems else []):
        if not isinstance(option, dict):
            problems.append(f"failed to match all allowed schemas [json-pointer:{at}/{i}]")
            continue
        problems += _text(option.get("text"), f"{at}/{i}/text", 75)
        problems += _too_long(option.get("value"), 150, f"{at}/{i}/value")
    return problems


def _element(el: Any, at: str) -> list[str]:
    if not isinstance(el, dict) or not isinstance(el.get("type"), str):
        return [f"failed to match all allowed schemas [json-pointer:{at}]"]
    problems = _too_long(el.get("action_id"), 255, f"{at}/action_id")
    kind = el["type"]
    if kind == "button":
        problems += _text(el.get("text"), f"{at}/text", 75, plain=True)
        problems += _too_long(el.get("value"), 2000, f"{at}/value")
        problems += _too_long(el.get("url"), 3000, f"{at}/url")
    if "placeholder" in el:
        problems += _text(el["placeholder"], f"{at}/placeholder", 150, plain=True)
    if kind in ("static_select", "multi_static_select", "radio_buttons", "checkboxes") and "options" in el:
        problems += _options(el["options"], f"{at}/options")
    if kind == "plain_text_input":
        for key in ("max_length", "min_length"):
            if isinstance(el.get(key), int) and el[key] > 3000:
                problems.append(f"must be less than or equal to 3000 [json-pointer:{at}/{key}]")
        problems += _too_long(el.get("initial_value"), 3000, f"{at}/initial_value")
    return problems


def _block_rules(block: dict[str, Any], at: str) -> list[str]:
    kind = block["type"]
    problems = _too_long(block.get("block_id"), 255, f"{at}/block_id")
    if kind == "section":
        if block.get("text") is None and block.get("fields") is None:
            problems.append(f"must provide either text or fields [json-pointer:{at}]")
        if block.get("text") is not None:
            problems += _text(block["text"], f"{at}/text", 3000)
        if block.get("fields") is not None:
            fields = block["fields"]
            found = _items(fields, f"{at}/fields", 10, 1)
            problems += found or _each(fields, f"{at}/fields", lambda f, where: _text(f, where, 2000))
        if block.get("accessory") is not None:
            problems += _element(block["accessory"], f"{at}/accessory")
    elif kind == "header":
        problems += _text(block.get("text"), f"{at}/text", 150, plain=True)
    elif kind == "context":
        problems += _items(block.get("elements"), f"{at}/elements", 10, 1)
    elif kind == "actions":
        elements = block.get("elements")
        found = _items(elements, f"{at}/elements", 25, 1)
        problems += found or _each(elements, f"{at}/elements", _element)
    elif kind == "input":
        problems += _text(block.get("label"), f"{at}/label", 2000, plain=True)
        problems += _text(block.get("hint"), f"{at}/hint", 2000, plain=True, required=False)
        problems += _element(block.get("element"), f"{at}/element")
    return problems


def _sdk_check(block: dict[str, Any], at: str) -> list[str]:
    """What slack_sdk's model of the block refuses (unknown type, missing parts, its limits)."""
    try:
        parsed = Block.parse(dict(block))
        if parsed is None:
            return [f"unsupported type: {block['type']} [json-pointer:{at}/type]"]
        parsed.validate_json()
        parsed.to_dict()
    except SlackObjectFormationError as e:
        return [f"{e} [json-pointer:{at}]"]
    except (TypeError, ValueError, KeyError, AttributeError):
        return [f"failed to match all allowed schemas [json-pointer:{at}]"]
    return []


def block_problems(blocks: Any, at: str, most: int) -> list[str]:
    """Slack's complaints about a `blocks` array found at json-pointer `at`."""
    problems = _items(blocks, at, most)
    if problems:
        return problems
    seen: set[str] = set()
    for i, block in enumerate(blocks):
        where = f"{at}/{i}"
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            problems.append(f"failed to match all allowed schemas [json-pointer:{where}]")
            continue
        block_id = block.get("block_id")
        if block_id is not None:
            if block_id in seen:
                problems.append(f"duplicate block_id: {block_id} [json-pointer:{where}/block_id]")
            seen.add(block_id)
        problems += _block_rules(block, where) or _sdk_check(block, where)
    return problems


def view_problems(view: dict[str, Any], kinds: tuple[str, ...]) -> list[str]:
    """Slack's complaints about a `view` argument (json-pointers under /view)."""
    if view.get("type") not in kinds:
        return [f"must be one of: {', '.join(kinds)} [json-pointer:/view/type]"]
    problems: list[str] = []
    if view["type"] == "modal":
        problems += _text(view.get("title"), "/view/title", 24, plain=True)
        for key in ("submit", "close"):
            problems += _text(view.get(key), f"/view/{key}", 24, plain=True, required=False)
        blocks = view.get("blocks")
        if view.get("submit") is None and isinstance(blocks, list) and any(
                isinstance(b, dict) and b.get("type") == "input" for b in blocks):
            problems.append("must provide submit when blocks contain an input block [json-pointer:/view]")
    problems += _too_long(view.get("private_metadata"), 3000, "/view/private_metadata")
    problems += _too_long(view.get("callback_id"), 255, "/view/callback_id")
    problems += _too_long(view.get("external_id"), 255, "/view/external_id")
    problems += block_problems(view.get("blocks"), "/view/blocks", VIEW_BLOCKS)
    if not problems:
        try:
            View(**view).validate_json()
        except SlackObjectFormationError as e:
            problems.append(f"{e} [json-pointer:/view]")
        except (TypeError, ValueError, KeyError, AttributeError):
            problems.append("failed to match all allowed schemas [json-pointer:/view]")
    return problems


# ---------------------------------------------------------------------------------------------
# Arguments arrive as form fields (strings) or JSON (typed); these read both the same way.


def arg_json(args: dict[str, Any], key: str, error: str) -> Any:
    value = args.get(key)
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise SlackError(error, [f"{key} is not valid JSON [json-pointer:/{key}]"]) from None
    return value


def arg_bool(args: dict[str, Any], key: str) -> bool:
    value = args.get(key)
    return value is True or (isinstance(value, str) and value.lower() in ("1", "true"))


def arg_list(args: dict[str, Any], key: str) -> list[str]:
    value = args.get(key)
    if isinstance(value, list):
        return [str(v) for v in value]
    return [v.strip() for v in str(value).split(",") if v.strip()] if value else []


def required(args: dict[str, Any], key: str) -> Any:
    if args.get(key) in (None, ""):
        raise SlackError("invalid_arguments", [f"missing required field: {key}"])
    return args[key]


def dm_id(users: tuple[str, ...]) -> str:
    """The same conversation id for the same set of users, run after run."""
    digest = hashlib.sha1(",".join(sorted(users)).encode()).hexdigest().upper()
    return ("D" if len(users) == 1 else "G") + "0" + digest[:9]


@dataclass
class ViewRecord:
    view: dict[str, Any]  # as Slack returns it
    user: str | None
    stack: list[str] = field(default_factory=list)  # root views only: the ids pushed on it


@dataclass
class Trigger:
    issued: float
    user: str | None
    used: bool = False


@dataclass
class ResponseUrl:
    channel: str | None
    user: str | None
    message_ts: str | None
    created: float
    uses: int = 0


@dataclass
class Upload:
    file_id: str
    name: str
    length: int
    alt_txt: str | None
    key: str
    content: bytes | None = None
    file: dict[str, Any] | None = None  # the file object, once completed
    shared: dict[str, Any] = field(default_factory=dict)


class SlackState:
    """One workspace with one bot user; each public method answers the Web API method it names."""

    def __init__(self, *, team_id: str, bot_user_id: str, users: dict[str, dict[str, Any]],
                 usergroups: dict[str, list[str]], channels: dict[str, dict[str, Any]],
                 clock: Callable[[], float], seed: int = 0) -> None:
        self.team_id, self.bot_user_id, self.clock = team_id, bot_user_id, clock
        self.bot_id, self.app_id = "B" + bot_user_id[1:], "A0DSRDESK"
        self.team_name, self.domain = "DSR Desk Stand-in", "dsr-desk-standin"
        self.users, self.usergroups, self.channels = users, usergroups, channels
        self.random = random.Random(seed)
        self.messages: dict[str, list[dict[str, Any]]] = {}
        self.ephemerals: list[dict[str, Any]] = []
        self.views: dict[str, ViewRecord] = {}
        self.homes: dict[str, str] = {}  # user -> view id of their Home tab
        self.triggers: dict[str, Trigger] = {}
        self.response_urls: dict[str, ResponseUrl] = {}
        self.conversations: dict[str, dict[str, Any]] = {}  # opened DMs and group DMs
        self.uploads: dict[str, Upload] = {}
        self._last_us = 0
        self._serial = 0

    # -- ids --------------------------------------------------------------------------------

    def next_ts(self) -> str:
        self._last_us = max(self._last_us + 1, int(self.clock() * 1_000_000))
        return f"{self._last_us // 1_000_000}.{self._last_us % 1_000_000:06d}"

    def serial(self, prefix: str) -> str:
        self._serial += 1
        return f"{prefix}0{self._serial:08X}"

    def token(self, n: int = 24) -> str:
        return "".join(self.random.choice(string.ascii_letters + string.digits) for _ in range(n))

    def view_hash(self) -> str:
        return f"{int(self.clock())}.{self.random.getrandbits(32):08x}"

    def new_trigger(self, user: str | None) -> str:
        trigger_id = f"{int(self.clock())}.{self.random.randrange(10**9)}.{self.random.getrandbits(128):032x}"
        self.triggers[trigger_id] = Trigger(self.clock(), user)
        return trigger_id

    def new_response_url(self, base_url: str, channel: str | None, user: str | None,
                         message_ts: str | None) -> str:
        path = f"actions/{self.team_id}/{self.random.randrange(10**12)}/{self.token()}"
        self.response_urls[path] = ResponseUrl(channel, user, message_ts, self.clock())
        return f"{base_url.rstrip('/')}/{path}"

    # -- lookups ----------------------------------------------------------------------------

    def channel(self, value: Any, *, users_too: bool = False) -> str:
        """A channel id from `channel`; a user id means the app's DM with that user."""
        channel = str(value or "")
        if users_too and channel.startswith(USER_PREFIXES):
            return self._open((channel,))[0]
        if not channel.startswith(CHANNEL_PREFIXES):
            raise SlackError("channel_not_found")
        return channel

    def find(self, channel: str, ts: str) -> dict[str, Any] | None:
        return next((m for m in self.messages.get(channel, []) if m["ts"] == ts), None)

    def user(self, user_id: str) -> dict[str, Any]:
        given = self.users.get(user_id)
        if given is None and not user_id.startswith(USER_PREFIXES):
            raise SlackError("user_not_found")
        given = given or {}
        is_bot = user_id == self.bot_user_id
        name = given.get("real_name") or ("DSR Desk" if is_bot else f"User {user_id}")
        profile: dict[str, Any] = {
            "real_name": name, "real_name_normalized": name, "display_name": given.get("name", ""),
            "display_name_normalized": given.get("name", ""), "team": self.team_id,
            "image_48": f"https://secure.gravatar.com/avatar/{user_id.lower()}.jpg?s=48"}
        if not is_bot:
            profile["email"] = f"{user_id.lower()}@example.com"
        else:
            profile["bot_id"] = self.bot_id
        profile.update({k: v for k, v in given.items() if k in PROFILE_KEYS})
        profile.update(given.get("profile", {}))
        user: dict[str, Any] = {
            "id": user_id, "team_id": self.team_id, "name": given.get("name", user_id.lower()),
            "deleted": False, "color": "9f69e7", "real_name": name, "tz": "Europe/London",
            "tz_label": "Greenwich Mean Time", "tz_offset": 0, "profile": profile,
            "is_admin": False, "is_owner": False, "is_primary_owner": False, "is_restricted": False,
            "is_ultra_restricted": False, "is_bot": is_bot, "is_app_user": False, "updated": 1_700_000_000,
            "is_email_confirmed": not is_bot, "who_can_share_contact_card": "EVERYONE"}
        user.update({k: v for k, v in given.items() if k not in PROFILE_KEYS and k != "profile"})
        return user

    def _open(self, users: tuple[str, ...]) -> tuple[str, bool]:
        channel = dm_id(users)
        known = channel in self.conversations
        if not known:
            base = {"id": channel, "created": int(self.clock()), "is_org_shared": False,
                    "last_read": "0000000000.000000", "latest": None, "unread_count": 0,
                    "unread_count_display": 0, "is_open": True, "priority": 0}
            if len(users) == 1:
                base |= {"is_im": True, "user": users[0]}
            else:
                base |= {"is_mpim": True, "is_im": False, "is_private": True, "is_group": False,
                         "name": "mpdm-" + "--".join(u.lower() for u in users) + "-1",
                         "members": [self.bot_user_id, *users]}
            self.conversations[channel] = base
        return channel, known

    # -- messages ---------------------------------------------------------------------------

    def _blocks(self, args: dict[str, Any]) -> list[dict[str, Any]] | None:
        blocks = arg_json(args, "blocks", "invalid_blocks_format")
        if blocks is None:
            return None
        problems = block_problems(blocks, "/blocks", MESSAGE_BLOCKS)
        if problems:
            raise SlackError("invalid_blocks", problems)
        return self._with_block_ids(blocks)

    def _with_block_ids(self, blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Slack gives every block without a block_id a short random one."""
        return [b if b.get("block_id") else {**b, "block_id": self.token(5)} for b in blocks]

    def _message(self, text: str, blocks: list[dict[str, Any]] | None, ts: str) -> dict[str, Any]:
        message: dict[str, Any] = {
            "user": self.bot_user_id, "type": "message", "ts": ts, "bot_id": self.bot_id,
            "app_id": self.app_id, "text": text, "team": self.team_id,
            "bot_profile": {"id": self.bot_id, "app_id": self.app_id, "name": "DSR Desk",
                            "deleted": False, "team_id": self.team_id, "updated": 1_700_000_000}}
        if blocks is not None:
            message["blocks"] = blocks
        return message

    def post(self, channel: str, message: dict[str, Any], thread_ts: str | None) -> dict[str, Any]:
        """Store `message` in `channel`, as a reply when `thread_ts` is given."""
        if thread_ts:
            parent = self.find(channel, thread_ts)
            if parent is not None and parent.get("thread_ts") not in (None, parent["ts"]):
                parent = self.find(channel, parent["thread_ts"])  # a reply's ts: its thread
            if parent is not None:
                thread_ts = parent["ts"]
                replies = parent.setdefault("reply_users", [])
                if message["user"] not in replies:
                    replies.append(message["user"])
                parent.update(thread_ts=parent["ts"], reply_count=parent.get("reply_count", 0) + 1,
                              reply_users_count=len(replies), latest_reply=message["ts"])
                message["parent_user_id"] = parent["user"]
            message["thread_ts"] = thread_ts
        self.messages.setdefault(channel, []).append(message)
        return message

    def auth_test(self, args: dict[str, Any], base: str) -> dict[str, Any]:
        return {"url": f"https://{self.domain}.slack.com/", "team": self.team_name, "user": "dsr_desk",
                "team_id": self.team_id, "user_id": self.bot_user_id, "bot_id": self.bot_id,
                "is_enterprise_install": False}

    def _text_or_blocks(self, args: dict[str, Any]) -> tuple[str, list[dict[str, Any]] | None]:
        text = args.get("text")
        text = "" if text is None else str(text)
        if len(text) > MESSAGE_TEXT_LIMIT:
            raise SlackError("msg_too_long")
        blocks = self._blocks(args)
        if not text and not blocks and not args.get("attachments"):
            raise SlackError("no_text")
        return text, blocks

    def chat_postMessage(self, args: dict[str, Any], base: str) -> dict[str, Any]:
        channel = self.channel(args.get("channel"), users_too=True)
        text, blocks = self._text_or_blocks(args)
        message = self._message(text, blocks, self.next_ts())
        if args.get("attachments"):
            message["attachments"] = arg_json(args, "attachments", "invalid_attachments")
        if args.get("metadata"):
            message["metadata"] = arg_json(args, "metadata", "invalid_metadata_format")
        self.post(channel, message, str(args["thread_ts"]) if args.get("thread_ts") else None)
        return {"channel": channel, "ts": message["ts"], "message": message}

    def chat_update(self, args: dict[str, Any], base: str) -> dict[str, Any]:
        channel = self.channel(args.get("channel"))
        message = self.find(channel, str(args.get("ts") or ""))
        if message is None:
            raise SlackError("message_not_found")
        if message["user"] != self.bot_user_id:
            raise SlackError("cant_update_message")
        text, blocks = self._text_or_blocks(args)
        if args.get("text") is not None:
            message["text"] = text
        if blocks is not None:  # without `blocks` Slack keeps the old ones; [] removes them
            message["blocks"] = blocks
        message["edited"] = {"user": self.bot_user_id, "ts": self.next_ts()}
        return {"channel": channel, "ts": message["ts"], "text": message["text"], "message": message}

    def chat_postEphemeral(self, args: dict[str, Any], base: str) -> dict[str, Any]:
        channel = self.channel(args.get("channel"), users_too=True)
        user = str(args.get("user") or "")
        if not user.startswith(USER_PREFIXES):
            raise SlackError("user_not_found")
        text, blocks = self._text_or_blocks(args)
        ts = self.next_ts()
        self.ephemerals.append({"via": "chat.postEphemeral", "channel": channel, "user": user, "ts": ts,
                                "thread_ts": args.get("thread_ts"), "text": text, "blocks": blocks or []})
        return {"message_ts": ts}

    def chat_getPermalink(self, args: dict[str, Any], base: str) -> dict[str, Any]:
        channel = self.channel(args.get("channel"))
        message = self.find(channel, str(args.get("message_ts") or ""))
        if message is None:
            raise SlackError("message_not_found")
        link = f"https://{self.domain}.slack.com/archives/{channel}/p{message['ts'].replace('.', '')}"
        if message.get("thread_ts") not in (None, message["ts"]):
            link += f"?thread_ts={message['thread_ts']}&cid={channel}"
        return {"channel": channel, "permalink": link}

    # -- conversations and users ------------------------------------------------------------

    def conversations_open(self, args: dict[str, Any], base: str) -> dict[str, Any]:
        if args.get("channel"):
            channel = str(args["channel"])
            if channel not in self.conversations:
                raise SlackError("channel_not_found")
            known = True
        else:
            users = tuple(u for u in dict.fromkeys(arg_list(args, "users")) if u != self.bot_user_id)
            if not users:
                raise SlackError("users_list_not_supplied")
            if len(users) > 8:
                raise SlackError("too_many_users")
            if any(not u.startswith(USER_PREFIXES) for u in users):
                raise SlackError("user_not_found")
            channel, known = self._open(users)
        body: dict[str, Any] = {}
        if known:
            body |= {"no_op": True, "already_open": True}
        full = arg_bool(args, "return_im")
        body["channel"] = dict(self.conversations[channel]) if full else {"id": channel}
        return body

    def conversations_info(self, args: dict[str, Any], base: str) -> dict[str, Any]:
        channel = self.channel(args.get("channel"))
        if channel in self.conversations:
            return {"channel": dict(self.conversations[channel])}
        if channel.startswith("D"):
            raise SlackError("channel_not_found")
        given = self.channels.get(channel, {})
        name = given.get("name", f"channel-{channel.lower()}")
        private = channel.startswith("G")
        info = {"id": channel, "name": name, "name_normalized": name, "is_channel": not private,
                "is_group": private, "is_im": False, "is_mpim": False, "is_private": private,
                "created": 1_700_000_000, "is_archived": False, "is_general": False, "is_shared": False,
                "is_org_shared": False, "is_member": True, "creator": self.bot_user_id,
                "topic": {"value": "", "creator": "", "last_set": 0},
                "purpose": {"value": "", "creator": "", "last_set": 0}}
        return {"channel": info | given}

    def users_info(self, args: dict[str, Any], base: str) -> dict[str, Any]:
        return {"user": self.user(str(args.get("user") or ""))}

    def usergroups_users_list(self, args: dict[str, Any], base: str) -> dict[str, Any]:
        group = str(args.get("usergroup") or "")
        if group not in self.usergroups:
            raise SlackError("no_such_subteam")
        return {"users": list(self.usergroups[group])}

    # -- views ------------------------------------------------------------------------------

    def _view_arg(self, args: dict[str, Any], kinds: tuple[str, ...],
                  replacing: ViewRecord | None = None) -> dict[str, Any]:
        view = arg_json(args, "view", "invalid_arguments")
        if not isinstance(view, dict):
            raise SlackError("invalid_arguments", ["missing required field: view"])
        if len(json.dumps(view).encode()) > VIEW_BYTES:
            raise SlackError("view_too_large")
        problems = view_problems(view, kinds)
        if problems:
            raise SlackError("invalid_arguments", problems)
        external_id = view.get("external_id")
        if external_id and any(r.view.get("external_id") == external_id and r is not replacing
                               for r in self.views.values()):
            raise SlackError("duplicate_external_id")
        return view

    def _exchange(self, args: dict[str, Any]) -> str | None:
        """Use up the trigger_id (or interactivity_pointer); the user it was issued for."""
        trigger_id = str(args.get("trigger_id") or args.get("interactivity_pointer") or "")
        if not trigger_id:
            raise SlackError("invalid_arguments", ["missing required field: trigger_id"])
        trigger = self.triggers.get(trigger_id)
        if trigger is None:
            if not TRIGGER_FORMAT.match(trigger_id):
                raise SlackError("invalid_trigger_id")
            trigger = self.triggers[trigger_id] = Trigger(self.clock(), None)
        if trigger.used:
            raise SlackError("exchanged_trigger_id")
        if self.clock() - trigger.issued > TRIGGER_SECONDS:
            raise SlackError("expired_trigger_id")
        trigger.used = True
        return trigger.user

    def _render(self, view: dict[str, Any], view_id: str, root: str, previous: str | None) -> dict[str, Any]:
        rendered = {
            "id": view_id, "team_id": self.team_id, "type": view["type"],
            "blocks": self._with_block_ids(view.get("blocks", [])),
            "private_metadata": view.get("private_metadata", ""), "callback_id": view.get("callback_id", ""),
            "state": {"values": {}}, "hash": self.view_hash(), "title": view.get("title"),
            "clear_on_close": bool(view.get("clear_on_close", False)),
            "notify_on_close": bool(view.get("notify_on_close", False)),
            "close": view.get("close"), "submit": view.get("submit"), "previous_view_id": previous,
            "root_view_id": root, "app_id": self.app_id, "external_id": view.get("external_id", ""),
            "app_installed_team_id": self.team_id, "bot_id": self.bot_id}
        if view["type"] == "modal":
            rendered["submit_disabled"] = bool(view.get("submit_disabled", False))
        return rendered

    def views_open(self, args: dict[str, Any], base: str) -> dict[str, Any]:
        view = self._view_arg(args, ("modal",))
        user = self._exchange(args)
        view_id = self.serial("V")
        record = ViewRecord(self._render(view, view_id, view_id, None), user, stack=[view_id])
        self.views[view_id] = record
        return {"view": record.view}

    def views_push(self, args: dict[str, Any], base: str) -> dict[str, Any]:
        view = self._view_arg(args, ("modal",))
        user = self._exchange(args)
        roots = [r for r in self.views.values() if r.stack and (user is None or r.user == user)]
        if not roots:
            raise SlackError("not_found")  # no modal is open to push onto
        root = roots[-1]
        if len(root.stack) >= VIEW_STACK:
            raise SlackError("push_limit_reached")
        view_id = self.serial("V")
        rendered = self._render(view, view_id, root.view["id"], root.stack[-1])
        self.views[view_id] = ViewRecord(rendered, root.user)
        root.stack.append(view_id)
        return {"view": rendered}

    def views_update(self, args: dict[str, Any], base: str) -> dict[str, Any]:
        view_id, external_id = args.get("view_id"), args.get("external_id")
        if not view_id and not external_id:
            raise SlackError("invalid_arguments", ["must provide view_id or external_id"])
        record = self.views.get(str(view_id)) if view_id else next(
            (r for r in self.views.values() if r.view.get("external_id") == external_id), None)
        if record is None:
            raise SlackError("not_found")
        old = record.view
        view = self._view_arg(args, (old["type"],), replacing=record)
        if args.get("hash") and args["hash"] != old["hash"]:
            raise SlackError("hash_conflict")
        view = {"external_id": old["external_id"], **view}  # the view replaces the old one whole
        record.view = self._render(view, old["id"], old["root_view_id"], old["previous_view_id"])
        return {"view": record.view}

    def views_publish(self, args: dict[str, Any], base: str) -> dict[str, Any]:
        user = str(required(args, "user_id"))
        if not user.startswith(USER_PREFIXES):
            raise SlackError("invalid_arguments", ["invalid user_id [json-pointer:/user_id]"])
        view = self._view_arg(args, ("home",))
        view_id = self.homes.get(user)
        if view_id is not None and args.get("hash") and args["hash"] != self.views[view_id].view["hash"]:
            raise SlackError("hash_conflict")
        view_id = view_id or self.serial("V")
        self.homes[user] = view_id
        self.views[view_id] = ViewRecord(self._render(view, view_id, view_id, None), user)
        return {"view": self.views[view_id].view}

    # -- files ------------------------------------------------------------------------------

    def files_getUploadURLExternal(self, args: dict[str, Any], base: str) -> dict[str, Any]:
        name = str(required(args, "filename"))
        try:
            length = int(required(args, "length"))
        except ValueError:
            raise SlackError("invalid_arguments", ["length must be an integer [json-pointer:/length]"]) \
                from None
        alt_txt = args.get("alt_txt")
        if isinstance(alt_txt, str) and len(alt_txt) > 1000:
            raise SlackError("alt_txt_too_large")
        upload = Upload(self.serial("F"), name, length, alt_txt, self.token(32))
        self.uploads[upload.key] = upload
        return {"upload_url": f"{base.rstrip('/')}/upload/v1/{upload.key}", "file_id": upload.file_id}

    def receive_upload(self, key: str, content: bytes) -> bool:
        """The POST to an upload_url; False if Slack would refuse it (unknown or finished)."""
        upload = self.uploads.get(key)
        if upload is None or upload.file is not None:
            return False
        upload.content = content
        return True

    def files_completeUploadExternal(self, args: dict[str, Any], base: str) -> dict[str, Any]:
        wanted = arg_json(args, "files", "invalid_arguments")
        if not isinstance(wanted, list) or not wanted or not all(isinstance(f, dict) and f.get("id")
                                                                 for f in wanted):
            raise SlackError("invalid_arguments", ["missing required field: files"])
        targets = [str(args["channel_id"])] if args.get("channel_id") else arg_list(args, "channels")
        channels = [self.channel(c, users_too=True) for c in targets]
        by_id = {u.file_id: u for u in self.uploads.values()}
        uploads = [by_id.get(str(f["id"])) for f in wanted]
        if any(u is None or u.content is None or u.file is not None for u in uploads):
            raise SlackError("file_not_found")
        files = [self._complete(u, f, channels) for u, f in zip(uploads, wanted, strict=True) if u]
        comment = args.get("initial_comment")
        thread_ts = str(args["thread_ts"]) if args.get("thread_ts") else None
        for channel in channels:
            message = self._message(str(comment or ""), None, self.next_ts())
            message |= {"files": files, "upload": True, "display_as_bot": False}
            self.post(channel, message, thread_ts)
            for upload in uploads:
                if upload:
                    upload.shared = {"channel_id": channel, "initial_comment": comment,
                                     "thread_ts": thread_ts}
        return {"files": files}

    def _complete(self, upload: Upload, wanted: dict[str, Any], channels: list[str]) -> dict[str, Any]:
        ext = "." + upload.name.rsplit(".", 1)[-1].lower() if "." in upload.name else ""
        filetype, pretty = FILETYPES.get(ext, ("binary", "Binary"))
        now = int(self.clock())
        private = f"https://files.slack.com/files-pri/{self.team_id}-{upload.file_id}/{upload.name}"
        upload.file = {
            "id": upload.file_id, "created": now, "timestamp": now, "name": upload.name,
            "title": wanted.get("title") or upload.name,
            "mimetype": mimetypes.guess_type(upload.name)[0] or "application/octet-stream",
            "filetype": filetype, "pretty_type": pretty, "user": self.bot_user_id, "user_team": self.team_id,
            "editable": False, "size": len(upload.content or b""), "mode": "hosted", "is_external": False,
            "external_type": "", "is_public": any(c.startswith("C") for c in channels),
            "public_url_shared": False, "display_as_bot": False, "username": "",
            "url_private": private,
            "url_private_download": private.replace("files-pri", "files-pri-download"),
            "permalink": f"https://{self.domain}.slack.com/files/{self.bot_user_id}/{upload.file_id}/"
                         f"{upload.name}",
            "comments_count": 0, "is_starred": False, "shares": {}, "has_rich_preview": False,
            "file_access": "visible",
            "channels": [c for c in channels if c.startswith("C")],
            "groups": [c for c in channels if c.startswith("G")],
            "ims": [c for c in channels if c.startswith("D")]}
        if upload.alt_txt:
            upload.file["alt_txt"] = upload.alt_txt
        return upload.file

    def files_delete(self, args: dict[str, Any], base: str) -> dict[str, Any]:
        """A bot may delete the files it uploaded; a deleted file is gone from every channel."""
        file_id = str(required(args, "file"))
        upload = next((u for u in self.uploads.values() if u.file_id == file_id and u.file), None)
        if upload is None:
            raise SlackError("file_not_found")
        for messages in self.messages.values():
            for message in messages:
                if any(f.get("id") == file_id for f in message.get("files", [])):
                    message["files"] = [f for f in message["files"] if f.get("id") != file_id]
        del self.uploads[upload.key]
        return {}

    # -- response_url -----------------------------------------------------------------------

    def respond(self, path: str, body: Any) -> tuple[int, dict[str, Any]]:
        """A POST to a response_url: (HTTP status, JSON body)."""
        target = self.response_urls.get(path)
        if target is None:
            return 404, {"ok": False, "error": "invalid_url"}
        if self.clock() - target.created > RESPONSE_URL_SECONDS:
            return 404, {"ok": False, "error": "expired_url"}
        if target.uses >= RESPONSE_URL_USES:
            return 404, {"ok": False, "error": "used_url"}
        if not isinstance(body, dict):
            return 400, {"ok": False, "error": "invalid_payload"}
        try:
            self._respond(target, body)
        except SlackError as e:
            return 400, e.body()
        target.uses += 1
        return 200, {"ok": True}

    def _respond(self, target: ResponseUrl, body: dict[str, Any]) -> None:
        original = self.find(target.channel, target.message_ts) \
            if target.channel and target.message_ts else None
        if arg_bool(body, "delete_original") and original is not None:
            self.messages[target.channel or ""].remove(original)
            return
        text, blocks = ("", None) if arg_bool(body, "delete_original") else self._text_or_blocks(body)
        if arg_bool(body, "replace_original") and original is not None:
            original["text"] = text
            original["blocks"] = blocks or []
            original["edited"] = {"user": self.bot_user_id, "ts": self.next_ts()}
        elif body.get("response_type") == "in_channel":
            if not target.channel:
                raise SlackError("channel_not_found")
            thread_ts = body.get("thread_ts")
            self.post(target.channel, self._message(text, blocks, self.next_ts()),
                      str(thread_ts) if thread_ts else None)
        else:
            self.ephemerals.append({
                "via": "response_url", "channel": target.channel, "user": target.user, "ts": self.next_ts(),
                "thread_ts": body.get("thread_ts"), "text": text, "blocks": blocks or [],
                "replace_original": arg_bool(body, "replace_original"),
                "delete_original": arg_bool(body, "delete_original")})


METHODS: dict[str, Callable[[SlackState, dict[str, Any], str], dict[str, Any]]] = {
    "auth.test": SlackState.auth_test,
    "chat.postMessage": SlackState.chat_postMessage,
    "chat.update": SlackState.chat_update,
    "chat.postEphemeral": SlackState.chat_postEphemeral,
    "chat.getPermalink": SlackState.chat_getPermalink,
    "conversations.open": SlackState.conversations_open,
    "conversations.info": SlackState.conversations_info,
    "users.info": SlackState.users_info,
    "usergroups.users.list": SlackState.usergroups_users_list,
    "views.open": SlackState.views_open,
    "views.update": SlackState.views_update,
    "views.push": SlackState.views_push,
    "views.publish": SlackState.views_publish,
    "files.getUploadURLExternal": SlackState.files_getUploadURLExternal,
    "files.completeUploadExternal": SlackState.files_completeUploadExternal,
    "files.delete": SlackState.files_delete,
}
