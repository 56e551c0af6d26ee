"""Anchors of the audit chain outside the database, on SQLite and PostgreSQL: a tail cut with the
chain head rewound, or a rewritten chain, no longer passes `dsr-desk audit verify`."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlmodel import select

from bot import cli
from bot.app import build_core
from bot.settings import Settings
from handlers.views.common import as_dicts
from handlers.views.reports import digest_blocks, digest_text
from services import audit, audit_anchor
from services.errors import InvalidRequest
from services.scheduled import digest
from storage.db import transaction
from storage.models import AuditEvent
from tests.conftest import ManualClock
from tests.factories import UTC_ZONE, add_request, tamper_with_audit

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def _append(session_factory, count: int, start: int = 0) -> None:
    for n in range(start, start + count):
        with transaction(session_factory) as session:
            audit.record(session, action=f"test.event_{n}", actor="U_TESTER",
                         at=T0 + timedelta(minutes=n), details={"n": n})


def _hashes(session_factory) -> dict[int, str]:
    with session_factory() as session:
        return dict(session.exec(select(AuditEvent.seq, AuditEvent.hash)).all())


def _anchor(session_factory, path, at: datetime = T0) -> audit_anchor.Anchor:
    with session_factory() as session:
        return audit_anchor.append(session, path, now=at)


def _cut_tail(engine, session_factory, keep: int) -> None:
    """The attack: delete the last events and rewind the chain head row to the new last one."""
    new_last = _hashes(session_factory)[keep]
    tamper_with_audit(engine, f"DELETE FROM audit_event WHERE seq > {keep}",
                      f"UPDATE audit_chain_head SET last_seq = {keep}, last_hash = '{new_last}' "
                      "WHERE id = 1")


@pytest.fixture
def cli_env(database_url, tmp_path, monkeypatch):
    """`dsr-desk` on the test's database, its anchors file at the default place under the data dir."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("DSR_DATA_DIR", str(tmp_path))
    return tmp_path / "audit-anchors.jsonl"


def test_a_cut_tail_with_the_head_rewound_fails_naming_the_gap(engine, session_factory, cli_env,
                                                               capsys) -> None:
    _append(session_factory, 3)
    assert cli.main(["audit", "anchor"]) == 0
    _append(session_factory, 3, start=3)
    assert cli.main(["audit", "anchor"]) == 0
    anchored = _hashes(session_factory)[6]
    capsys.readouterr()
    _cut_tail(engine, session_factory, keep=4)
    with session_factory() as session:
        assert audit.verify(session).ok  # the chain and its head row agree: the defect
    assert cli.main(["audit", "verify"]) == 1
    err = capsys.readouterr().err
    assert ("Audit trail does NOT match its anchors: audit events #5 to #6 are missing: the trail "
            "ends at event #4, but the anchor written ") in err
    assert f"({cli_env}, line 2) recording event #6 with hash {anchored}" in err
    # The same, with the file named explicitly.
    assert cli.main(["audit", "verify", "--anchors", str(cli_env)]) == 1
    assert "audit events #5 to #6 are missing" in capsys.readouterr().err


def test_events_appended_after_a_cut_do_not_hide_it(engine, session_factory, tmp_path) -> None:
    """Cut, rewind, and let the bot append again up to the old length: the numbers are back, the
    anchored hash is not."""
    path = tmp_path / "anchors.jsonl"
    _append(session_factory, 5)
    _anchor(session_factory, path)
    _cut_tail(engine, session_factory, keep=3)
    _append(session_factory, 3, start=100)
    with session_factory() as session:
        assert audit.verify(session).ok
        problem = audit_anchor.check(session, audit_anchor.read(path))
    assert problem.startswith("audit event #5 has hash ")
    assert "(the trail was rewritten at or before that event)" in problem


def test_an_intact_trail_matches_its_anchors(session_factory, cli_env, capsys) -> None:
    clock = ManualClock(T0)
    for _ in range(3):
        _append(session_factory, 2, start=len(_hashes(session_factory)))
        _anchor(session_factory, cli_env, clock.now())
        clock.advance(hours=1)
    _append(session_factory, 1, start=10)  # events after the newest anchor are fine
    head = _hashes(session_factory)
    assert cli.main(["audit", "verify"]) == 0
    out = capsys.readouterr().out
    assert f"Audit trail intact: 7 events, last hash {head[7]}." in out
    assert f"It matches its 3 anchor(s), the newest at event #6 ({cli_env}, line 3)." in out
    assert cli.main(["audit", "verify", "--anchor", f"7:{head[7]}", "--anchor", f"#2:{head[2]}"]) == 0
    assert "It matches its 5 anchor(s), the newest at event #7 (--anchor 7:" in capsys.readouterr().out


def test_an_altered_anchored_event_fails(engine, session_factory, cli_env, capsys) -> None:
    _append(session_factory, 4)
    _anchor(session_factory, cli_env)
    tamper_with_audit(engine, "UPDATE audit_event SET actor = 'U_SOMEONE_ELSE' WHERE seq = 4")
    assert cli.main(["audit", "verify"]) == 1
    assert "audit event #4 (test.event_3 at" in capsys.readouterr().err


def test_a_rewritten_chain_fails_at_the_anchor(engine, session_factory, cli_env, capsys) -> None:
    """An insider who edits an event and recomputes every later hash and the head row passes the
    chain check, but not the anchor."""
    _append(session_factory, 5)
    _anchor(session_factory, cli_env)
    original = _hashes(session_factory)[5]
    tamper_with_audit(engine, "UPDATE audit_event SET actor = 'U_SOMEONE_ELSE' WHERE seq = 2")
    with session_factory() as session:
        prev, rewritten = audit.GENESIS_HASH, []
        for event in session.exec(select(AuditEvent).order_by(AuditEvent.seq)).all():
            event.prev_hash = prev
            event.hash = prev = audit.event_hash(event)
            rewritten.append({"s": event.seq, "p": event.prev_hash, "h": event.hash})
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE audit_event SET hash = 'tmp-' || CAST(seq AS VARCHAR(20))")
        conn.execute(sa.text("UPDATE audit_event SET prev_hash = :p, hash = :h WHERE seq = :s"),
                     rewritten)
        conn.execute(sa.text("UPDATE audit_chain_head SET last_hash = :h WHERE id = 1"),
                     {"h": rewritten[-1]["h"]})
    with session_factory() as session:
        assert audit.verify(session).ok
    assert cli.main(["audit", "verify"]) == 1
    err = capsys.readouterr().err
    assert f"audit event #5 has hash {rewritten[-1]['h']}, but the anchor written" in err
    assert f"recording event #5 with hash {original}" in err


def test_the_digest_carries_the_head_and_it_checks_the_trail(engine, session_factory, cli_env,
                                                             capsys) -> None:
    """What the team's Slack history holds is enough for an auditor: pasted back, it catches a cut."""
    _append(session_factory, 5)
    head = _hashes(session_factory)[5]
    with session_factory() as session:
        figures = digest.build(session, now=T0 + timedelta(hours=1), zone=UTC_ZONE)
    assert figures.chain_head == (5, head)
    assert f"Audit chain: event #5, hash {head[:4]}…{head[-4:]}." in digest_text(figures)
    shown = json.dumps(as_dicts(digest_blocks(figures)), ensure_ascii=False)
    pasted = re.search(r"`(\d+:[0-9a-f]{64})`", shown)[1]
    assert pasted == f"5:{head}"
    assert cli.main(["audit", "verify", "--anchor", pasted]) == 0
    _cut_tail(engine, session_factory, keep=3)
    assert cli.main(["audit", "verify", "--anchor", pasted]) == 1
    err = capsys.readouterr().err
    assert ("audit events #4 to #5 are missing: the trail ends at event #3, but the anchor "
            f"(--anchor 5:{head[:8]}…) recording event #5 with hash {head}") in err


def test_an_empty_trail_has_no_head_in_the_digest(session_factory) -> None:
    with session_factory() as session:
        figures = digest.build(session, now=T0, zone=UTC_ZONE)
    assert figures.chain_head is None
    assert digest_text(figures).endswith("Audit chain: no events yet.")


def test_the_anchor_job_appends_one_line_per_run_and_no_personal_data(database_url, tmp_path,
                                                                      session_factory) -> None:
    path = tmp_path / "elsewhere" / "anchors.jsonl"
    settings = Settings(_env_file=None, DATABASE_URL=database_url, DSR_DATA_DIR=str(tmp_path),
                        DSR_AUDIT_ANCHOR_FILE=str(path))
    core = build_core(settings, clock=ManualClock(T0))
    assert core.jobs.run("audit_anchor") == "nothing to anchor: the audit trail is empty"
    assert not path.exists()
    with transaction(session_factory) as session:
        add_request(session, T0)  # Jane Doe, jane.doe@example.com
    runs = []
    for _ in range(3):
        runs.append(core.jobs.run("audit_anchor"))
        core.jobs.clock.advance(hours=1)
    head = max(_hashes(session_factory).items())
    assert runs == [f"anchored event #{head[0]}"] * 3
    text = path.read_text("utf-8")
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines == [{"format": "dsr-desk.audit-anchor", "seq": head[0], "hash": head[1],
                      "at": f"2026-03-02T{hour}:30:00Z"} for hour in ("09", "10", "11")]
    assert "jane" not in text.lower() and "U_REQUESTER" not in text


def test_a_damaged_anchors_file_is_named(session_factory, cli_env, capsys) -> None:
    _append(session_factory, 2)
    _anchor(session_factory, cli_env)
    with cli_env.open("a", encoding="utf-8") as f:
        f.write('{"format": "dsr-desk.audit-anchor", "seq": 2, "hash": "forged"}\n')
    with pytest.raises(InvalidRequest, match="line 2, is not an audit anchor"):
        audit_anchor.read(cli_env)
    assert cli.main(["audit", "verify"]) == 2
    assert "line 2, is not an audit anchor" in capsys.readouterr().err


def test_a_missing_anchors_file_is_an_error_only_when_named(session_factory, cli_env, tmp_path,
                                                            capsys) -> None:
    _append(session_factory, 1)
    assert cli.main(["audit", "verify"]) == 0
    assert f"No anchors ({cli_env} does not exist)" in capsys.readouterr().out
    assert cli.main(["audit", "verify", "--anchors", str(tmp_path / "nope.jsonl")]) == 2
    with pytest.raises(SystemExit):
        cli.main(["audit", "verify", "--anchor", "5:abcd…1234"])
    assert "is not SEQ:HASH" in capsys.readouterr().err
