"""`dsr-desk audit export`: a window of the audit trail for auditors, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from bot import cli
from services import audit
from storage.db import transaction
from storage.models import AuditEvent
from tests.conftest import child_env
from tests.factories import add_request, tamper_with_audit

ROOT = Path(__file__).resolve().parents[2]
SINCE, UNTIL = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 3, tzinfo=UTC)
WINDOW = ["--since", "2026-03-01", "--until", "2026-03-03"]
# Around both edges of the window: the last microsecond before, the first instant in, the last
# microsecond in, and the first instant after (--until is exclusive).
MOMENTS = [
    datetime(2026, 2, 27, 12, 0, tzinfo=UTC),
    datetime(2026, 2, 28, 23, 59, 59, 999999, tzinfo=UTC),
    SINCE,
    datetime(2026, 3, 2, 8, 15, 30, 250000, tzinfo=UTC),
    datetime(2026, 3, 2, 23, 59, 59, 999999, tzinfo=UTC),
    UNTIL,
    datetime(2026, 3, 9, 7, 0, tzinfo=UTC),
]
DETAILS = {"note": 'Ünïcode, "quotes", commas', "nested": {"b": [1, 2], "a": None}}


def _append(session_factory, at: datetime, n: int) -> None:
    with transaction(session_factory) as session:
        audit.record(session, action=f"test.event_{n}", actor="U_TESTER", at=at,
                     details={**DETAILS, "n": n})


@pytest.fixture
def trail(session_factory, database_url, tmp_path, monkeypatch) -> list[AuditEvent]:
    """The audit events, in seq order, of a trail around the window (one is a request's)."""
    for n, at in enumerate(MOMENTS):
        _append(session_factory, at, n)
        if at == SINCE:
            with transaction(session_factory) as session:
                add_request(session, at=SINCE + timedelta(hours=10))
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("DSR_DATA_DIR", str(tmp_path))
    return _events(session_factory)


def _events(session_factory) -> list[AuditEvent]:
    with session_factory() as session:
        return list(session.exec(select(AuditEvent).order_by(AuditEvent.seq)).all())


def _in(events: list[AuditEvent], since: datetime, until: datetime | None = None) -> list[int]:
    return [e.seq for e in events if since <= e.occurred_at and (until is None or e.occurred_at < until)]


def recomputed_hash(row: dict) -> str:
    """What an auditor does with a row (CSV or JSON), as the README describes it."""
    details = row["details"]
    request_id = row["request_id"]
    canonical = json.dumps(
        {
            "seq": int(row["seq"]),
            "occurred_at": row["occurred_at"].removesuffix("Z") + "+00:00",
            "actor": row["actor"],
            "action": row["action"],
            "request_id": int(request_id) if request_id not in ("", None) else None,
            "details": json.loads(details) if isinstance(details, str) else details,
            "prev_hash": row["prev_hash"],
        },
        sort_keys=True, separators=(",", ":"), ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _check_rows(rows: list[dict], events: list[AuditEvent]) -> None:
    """Each row is its event, its hash recomputes, and it follows the row (event) before it."""
    by_seq = {e.seq: e for e in events}
    for before, row in zip([None, *rows], rows, strict=False):
        event = by_seq[int(row["seq"])]
        assert row["hash"] == event.hash == recomputed_hash(row)
        assert datetime.fromisoformat(row["occurred_at"]) == event.occurred_at
        assert row["occurred_at"].endswith("Z")
        expected_prev = before["hash"] if before else by_seq[event.seq - 1].hash
        assert row["prev_hash"] == expected_prev  # the first row anchors to the event before it
        reference = f"DSR-{event.request_id:06d}" if event.request_id else ""
        assert row["reference"] == reference


def test_csv_window_parses_back_and_its_hashes_recompute(trail, tmp_path, capsys) -> None:
    out = tmp_path / "audit.csv"
    assert cli.main(["audit", "export", *WINDOW, "--format", "csv", "--out", str(out)]) == 0
    with out.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert tuple(reader.fieldnames) == audit.EXPORT_FIELDS
    expected = _in(trail, SINCE, UNTIL)
    assert [int(r["seq"]) for r in rows] == expected
    assert len(expected) == 4 and expected[0] > 1  # mid-chain, with the request's event
    _check_rows(rows, trail)
    assert any(r["reference"] == "DSR-000001" and r["request_id"] == "1" for r in rows)
    assert all(r["request_id"] == "" for r in rows if not r["reference"])
    details = next(r["details"] for r in rows if r["action"] == "test.event_3")
    assert details == audit.compact_json({**DETAILS, "n": 3}) == (
        '{"n":3,"nested":{"a":null,"b":[1,2]},"note":"Ünïcode, \\"quotes\\", commas"}')
    assert not out.with_name("audit.csv.partial").exists()
    captured = capsys.readouterr()
    assert captured.out == ""
    assert (f"Exported 4 events (#{expected[0]} to #{expected[-1]}) to {out}. Audit trail intact: "
            f"{len(trail)} events, head #{len(trail)} hash {trail[-1].hash}.") in captured.err


def test_json_document_ends_with_the_whole_chain_verified(trail, capsys) -> None:
    assert cli.main(["audit", "export", *WINDOW, "--format", "json"]) == 0
    captured = capsys.readouterr()
    document = json.loads(captured.out)
    assert list(document) == ["format", "version", "since", "until", "generated_at", "events", "chain"]
    assert document["format"] == "dsr-desk.audit-export" and document["version"] == 1
    assert (document["since"], document["until"]) == ("2026-03-01T00:00:00Z", "2026-03-03T00:00:00Z")
    assert datetime.fromisoformat(document["generated_at"]).tzinfo is not None
    assert document["generated_at"].endswith("Z")
    events = document["events"]
    assert [e["seq"] for e in events] == _in(trail, SINCE, UNTIL)
    assert all(list(e) == list(audit.EXPORT_FIELDS) for e in events)
    assert events[0]["details"] == {**DETAILS, "n": 2}  # an object, not text
    assert any(e["request_id"] == 1 for e in events)
    assert all(e["request_id"] is None for e in events if not e["reference"])
    _check_rows(events, trail)
    assert document["chain"] == {
        "verified": True, "problem": None, "checked": len(trail),
        "head_seq": trail[-1].seq, "head_hash": trail[-1].hash, "exported": len(events),
    }
    assert captured.err == ""


def test_without_until_the_export_runs_to_the_end(trail, tmp_path) -> None:
    out = tmp_path / "audit.json"
    assert cli.main(["audit", "export", "--since", "2026-03-02", "--format", "json", "--out", str(out)]) == 0
    document = json.loads(out.read_text(encoding="utf-8"))
    assert document["until"] is None
    assert [e["seq"] for e in document["events"]] == _in(trail, datetime(2026, 3, 2, tzinfo=UTC))
    assert document["events"][-1]["seq"] == trail[-1].seq


def test_an_empty_window_is_still_a_document(trail, capsys) -> None:
    assert cli.main(["audit", "export", "--since", "2027-01-01", "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["events"] == []
    assert document["chain"]["verified"] and document["chain"]["exported"] == 0
    assert cli.main(["audit", "export", "--since", "2027-01-01", "--format", "csv"]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [",".join(audit.EXPORT_FIELDS)]
    assert "Exported 0 events (none). Audit trail intact" in captured.err


def test_the_window_is_by_time_not_by_seq(session_factory, trail, capsys) -> None:
    # A replica whose clock runs behind appends an event dated inside the window after it.
    _append(session_factory, SINCE + timedelta(hours=1), 99)
    events = _events(session_factory)
    assert cli.main(["audit", "export", *WINDOW, "--format", "json"]) == 0
    exported = [e["seq"] for e in json.loads(capsys.readouterr().out)["events"]]
    assert exported == _in(events, SINCE, UNTIL)
    assert exported[-1] == events[-1].seq and exported[-2] < events[-2].seq


def test_a_tampered_trail_is_exported_with_the_problem_and_exit_1(engine, trail, tmp_path,
                                                                   capsys) -> None:
    # The altered event lies before the window: the whole chain is checked, not only the export.
    tamper_with_audit(engine, "UPDATE audit_event SET actor = 'U_FORGED' WHERE seq = 2")
    out = tmp_path / "audit.json"
    assert cli.main(["audit", "export", *WINDOW, "--format", "json", "--out", str(out)]) == 1
    document = json.loads(out.read_text(encoding="utf-8"))
    assert [e["seq"] for e in document["events"]] == _in(trail, SINCE, UNTIL)
    chain = document["chain"]
    assert chain["verified"] is False
    assert chain["problem"].startswith("audit event #2 (test.event_1 at") and "altered" in chain["problem"]
    assert chain["checked"] == 1
    assert "Audit trail BROKEN after 1 good events: audit event #2" in capsys.readouterr().err

    assert cli.main(["audit", "export", *WINDOW, "--format", "csv"]) == 1
    captured = capsys.readouterr()
    assert len(list(csv.DictReader(captured.out.splitlines()))) == len(document["events"])
    assert "Audit trail BROKEN after 1 good events: audit event #2 (test.event_1 at" in captured.err


@pytest.mark.parametrize(("dates", "named"), [
    (["--since", "03/01/2026"], "--since '03/01/2026' is not a date: expected YYYY-MM-DD"),
    (["--since", "2026-3-1"], "--since '2026-3-1' is not a date: expected YYYY-MM-DD"),
    (["--since", "20260301"], "--since '20260301' is not a date: expected YYYY-MM-DD"),
    (["--since", "2026-03-01", "--until", "2026-02-30"],
     "--until '2026-02-30' is not a date: expected YYYY-MM-DD"),
    (["--since", "2026-03-01T00:00"], "is not a date: expected YYYY-MM-DD"),
    (["--since", "2026-03-02", "--until", "2026-03-02"], "--until 2026-03-02 must be a later day"),
])
def test_a_bad_date_stops_with_exit_2_naming_the_format(dates, named, tmp_path, monkeypatch,
                                                        capsys) -> None:
    monkeypatch.setenv("DSR_DATA_DIR", str(tmp_path))
    out = tmp_path / "audit.csv"
    assert cli.main(["audit", "export", *dates, "--format", "csv", "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("dsr-desk: ") and named in captured.err
    assert captured.out == ""
    assert list(tmp_path.iterdir()) == []  # no file, and no database made either


def _shell(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    environment = child_env("DSR_", "DATABASE_")
    environment.update(PYTHONPATH=str(ROOT), **env)
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], cwd=ROOT, env=environment,
                          capture_output=True, text=True, encoding="utf-8", timeout=120)


def test_from_the_shell(trail, database_url, tmp_path) -> None:
    env = {"DATABASE_URL": database_url, "DSR_DATA_DIR": str(tmp_path)}
    result = _shell("audit", "export", *WINDOW, "--format", "csv", env=env)
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(result.stdout.splitlines()))
    assert [int(r["seq"]) for r in rows] == _in(trail, SINCE, UNTIL)
    _check_rows(rows, trail)
    assert "Audit trail intact" in result.stderr

    bad = _shell("audit", "export", "--since", "yesterday", "--format", "json", env=env)
    assert bad.returncode == 2
    assert bad.stderr == ("dsr-desk: --since 'yesterday' is not a date: expected YYYY-MM-DD "
                          "(a calendar day, from midnight UTC)\n")

    described = _shell("audit", "export", "--help", env=env)
    assert "starts mid-chain can still be checked" in " ".join(described.stdout.split())
