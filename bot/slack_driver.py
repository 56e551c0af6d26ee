"""Plays Slack's side of HTTP mode: signed slash commands, view submissions, button clicks and
events, sent to the app over a real socket, with trigger ids and response URLs from the
Web API stand-in. Used by the end-to-end tests and the offline demo."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any
from urllib.parse import urlencode

import httpx
from slack_sdk.signature import SignatureVerifier

from bot.slack_standin import SlackStandIn
from handlers.ids import Action, Block

SELECTS = (Block.TYPE, Block.JURISDICTION, Block.SYSTEM_REACH)


def form_state(fields: dict[str, Any]) -> dict[str, Any]:
    """A form's `state.values` as Slack sends them: select menus (SELECTS), checkboxes for
    lists, a date picker for the receipt date, text otherwise."""
    values = {}
    for block, value in fields.items():
        if block in SELECTS:
            element = {"type": "static_select", "selected_option": {"value": value}}
        elif isinstance(value, list):
            element = {"type": "checkboxes", "selected_options": [{"value": v} for v in value]}
        elif block == Block.RECEIVED:
            element = {"type": "datepicker", "selected_date": value}
        else:
            element = {"type": "plain_text_input", "value": value}
        values[str(block)] = {str(Action.INPUT): element}
    return values


def tick_everything(view: dict[str, Any], *, only: str | None = None) -> dict[str, Any]:
    """The `state.values` of a matches modal with every match shown ticked (or only the one
    labelled `only`)."""
    return {block["block_id"]: {Action.PICK_MATCHES: {
        "type": "checkboxes",
        "selected_options": [{"value": o["value"]} for o in block["elements"][0]["options"]
                             if only is None or o["text"]["text"] == only]}}
        for block in view["blocks"] if block.get("block_id", "").startswith("picks:")}


class SlackDriver:
    def __init__(self, app_url: str, signing_secret: str, standin: SlackStandIn,
                 standin_url: str, team_id: str = "T0STANDIN") -> None:
        self.url = app_url.rstrip("/") + "/slack/events"
        self.verifier = SignatureVerifier(signing_secret)
        self.standin = standin
        self.standin_url = standin_url
        self.team_id = team_id
        self.http = httpx.Client(timeout=30)

    def send(self, body: str, *, timestamp: int | None = None, signature: str | None = None,
             content_type: str = "application/x-www-form-urlencoded") -> httpx.Response:
        stamp = str(timestamp if timestamp is not None else int(time.time()))
        signed = self.verifier.generate_signature(timestamp=stamp, body=body) or ""
        headers = {"Content-Type": content_type, "X-Slack-Request-Timestamp": stamp,
                   "X-Slack-Signature": signature if signature is not None else signed}
        return self.http.post(self.url, content=body.encode(), headers=headers)

    def command(self, user: str, text: str, channel: str = "C0GENERAL") -> httpx.Response:
        body = urlencode({
            "token": "unused", "team_id": self.team_id, "channel_id": channel, "user_id": user,
            "user_name": user.lower(), "command": "/dsr", "text": text,
            "trigger_id": self.standin.new_trigger_id(user),
            "response_url": self.standin.response_url(self.standin_url, channel=channel, user=user),
            "api_app_id": "A0DSRDESK",
        })
        return self.send(body)

    def _interaction(self, payload: dict[str, Any]) -> httpx.Response:
        return self.send(urlencode({"payload": json.dumps(payload)}))

    def submit(self, user: str, view: dict[str, Any],
               values: dict[str, dict[str, Any]]) -> httpx.Response:
        """Submit a modal the stand-in holds (from views()), with state values as Slack sends."""
        submitted = {**view, "state": {"values": values}}
        return self._interaction({"type": "view_submission", "team": {"id": self.team_id},
                                  "user": {"id": user}, "view": submitted,
                                  "trigger_id": self.standin.new_trigger_id(user),
                                  "api_app_id": "A0DSRDESK"})

    def click(self, user: str, message: dict[str, Any], action_id: str,
              channel: str) -> httpx.Response:
        """Click the button `action_id` of a message the stand-in holds."""
        for block in message.get("blocks") or []:
            for element in block.get("elements") or []:
                if element.get("action_id") == action_id:
                    action = {"type": "button", "action_id": action_id,
                              "block_id": block["block_id"], "value": element.get("value"),
                              "action_ts": f"{time.time():.6f}"}
                    return self._interaction({
                        "type": "block_actions", "team": {"id": self.team_id},
                        "user": {"id": user}, "channel": {"id": channel},
                        "container": {"type": "message", "message_ts": message["ts"],
                                      "channel_id": channel},
                        "message": message, "actions": [action],
                        "trigger_id": self.standin.new_trigger_id(user),
                        "response_url": self.standin.response_url(
                            self.standin_url, channel=channel, user=user,
                            message_ts=message["ts"]),
                        "api_app_id": "A0DSRDESK",
                    })
        raise LookupError(f"no button {action_id!r} in that message")

    def choose(self, user: str, view: dict[str, Any], block_id: str, action_id: str,
               value: str, element_type: str = "static_select",
               state: dict[str, Any] | None = None) -> httpx.Response:
        """Pick `value` in a select (or click a button: element_type="button"; or type it and
        press Enter: "plain_text_input") of a modal the stand-in holds, as Slack sends it:
        block_actions from a view container, the view with its `state` (what is ticked, typed)."""
        action: dict[str, Any] = {"type": element_type, "action_id": action_id,
                                  "block_id": block_id, "action_ts": f"{time.time():.6f}"}
        if state is not None:
            view = {**view, "state": {"values": state}}
        if element_type in ("button", "plain_text_input"):
            action["value"] = value
        else:
            action["selected_option"] = {"value": value, "text": {"type": "plain_text",
                                                                  "text": value}}
        return self._interaction({
            "type": "block_actions", "team": {"id": self.team_id}, "user": {"id": user},
            "container": {"type": "view", "view_id": view["id"]}, "view": view,
            "actions": [action], "trigger_id": self.standin.new_trigger_id(user),
            "api_app_id": "A0DSRDESK"})

    def event(self, event: dict[str, Any]) -> httpx.Response:
        body = json.dumps({"type": "event_callback", "team_id": self.team_id,
                           "api_app_id": "A0DSRDESK", "event": event,
                           "event_id": f"Ev{uuid.uuid4().hex[:10]}", "event_time": int(time.time())})
        return self.send(body, content_type="application/json")
