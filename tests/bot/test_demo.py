from __future__ import annotations

import io
import re

from bot.demo import run_demo


def test_demo_plays_a_request_to_completion(tmp_path) -> None:
    out = io.StringIO()
    assert run_demo(out, tmp_path) == "completed"
    transcript = out.getvalue()
    for line in ("/dsr new", "Matches found", "awaiting approval", "clicks [Approve]",
                 "Approved by <@U0MARCO>", "All steps done", "DSR-000001 is completed"):
        assert line in transcript, line
    email = re.search(r"subject_emails=(\S+),", transcript).group(1)
    channel_and_after = transcript.split("DSR Desk in #C0PRIVACY:")[1]
    assert email not in channel_and_after  # masked in the channel, the thread and the DM
    assert f"{email[0]}***@e******." in channel_and_after
