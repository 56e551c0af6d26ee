"""The offline demo, run as `make run` runs it: a separate process, everything it prints read."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import zipfile
from pathlib import Path

from bot.logs import transcript_logging
from bot.terminal import EMOJI
from tests.conftest import child_env

LOG_LINE = re.compile(r"\b(DEBUG|INFO|WARNING|ERROR|CRITICAL)\b|apscheduler|fontTools|werkzeug")
# mrkdwn left as Slack writes it: *bold*, _italic_ (not snake_case, nor a masked h***@e***.com).
RAW_EMPHASIS = re.compile(r"(?<![\w*])\*[^*\s][^*\n]*?\*(?![\w*])|(?<![\w_])_[^_\s][^_\n]*?_(?![\w_])")


def play(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    environment = child_env("DSR_", "DATABASE_", "SLACK_")
    environment["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    environment.update(env)
    return subprocess.run([sys.executable, "-m", "bot.cli", "run", "--demo-without-slack"],
                          cwd=tmp_path, env=environment, capture_output=True, text=True,
                          timeout=180)


def test_demo_prints_a_transcript_then_the_record_and_the_export(tmp_path) -> None:
    result = play(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    transcript = result.stdout
    assert result.stderr == ""  # not one log line
    assert [line for line in transcript.splitlines() if LOG_LINE.search(line)] == []
    assert "\x1b[" not in transcript  # not a terminal: no ANSI styles

    for raw in ("*Status:*", "<@U", "<#C", "&lt;", "&gt;", "&amp;"):
        assert raw not in transcript, raw
    assert [name for name in EMOJI if f":{name}:" in transcript] == []
    assert RAW_EMPHASIS.findall(transcript) == []
    for line in ("/dsr new", "Matches found", "[ ] Helena", "DSR Desk in #privacy:",
                 "Status: ⌛ awaiting approval", "Requested by: @Priya", "[Approve] [Reject]",
                 "clicks [Approve]", "✅ Approved by @Marco", "🎉 All steps done. (simulation)",
                 "Status: ✔️ completed", "📎 DSR-000001-export.zip"):
        assert line in transcript, line

    record = transcript.split("\nCompliance record ")[1]
    for line in ("Reference:   DSR-000001: access request under GDPR (simulation)",
                 "Filed:       by Priya", "Decision:    approved by Marco",
                 "Step 1:      zendesk export_users: done", "Outcome:     completed",
                 "PDF:         var/demo/DSR-000001-compliance-record.pdf"):
        assert line in record, line
    kept = tmp_path / "var" / "demo"
    assert (kept / "DSR-000001-compliance-record.pdf").read_bytes().startswith(b"%PDF")
    assert '"reference": "DSR-000001"' in (kept / "DSR-000001-compliance-record.json").read_text()

    export = transcript.split("\nExport ")[1]
    assert "var/demo/DSR-000001-export.zip" in export
    with zipfile.ZipFile(kept / "DSR-000001-export.zip") as archive:
        for name in archive.namelist():
            assert name in export, name
    assert "zendesk/users-001.json      1 record(s)" in export
    assert transcript.rstrip().endswith("(README: 'Creating the Slack app').")

    # The subject's address is typed in the private modal; past it, only masked.
    email = re.search(r"subject_emails=(\S+),", transcript).group(1)
    channel_and_after = transcript.split("DSR Desk in #privacy:")[1]
    assert email not in channel_and_after
    assert f"{email[0]}***@e******." in channel_and_after


def test_transcript_logging_quiets_then_restores_the_levels() -> None:
    root, scheduler = logging.getLogger(), logging.getLogger("apscheduler")
    before = (root.level, scheduler.level)
    root.setLevel(logging.INFO)
    try:
        with transcript_logging(environ={}):
            assert (root.level, scheduler.level) == (logging.WARNING, logging.ERROR)
        assert (root.level, scheduler.level) == (logging.INFO, before[1])
        with transcript_logging(environ={"DSR_LOG_LEVEL": "INFO"}):
            assert root.level == logging.INFO
    finally:
        root.setLevel(before[0])
