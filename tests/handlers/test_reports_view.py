"""The digest message: the on-time share stated with what it counts; one label per request type."""

from __future__ import annotations

import json
from datetime import date

from handlers.views import common
from handlers.views.common import as_dicts
from handlers.views.reports import digest_blocks, digest_text
from services import labels, record_pdf
from services.scheduled.digest import Digest


def _digest(**overrides) -> Digest:
    values = dict(day=date(2026, 3, 31), open_counts={("pending_approval", "access"): 2},
                  due_next_7_days=1, overdue=1, completed_last_24h=0, completed_30_days=3,
                  median_days=4.0, p90_days=9.5, completed_on_time=3, awaiting_approval=[])
    return Digest(**(values | overrides))


def test_the_digest_states_the_on_time_share_and_what_it_counts() -> None:
    shown = json.dumps(as_dicts(digest_blocks(_digest())), ensure_ascii=False)
    # All three completed on time, but one open request is past its deadline: 3 of 4.
    assert ("*On time:* 75% within the deadline: 3 of 4 (completed on time, out of the 3 completed "
            "in the last 30 days and the 1 open past the deadline)") in shown
    assert "awaiting approval: *2* (access / export 2)" in shown
    assert "75% on time over 30 days" in digest_text(_digest())
    assert "— on time" in digest_text(_digest(completed_30_days=0, completed_on_time=0, overdue=0))


def test_one_label_per_request_type_in_slack_and_in_the_record() -> None:
    assert common.TYPE_LABELS is labels.TYPE_LABELS is record_pdf.TYPE_LABELS
