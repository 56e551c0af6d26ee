"""A local stand-in of Slack's Web API: records the calls the app makes and answers as Slack does.

    standin = SlackStandIn(users={"U0ANA": {"real_name": "Ana", "email": "ana@example.com"}})
    with server.serve(standin.wsgi) as running:            # services.sandbox.server
        client = WebClient(token="xoxb-standin", base_url=f"{running.url}/api/")
        client.chat_postMessage(channel="C0PRIVACY", text="hello")
        standin.messages("C0PRIVACY")[0]["text"]             # "hello"

Used by the end-to-end tests and by `dsr-desk demo`. Routes:
- `/api/<method>`: the Web API, GET or POST, with form, multipart or JSON bodies (as slack_sdk's
  `WebClient` sends them) and the token in `Authorization: Bearer` or a `token` parameter (not in
  a JSON body, as on Slack). Wrong token: `invalid_auth`; none: `not_authed`; an unknown method:
  `unknown_method`. Errors are HTTP 200 with `{"ok": false, "error": ...}`, except `ratelimited`
  (HTTP 429 with `Retry-After`) when `rate_limits` sets calls per minute for a method.
- `/upload/v1/<key>`: the `upload_url` files.getUploadURLExternal hands out (raw or multipart bytes).
- `/actions/<team>/<n>/<secret>`: URLs made by `response_url(...)`, recording what the app posts.

Every call is kept in `calls`, refused ones too (`Call.error`), without the token; JSON-string
arguments (`blocks`, `view`, `files`, ...) are kept decoded. Posts to an upload_url are recorded
as method "upload_url", posts to a response_url as "response_url". What the stand-in chooses
where Slack's documents are silent is listed in `bot.slack_standin_state`.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, request

from bot.slack_standin_state import METHODS, USER_PREFIXES, Call, SlackError, SlackState, dm_id

SCOPES = ("chat:write,commands,im:write,im:read,users:read,users:read.email,usergroups:read,"
          "files:write,files:read,channels:read,groups:read")
DECODED = ("blocks", "view", "files", "attachments", "metadata")


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status=status, headers=headers,
                    content_type="application/json; charset=utf-8")


class SlackStandIn:
    """The Web API of one workspace with one bot user, served by `wsgi`, read back by the accessors.

    `users` gives profiles (`real_name`, `email`, `is_admin`, `tz`, ... merged over a generated
    one; any other U/W id gets a generated profile), `usergroups` maps usergroup ids to user ids,
    `channels` gives conversations.info fields (`name`) for C/G ids. `rate_limits` maps a method to
    calls allowed per minute. `clock` (epoch seconds) drives ts, trigger expiry and rate limits.
    """

    def __init__(self, *, bot_token: str = "xoxb-standin", app_token: str = "xapp-standin",
                 team_id: str = "T0STANDIN",
                 bot_user_id: str = "U0DSRBOT", users: dict[str, dict[str, Any]] | None = None,
                 usergroups: dict[str, list[str]] | None = None,
                 channels: dict[str, dict[str, Any]] | None = None,
                 rate_limits: dict[str, int] | None = None,
                 clock: Callable[[], float] = time.time, seed: int = 0) -> None:
        self.bot_token = bot_token
        self.app_token = app_token
        self.socket_url: str | None = None  # set to a SocketModeStandIn's url for Socket Mode
        self.rate_limits = dict(rate_limits or {})
        self.clock = clock
        self._state = SlackState(team_id=team_id, bot_user_id=bot_user_id, users=dict(users or {}),
                                 usergroups={k: list(v) for k, v in (usergroups or {}).items()},
                                 channels=dict(channels or {}), clock=clock, seed=seed)
        self._calls: list[Call] = []
        self._windows: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self.wsgi = self._app()

    # -- reading back -----------------------------------------------------------------------

    @property
    def calls(self) -> list[Call]:
        """Every call in order (a copy)."""
        with self._lock:
            return list(self._calls)

    def calls_to(self, method: str) -> list[Call]:
        with self._lock:
            return [c for c in self._calls if c.method == method]

    def messages(self, channel: str) -> list[dict[str, Any]]:
        """Messages in `channel` as they are now, thread replies included, oldest first.

        Each has `channel`, `ts`, `thread_ts` (None outside threads), `text`, `blocks` ([] if
        none) and `user`, beside Slack's other fields. A user id reads the app's DM with them.
        """
        with self._lock:
            channel = dm_id((channel,)) if channel.startswith(USER_PREFIXES) else channel
            found = sorted(self._state.messages.get(channel, []), key=lambda m: m["ts"])
            return [{"thread_ts": None, "blocks": [], **copy.deepcopy(m), "channel": channel} for m in found]

    def thread(self, channel: str, ts: str) -> list[dict[str, Any]]:
        """The message `ts` and its replies, oldest first."""
        return [m for m in self.messages(channel) if m["ts"] == ts or m["thread_ts"] == ts]

    def ephemerals(self, user: str) -> list[dict[str, Any]]:
        """What only `user` saw: chat.postEphemeral to them and ephemeral response_url posts.

        Each has `via` ("chat.postEphemeral" or "response_url"), `channel`, `user`, `ts`,
        `thread_ts`, `text`, `blocks`; response_url posts also `replace_original`/`delete_original`.
        """
        with self._lock:
            return [copy.deepcopy(e) for e in self._state.ephemerals if e["user"] == user]

    def views(self) -> dict[str, dict[str, Any]]:
        """view_id -> the view as it is now (modals, pushed views, Home tabs), with its `user`."""
        with self._lock:
            return {vid: {**copy.deepcopy(r.view), "user": r.user} for vid, r in self._state.views.items()}

    def home(self, user: str) -> dict[str, Any] | None:
        """The Home tab last published for `user`, or None."""
        with self._lock:
            view_id = self._state.homes.get(user)
            if view_id is None:
                return None
            return {**copy.deepcopy(self._state.views[view_id].view), "user": user}

    def uploaded_files(self) -> list[dict[str, Any]]:
        """Files completed with files.completeUploadExternal, in order of upload."""
        with self._lock:
            return [{"id": u.file_id, "name": u.name, "title": u.file["title"], "bytes": u.content,
                     "channel_id": u.shared.get("channel_id"),
                     "initial_comment": u.shared.get("initial_comment"),
                     "thread_ts": u.shared.get("thread_ts"), "file": copy.deepcopy(u.file)}
                    for u in self._state.uploads.values() if u.file is not None]

    # -- handing out what Slack would send the app --------------------------------------------

    def response_url(self, base_url: str, *, channel: str | None = None, user: str | None = None,
                     message_ts: str | None = None) -> str:
        """A fresh response_url on this server (`base_url` is the server's root URL).

        Posts to it land in `ephemerals(user)` (no `response_type`, or "ephemeral") or in
        `messages(channel)` ("in_channel"). With `message_ts` (a block action on a message),
        `replace_original` / `delete_original` change that message. Like Slack's, a URL takes
        5 posts within 30 minutes.
        """
        with self._lock:
            return self._state.new_response_url(base_url, channel, user, message_ts)

    def new_trigger_id(self, user: str | None = None) -> str:
        """A trigger_id as Slack puts in interactions: one views.open/push within 3 seconds.

        views.open records `user` as the modal's user. trigger_ids the stand-in did not issue are
        accepted once if they look like Slack's ("12345.98765.abcd2358fdea"), with no user.
        """
        with self._lock:
            return self._state.new_trigger(user)

    # -- HTTP -------------------------------------------------------------------------------

    def _app(self) -> Flask:
        app = Flask(__name__)
        app.add_url_rule("/api/<path:method>", "api", self._api, methods=["GET", "POST"])
        app.add_url_rule("/upload/v1/<key>", "upload", self._upload, methods=["POST"])
        app.add_url_rule("/actions/<path:rest>", "respond", self._respond, methods=["POST"])
        return app

    def _arguments(self) -> tuple[dict[str, Any], str | None, SlackError | None]:
        """(arguments, token, a refusal of the body): query string and body merged."""
        args: dict[str, Any] = {k: v for k, v in request.args.items()}
        token = args.pop("token", None)
        if request.mimetype == "application/json":
            try:
                body = json.loads(request.get_data() or b"{}")
            except ValueError:
                return args, token, SlackError("invalid_json")
            if not isinstance(body, dict):
                return args, token, SlackError("json_not_object")
            body.pop("token", None)  # Slack reads no token from a JSON body
            args.update(body)
        else:
            form = {k: v for k, v in request.form.items()}
            token = form.pop("token", token)
            args.update(form)
        header = request.headers.get("Authorization", "")
        if header.lower().startswith("bearer "):
            token = header[7:].strip()
        return args, token, None

    def _recorded(self, args: dict[str, Any]) -> dict[str, Any]:
        kept = dict(args)
        for key in DECODED:
            if isinstance(kept.get(key), str):
                with contextlib.suppress(ValueError):
                    kept[key] = json.loads(kept[key])
        return copy.deepcopy(kept)

    def _retry_after(self, method: str, now: float) -> int | None:
        limit = self.rate_limits.get(method)
        if limit is None:
            return None
        window = self._windows.setdefault(method, deque())
        while window and now - window[0] >= 60:
            window.popleft()
        if len(window) >= limit:
            return max(1, math.ceil(60 - (now - window[0])))
        window.append(now)
        return None

    def _api(self, method: str) -> Response:
        args, token, refusal = self._arguments()
        base = request.host_url
        with self._lock:
            call = Call(method, self._recorded(args), self.clock())
            self._calls.append(call)
            try:
                if method == "apps.connections.open":  # Socket Mode: the app-level token
                    if token != self.app_token or not self.socket_url:
                        raise SlackError("invalid_auth")
                    return _json({"ok": True, "url": self.socket_url})
                handler = METHODS.get(method)
                if handler is None:
                    call.error = "unknown_method"
                    return _json({"ok": False, "error": "unknown_method", "req_method": method})
                if refusal is not None:
                    raise refusal
                if not token:
                    raise SlackError("not_authed")
                if token != self.bot_token:
                    raise SlackError("invalid_auth")
                retry_after = self._retry_after(method, call.at)
                if retry_after is not None:
                    raise SlackError("ratelimited", status=429, headers={"Retry-After": str(retry_after)})
                body = handler(self._state, copy.deepcopy(args), base)
                return _json({"ok": True, **copy.deepcopy(body)}, headers={"x-oauth-scopes": SCOPES})
            except SlackError as e:
                call.error = e.error
                return _json(e.body(), e.status, e.headers)

    def _upload(self, key: str) -> Response:
        if request.mimetype == "multipart/form-data":
            parts = list(request.files.values())
            content = parts[0].read() if parts else b""
        else:
            content = request.get_data()
        with self._lock:
            call = Call("upload_url", {"key": key, "length": len(content)}, self.clock())
            self._calls.append(call)
            if not self._state.receive_upload(key, content):
                call.error = "not_found"
                return Response("Not Found", status=404, content_type="text/plain; charset=utf-8")
        return Response(f"OK - {len(content)}", status=200, content_type="text/plain; charset=utf-8")

    def _respond(self, rest: str) -> Response:
        raw = request.form.get("payload") if request.mimetype != "application/json" else None
        try:
            body = json.loads(raw if raw is not None else request.get_data() or b"null")
        except ValueError:
            body = None
        with self._lock:
            call = Call("response_url", copy.deepcopy(body) if isinstance(body, dict) else {}, self.clock())
            self._calls.append(call)
            status, answer = self._state.respond(f"actions/{rest}", body)
            call.error = None if answer["ok"] else answer["error"]
        return _json(answer, status)
