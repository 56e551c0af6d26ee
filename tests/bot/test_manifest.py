from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import yaml

from handlers.commands import SUBCOMMANDS

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "tests" / "schemas" / "slack-app-manifest.json"  # a copy: see its README


def test_manifest_validates_against_slacks_schema() -> None:
    manifest = yaml.safe_load((ROOT / "manifest.yml").read_text())
    jsonschema.validate(manifest, json.loads(SCHEMA.read_text()))


def test_manifest_has_what_the_app_uses() -> None:
    manifest = yaml.safe_load((ROOT / "manifest.yml").read_text())
    assert [c["command"] for c in manifest["features"]["slash_commands"]] == ["/dsr"]
    assert manifest["settings"]["interactivity"]["is_enabled"] is True
    assert manifest["settings"]["socket_mode_enabled"] is True
    assert manifest["features"]["app_home"]["home_tab_enabled"] is True
    assert "app_home_opened" in manifest["settings"]["event_subscriptions"]["bot_events"]
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    # chat.postMessage, conversations.open (DMs), usergroups.users.list (roles), files upload
    assert {"commands", "chat:write", "im:write", "usergroups:read", "files:write"} <= scopes


def test_the_command_names_every_subcommand_the_table_has() -> None:
    """The manifest's description and usage hint are what Slack shows while typing `/dsr`."""
    command = yaml.safe_load((ROOT / "manifest.yml").read_text())["features"]["slash_commands"][0]
    for word in SUBCOMMANDS:
        assert word in command["description"] or word in command["usage_hint"], word
