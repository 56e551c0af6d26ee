"""The Slack Web API stand-in, served on a localhost socket and driven by slack_sdk and bolt."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from slack_bolt import App, BoltRequest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.webhook import WebhookClient

from bot.slack_standin import SlackStandIn
from services.sandbox import server

TOKEN = "xoxb-standin"
ANA, BEN = "U0ANA", "U0BEN"
CHANNEL = "C0PRIVACY"


class Clock:
    def __init__(self, now: float = 1_732_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Served:
    standin: SlackStandIn
    url: str
    client: WebClient
    clock: Clock


@pytest.fixture
def start() -> Iterator[Callable[..., Served]]:
    """Serve a stand-in (with a clock the test moves) and a WebClient pointed at it."""
    with ExitStack() as stack:
        def start_(**options: Any) -> Served:
            clock = Clock()
            standin = SlackStandIn(clock=clock, **options)
            running = stack.enter_context(server.serve(standin.wsgi))
            return Served(standin, running.url, WebClient(token=TOKEN, base_url=f"{running.url}/api/"), clock)

        yield start_


@pytest.fixture
def slack(start: Callable[..., Served]) -> Served:
    return start(users={ANA: {"real_name": "Ana Lima", "email": "ana@example.com", "is_admin": True}},
                 usergroups={"S0PRIVACY": [ANA, BEN]})


def error_of(call: Callable[[], Any]) -> SlackApiError:
    with pytest.raises(SlackApiError) as raised:
        call()
    return raised.value


def modal(title: str = "New request", **extra: Any) -> dict[str, Any]:
    return {"type": "modal", "callback_id": "new_request", "title": {"type": "plain_text", "text": title},
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "Loading..."}}], **extra}


def section(text: str, block_id: str | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "section", "text": {"type": "mrkdwn", "text": text}}
    return block | ({"block_id": block_id} if block_id else {})


# -- auth ---------------------------------------------------------------------------------------


def test_auth_test_answers_as_bolt_expects(slack: Served) -> None:
    answer = slack.client.auth_test()

    assert answer.data == {"ok": True, "url": "https://dsr-desk-standin.slack.com/",
                           "team": "DSR Desk Stand-in", "user": "dsr_desk", "team_id": "T0STANDIN",
                           "user_id": "U0DSRBOT", "bot_id": "B0DSRBOT", "is_enterprise_install": False}
    assert "chat:write" in answer.headers["x-oauth-scopes"]
    assert [c.method for c in slack.standin.calls] == ["auth.test"]


def test_token_in_a_form_parameter_is_accepted_but_not_in_a_json_body(slack: Served) -> None:
    form = httpx.post(f"{slack.url}/api/auth.test", data={"token": TOKEN})
    as_json = httpx.post(f"{slack.url}/api/auth.test", json={"token": TOKEN})

    assert form.json()["ok"] is True
    assert (as_json.status_code, as_json.json()) == (200, {"ok": False, "error": "not_authed"})
    assert all("token" not in c.args for c in slack.standin.calls)


def test_wrong_or_missing_token_is_refused(slack: Served) -> None:
    wrong = error_of(WebClient(token="xoxb-other", base_url=slack.client.base_url).auth_test)
    missing = error_of(WebClient(base_url=slack.client.base_url).auth_test)

    assert (wrong.response.status_code, wrong.response["error"]) == (200, "invalid_auth")
    assert missing.response["error"] == "not_authed"
    assert [c.error for c in slack.standin.calls] == ["invalid_auth", "not_authed"]


def test_unknown_method(slack: Served) -> None:
    refused = error_of(lambda: slack.client.api_call("requests.fulfil"))

    assert refused.response.data == {"ok": False, "error": "unknown_method", "req_method": "requests.fulfil"}


# -- messages -----------------------------------------------------------------------------------


def test_post_reply_update_and_read_back(slack: Served) -> None:
    client = slack.client
    posted = client.chat_postMessage(channel=CHANNEL, text="New erasure request",
                                     blocks=[section("*DSR-1* erasure", "summary")])
    reply = client.chat_postMessage(channel=CHANNEL, text="Zendesk: done", thread_ts=posted["ts"])
    to_reply = client.chat_postMessage(channel=CHANNEL, text="Genesys: done", thread_ts=reply["ts"])
    updated = client.chat_update(channel=CHANNEL, ts=posted["ts"], text="Erasure complete",
                                 blocks=[section("*DSR-1* complete", "summary")])

    assert posted["channel"] == CHANNEL and posted["ts"] == "1732000000.000000"
    assert posted["message"]["blocks"] == [section("*DSR-1* erasure", "summary")]
    assert posted["ts"] < reply["ts"] < to_reply["ts"]
    assert reply["message"]["thread_ts"] == to_reply["message"]["thread_ts"] == posted["ts"]
    assert updated["message"]["text"] == "Erasure complete" and "edited" in updated["message"]
    messages = slack.standin.messages(CHANNEL)
    assert [(m["text"], m["thread_ts"]) for m in messages] == [
        ("Erasure complete", posted["ts"]), ("Zendesk: done", posted["ts"]), ("Genesys: done", posted["ts"])]
    assert messages[0]["reply_count"] == 2 and messages[0]["blocks"][0]["text"]["text"] == "*DSR-1* complete"
    assert all(m["user"] == "U0DSRBOT" for m in messages)
    assert [m["ts"] for m in slack.standin.thread(CHANNEL, posted["ts"])] == [m["ts"] for m in messages]


def test_blocks_without_block_id_get_one_as_on_slack(slack: Served) -> None:
    blocks = [section("a"), {"type": "divider"}]
    posted = slack.client.chat_postMessage(channel=CHANNEL, text="t", blocks=blocks)

    ids = [b["block_id"] for b in posted["message"]["blocks"]]
    assert len(set(ids)) == 2 and all(ids)
    assert slack.standin.messages(CHANNEL)[0]["blocks"] == posted["message"]["blocks"]


def test_update_and_permalink_need_a_known_message(slack: Served) -> None:
    posted = slack.client.chat_postMessage(channel=CHANNEL, text="x")

    assert error_of(lambda: slack.client.chat_update(channel=CHANNEL, ts="1.000001", text="y")).response[
        "error"] == "message_not_found"
    link = slack.client.chat_getPermalink(channel=CHANNEL, message_ts=posted["ts"])
    assert link["permalink"] == f"https://dsr-desk-standin.slack.com/archives/{CHANNEL}/p1732000000000000"


def test_message_checks_like_slack(slack: Served) -> None:
    client = slack.client

    no_text = error_of(lambda: client.api_call("chat.postMessage", json={"channel": CHANNEL}))
    bad_channel = error_of(lambda: client.chat_postMessage(channel="privacy-team", text="x"))
    long_section = error_of(lambda: client.chat_postMessage(channel=CHANNEL, text="x",
                                                            blocks=[section("y" * 3001)]))
    too_many = error_of(lambda: client.chat_postMessage(channel=CHANNEL, text="x",
                                                        blocks=[{"type": "divider"}] * 51))
    bad_button = error_of(lambda: client.chat_postMessage(channel=CHANNEL, text="x", blocks=[
        {"type": "actions", "elements": [{"type": "button", "action_id": "approve",
                                          "text": {"type": "plain_text", "text": "A" * 76}}]}]))

    assert no_text.response["error"] == "no_text"
    assert bad_channel.response["error"] == "channel_not_found"
    assert long_section.response.data == {
        "ok": False, "error": "invalid_blocks",
        "errors": ["must be less than 3001 characters [json-pointer:/blocks/0/text/text]"],
        "response_metadata": {"messages": ["[ERROR] must be less than 3001 characters "
                                           "[json-pointer:/blocks/0/text/text]"]}}
    assert too_many.response["response_metadata"]["messages"] == [
        "[ERROR] no more than 50 items allowed [json-pointer:/blocks]"]
    assert bad_button.response["errors"] == [
        "must be less than 76 characters [json-pointer:/blocks/0/elements/0/text/text]"]
    assert slack.standin.messages(CHANNEL) == []


def test_slack_sdk_models_catch_what_the_limits_do_not(slack: Served) -> None:
    refused = error_of(lambda: slack.client.chat_postMessage(channel=CHANNEL, text="x", blocks=[
        {"type": "image", "alt_text": "logo", "image_url": "https://example.com/" + "a" * 3000}]))

    assert refused.response["error"] == "invalid_blocks"
    assert "[json-pointer:/blocks/0]" in refused.response["errors"][0]


def test_form_bodies_with_json_strings_are_read_like_json_bodies(slack: Served) -> None:
    blocks = json.dumps([section("from a form", "b1")])
    slack.client.api_call("chat.postMessage", params={"channel": CHANNEL, "text": "x", "blocks": blocks})
    broken = error_of(lambda: slack.client.api_call(
        "chat.postMessage", params={"channel": CHANNEL, "text": "x", "blocks": "[{"}))

    assert slack.standin.messages(CHANNEL)[0]["blocks"] == [section("from a form", "b1")]
    assert slack.standin.calls_to("chat.postMessage")[0].args["blocks"] == [section("from a form", "b1")]
    assert broken.response["error"] == "invalid_blocks_format"


def test_post_ephemeral(slack: Served) -> None:
    answer = slack.client.chat_postEphemeral(channel=CHANNEL, user=ANA, text="Only you can see this")

    assert set(answer.data) == {"ok", "message_ts"}
    [seen] = slack.standin.ephemerals(ANA)
    assert (seen["via"], seen["channel"], seen["text"], seen["ts"]) == (
        "chat.postEphemeral", CHANNEL, "Only you can see this", answer["message_ts"])
    assert slack.standin.ephemerals(BEN) == [] and slack.standin.messages(CHANNEL) == []


# -- conversations, users, usergroups -----------------------------------------------------------


def test_conversations_open_gives_one_dm_per_user(slack: Served) -> None:
    first = slack.client.conversations_open(users=ANA)
    again = slack.client.conversations_open(users=[ANA], return_im=True)
    other = slack.client.conversations_open(users=BEN)
    posted = slack.client.chat_postMessage(channel=ANA, text="Your export is ready")

    dm = first["channel"]["id"]
    assert dm.startswith("D") and again["channel"]["id"] == dm != other["channel"]["id"]
    assert again["already_open"] is True and again["channel"]["user"] == ANA and again["channel"]["is_im"]
    assert posted["channel"] == dm
    assert [m["text"] for m in slack.standin.messages(dm)] == ["Your export is ready"]
    assert slack.standin.messages(ANA) == slack.standin.messages(dm)
    assert slack.client.conversations_info(channel=dm)["channel"]["user"] == ANA
    assert error_of(lambda: slack.client.conversations_open(users="")).response["error"] == \
        "users_list_not_supplied"


def test_users_info_and_usergroups(slack: Served) -> None:
    ana = slack.client.users_info(user=ANA)["user"]
    someone = slack.client.users_info(user="W0SOMEONE")["user"]

    assert (ana["real_name"], ana["profile"]["email"], ana["is_admin"]) == (
        "Ana Lima", "ana@example.com", True)
    assert someone["id"] == "W0SOMEONE" and someone["profile"]["email"] and someone["is_admin"] is False
    assert error_of(lambda: slack.client.users_info(user="B0BOT")).response["error"] == "user_not_found"
    assert slack.client.usergroups_users_list(usergroup="S0PRIVACY")["users"] == [ANA, BEN]
    assert error_of(lambda: slack.client.usergroups_users_list(usergroup="S0NONE")).response["error"] == \
        "no_such_subteam"


# -- views --------------------------------------------------------------------------------------


def test_views_open_update_with_hash_and_push(slack: Served) -> None:
    client, standin = slack.client, slack.standin
    opened = client.views_open(trigger_id=standin.new_trigger_id(ANA),
                               view=modal(private_metadata="DSR-1",
                                          submit={"type": "plain_text", "text": "Go"}))
    view = opened["view"]
    updated = client.views_update(view_id=view["id"], hash=view["hash"],
                                  view=modal(private_metadata="DSR-1", blocks=[section("Found 3 records")]))
    stale = error_of(lambda: client.views_update(view_id=view["id"], hash=view["hash"], view=modal()))
    pushed = client.views_push(trigger_id=standin.new_trigger_id(ANA), view=modal("Confirm"))

    assert view["id"].startswith("V") and view["root_view_id"] == view["id"]
    assert view["state"] == {"values": {}} and view["hash"] and view["private_metadata"] == "DSR-1"
    assert updated["view"]["id"] == view["id"] and updated["view"]["hash"] != view["hash"]
    assert stale.response["error"] == "hash_conflict"
    assert pushed["view"]["previous_view_id"] == view["id"] and pushed["view"]["root_view_id"] == view["id"]
    views = standin.views()
    assert views[view["id"]]["blocks"][0]["text"]["text"] == "Found 3 records"
    assert views[view["id"]]["user"] == ANA and views[view["id"]]["callback_id"] == "new_request"
    assert views[pushed["view"]["id"]]["title"]["text"] == "Confirm"
    unknown = error_of(lambda: client.views_update(view_id="V0NONE", view=modal()))
    assert unknown.response["error"] == "not_found"


def test_views_push_stacks_at_most_three(slack: Served) -> None:
    standin = slack.standin
    slack.client.views_open(trigger_id=standin.new_trigger_id(ANA), view=modal())
    for _ in range(2):
        slack.client.views_push(trigger_id=standin.new_trigger_id(ANA), view=modal())

    refused = error_of(lambda: slack.client.views_push(trigger_id=standin.new_trigger_id(ANA), view=modal()))
    assert refused.response["error"] == "push_limit_reached"


def test_trigger_ids_expire_after_3_seconds_and_work_once(slack: Served) -> None:
    standin, client = slack.standin, slack.client
    late = standin.new_trigger_id(ANA)
    slack.clock.advance(3.5)
    used = standin.new_trigger_id(ANA)
    client.views_open(trigger_id=used, view=modal())

    assert error_of(lambda: client.views_open(trigger_id=late, view=modal())).response["error"] == \
        "expired_trigger_id"
    assert error_of(lambda: client.views_open(trigger_id=used, view=modal())).response["error"] == \
        "exchanged_trigger_id"
    assert error_of(lambda: client.views_open(trigger_id="soon", view=modal())).response["error"] == \
        "invalid_trigger_id"
    assert client.views_open(trigger_id="12345.98765.abcd2358fdea", view=modal())["ok"]


def test_view_checks_like_slack(slack: Served) -> None:
    def open_(view: dict[str, Any]) -> SlackApiError:
        trigger_id = slack.standin.new_trigger_id(ANA)
        return error_of(lambda: slack.client.views_open(trigger_id=trigger_id, view=view))

    long_title = open_(modal("A title over 24 characters"))
    big = open_(modal(private_metadata="x" * 3001, blocks=[{"type": "divider"}] * 101))
    no_submit = open_(modal(blocks=[{"type": "input", "label": {"type": "plain_text", "text": "Email"},
                                     "element": {"type": "plain_text_input", "action_id": "email"}}]))

    assert long_title.response.data == {"ok": False, "error": "invalid_arguments", "response_metadata": {
        "messages": ["[ERROR] must be less than 25 characters [json-pointer:/view/title/text]"]}}
    assert big.response["response_metadata"]["messages"] == [
        "[ERROR] must be less than 3001 characters [json-pointer:/view/private_metadata]",
        "[ERROR] no more than 100 items allowed [json-pointer:/view/blocks]"]
    assert no_submit.response["error"] == "invalid_arguments"
    assert slack.standin.views() == {}


def test_views_publish_keeps_one_home_per_user(slack: Served) -> None:
    home = {"type": "home", "blocks": [section("3 open requests")]}
    first = slack.client.views_publish(user_id=ANA, view=home)
    second = slack.client.views_publish(user_id=ANA, view={**home, "blocks": [section("2 open requests")]},
                                        hash=first["view"]["hash"])
    stale = error_of(lambda: slack.client.views_publish(user_id=ANA, view=home, hash=first["view"]["hash"]))
    modal_as_home = error_of(lambda: slack.client.views_publish(user_id=ANA, view=modal()))

    assert second["view"]["id"] == first["view"]["id"] and second["view"]["type"] == "home"
    assert stale.response["error"] == "hash_conflict"
    assert modal_as_home.response["error"] == "invalid_arguments"
    shown = slack.standin.home(ANA)
    assert shown is not None and shown["blocks"][0]["text"]["text"] == "2 open requests"
    assert slack.standin.home(BEN) is None


# -- files --------------------------------------------------------------------------------------


def test_files_upload_v2_end_to_end(slack: Served) -> None:
    dm = slack.client.conversations_open(users=ANA)["channel"]["id"]
    content = "id,email\n1,ana@example.com\n"

    answer = slack.client.files_upload_v2(channel=dm, content=content, filename="DSR-1-export.csv",
                                          title="DSR-1 export", initial_comment="Your access export")

    assert answer["file"]["name"] == "DSR-1-export.csv" and answer["file"]["size"] == len(content)
    assert answer["file"]["id"].startswith("F") and answer["file"]["ims"] == [dm]
    [uploaded] = slack.standin.uploaded_files()
    assert (uploaded["name"], uploaded["title"], uploaded["bytes"], uploaded["channel_id"],
            uploaded["initial_comment"]) == ("DSR-1-export.csv", "DSR-1 export", content.encode(), dm,
                                             "Your access export")
    [shared] = slack.standin.messages(dm)
    assert shared["text"] == "Your access export" and shared["files"][0]["id"] == answer["file"]["id"]
    assert [c.method for c in slack.standin.calls[1:]] == [
        "files.getUploadURLExternal", "upload_url", "files.completeUploadExternal"]


def test_upload_can_be_completed_once_and_only_after_the_bytes_arrive(slack: Served) -> None:
    reserved = slack.client.files_getUploadURLExternal(filename="a.txt", length=3)
    files = [{"id": reserved["file_id"], "title": "a"}]

    early = error_of(lambda: slack.client.files_completeUploadExternal(files=files, channel_id=CHANNEL))
    assert httpx.post(reserved["upload_url"], content=b"abc").text == "OK - 3"
    slack.client.files_completeUploadExternal(files=files, channel_id=CHANNEL)
    twice = error_of(lambda: slack.client.files_completeUploadExternal(files=files, channel_id=CHANNEL))

    assert reserved["upload_url"].startswith(slack.url)
    assert early.response["error"] == twice.response["error"] == "file_not_found"
    assert httpx.post(reserved["upload_url"], content=b"more").status_code == 404


# -- response_url -------------------------------------------------------------------------------


def test_response_url_records_ephemeral_and_in_channel_posts(slack: Served) -> None:
    webhook = WebhookClient(slack.standin.response_url(slack.url, channel=CHANNEL, user=ANA))

    private = webhook.send(text="Request DSR-1 created")
    public = webhook.send(response_type="in_channel", text="DSR-1 approved by Ana")
    header = {"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}
    invalid = webhook.send(text="x", blocks=[header])

    assert (private.status_code, json.loads(private.body)) == (200, {"ok": True})
    assert public.status_code == 200 and invalid.status_code == 400
    assert json.loads(invalid.body)["error"] == "invalid_blocks"
    [ephemeral] = slack.standin.ephemerals(ANA)
    assert (ephemeral["via"], ephemeral["text"], ephemeral["channel"]) == (
        "response_url", "Request DSR-1 created", CHANNEL)
    assert [m["text"] for m in slack.standin.messages(CHANNEL)] == ["DSR-1 approved by Ana"]
    assert [c.method for c in slack.standin.calls] == ["response_url"] * 3


def test_response_url_replaces_the_message_of_a_block_action_and_wears_out(slack: Served) -> None:
    posted = slack.client.chat_postMessage(channel=CHANNEL, text="Approve DSR-1?")
    webhook = WebhookClient(slack.standin.response_url(slack.url, channel=CHANNEL, user=ANA,
                                                       message_ts=posted["ts"]))

    webhook.send(replace_original=True, text="DSR-1 approved")
    for _ in range(4):
        webhook.send(text="noted")
    worn_out = webhook.send(text="once more")

    [message] = slack.standin.messages(CHANNEL)
    assert (message["ts"], message["text"]) == (posted["ts"], "DSR-1 approved")
    assert worn_out.status_code == 404 and json.loads(worn_out.body)["error"] == "used_url"


# -- rate limits and concurrency ----------------------------------------------------------------


def test_rate_limited_with_retry_after(start: Callable[..., Served]) -> None:
    slack = start(rate_limits={"chat.postMessage": 2})
    for _ in range(2):
        slack.client.chat_postMessage(channel=CHANNEL, text="x")
    slack.clock.advance(20)

    limited = error_of(lambda: slack.client.chat_postMessage(channel=CHANNEL, text="x"))
    slack.client.chat_postEphemeral(channel=CHANNEL, user=ANA, text="other methods are not limited")
    slack.clock.advance(40)
    slack.client.chat_postMessage(channel=CHANNEL, text="a minute later")

    assert limited.response.status_code == 429 and limited.response.headers["Retry-After"] == "40"
    assert limited.response.data == {"ok": False, "error": "ratelimited"}
    assert [c.error for c in slack.standin.calls_to("chat.postMessage")] == [None, None, "ratelimited", None]
    assert len(slack.standin.messages(CHANNEL)) == 3


def test_concurrent_posts_get_unique_increasing_ts(start: Callable[..., Served]) -> None:
    slack = start()
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: slack.client.chat_postMessage(channel=CHANNEL, text=str(i)),
                                range(40)))

    stamps = [a["ts"] for a in answers]
    assert len(set(stamps)) == 40
    assert [m["ts"] for m in slack.standin.messages(CHANNEL)] == sorted(stamps)


# -- bolt ---------------------------------------------------------------------------------------


def test_a_bolt_app_runs_against_the_stand_in(slack: Served) -> None:
    secret = "signing-secret"
    app = App(client=WebClient(token=TOKEN, base_url=slack.client.base_url), signing_secret=secret,
              process_before_response=True)

    @app.command("/dsr")
    def open_modal(ack: Any, body: dict[str, Any], client: WebClient, respond: Any) -> None:
        ack()
        client.views_open(trigger_id=body["trigger_id"], view=modal())
        respond("Opening the form")

    body = urlencode({"command": "/dsr", "text": "", "user_id": ANA, "channel_id": CHANNEL,
                      "team_id": "T0STANDIN", "trigger_id": slack.standin.new_trigger_id(ANA),
                      "response_url": slack.standin.response_url(slack.url, channel=CHANNEL, user=ANA)})
    stamp = str(int(time.time()))
    signature = SignatureVerifier(secret).generate_signature(timestamp=stamp, body=body) or ""
    headers: dict[str, str | Sequence[str]] = {
        "content-type": "application/x-www-form-urlencoded", "x-slack-request-timestamp": stamp,
        "x-slack-signature": signature}
    response = app.dispatch(BoltRequest(body=body, headers=headers))

    assert response.status == 200
    assert [c.method for c in slack.standin.calls] == ["auth.test", "views.open", "response_url"]
    [view] = slack.standin.views().values()
    assert view["user"] == ANA and view["callback_id"] == "new_request"
    assert [e["text"] for e in slack.standin.ephemerals(ANA)] == ["Opening the form"]
