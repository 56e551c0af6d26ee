"""The command line, run as a person runs it: a separate process."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import httpx
import sqlalchemy as sa

from bot.cli import COMMANDS
from bot.slack_standin import SlackStandIn
from services.sandbox import server
from tests.conftest import child_env


def dsr_desk(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environment = child_env("DSR_", "DATABASE_")
    environment["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args], cwd=cwd, env=environment,
        capture_output=True, text=True, timeout=120,
    )


def test_help_lists_every_command_with_a_description(tmp_path) -> None:
    result = dsr_desk("--help", cwd=tmp_path)
    assert result.returncode == 0
    for words, text, _, _ in COMMANDS:
        assert f"dsr-desk {words}" in result.stdout
        assert text in result.stdout
    assert {"run", "db upgrade", "audit verify"} <= {words for words, *_ in COMMANDS}


def test_help_and_usage_errors_import_no_heavy_library(tmp_path) -> None:
    # `--help` and a mistyped command need only argparse: bot.cli imports what a command needs
    # when it runs, so none of these may be loaded before one does.
    heavy = ("sqlalchemy", "alembic", "sqlmodel", "slack_sdk", "slack_bolt", "pydantic_settings",
             "cryptography")
    script = (
        "import sys\n"
        "from bot.cli import main\n"
        "for argv in (['--help'], ['audit', 'export', '--help'], ['no-such-command']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        f"print('imported:', *[m for m in {heavy!r} if m in sys.modules], file=sys.stderr)\n"
    )
    environment = child_env("DSR_", "DATABASE_")
    environment["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=environment,
                            capture_output=True, text=True, timeout=60)
    assert "usage: dsr-desk" in result.stdout and "invalid choice: 'no-such-command'" in result.stderr
    assert result.stderr.splitlines()[-1] == "imported:"


def test_upgrade_then_verify_then_tamper(tmp_path) -> None:
    upgraded = dsr_desk("db", "upgrade", cwd=tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr
    database = tmp_path / "var" / "dsr-desk.sqlite3"
    assert database.exists()

    # A few real events, written the way the product writes them.
    env = {"DATABASE_URL": f"sqlite:///{database}"}
    script = (
        "from datetime import UTC, datetime\n"
        "from services import audit\n"
        "from storage.db import make_engine, make_session_factory, transaction\n"
        f"f = make_session_factory(make_engine({env['DATABASE_URL']!r}))\n"
        "for n in range(3):\n"
        "    with transaction(f) as s:\n"
        "        audit.record(s, action='test.cli', actor='U', at=datetime.now(UTC), details={'n': n})\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=Path(__file__).parents[2])

    intact = dsr_desk("audit", "verify", cwd=tmp_path, env=env)
    assert intact.returncode == 0
    assert "intact: 3 events" in intact.stdout

    engine = sa.create_engine(env["DATABASE_URL"])
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER audit_event_no_update")
        conn.exec_driver_sql("UPDATE audit_event SET actor = 'U_FORGED' WHERE seq = 2")
    engine.dispose()
    broken = dsr_desk("audit", "verify", cwd=tmp_path, env=env)
    assert broken.returncode == 1
    assert "audit event #2 (test.cli at" in broken.stderr


def test_invalid_setting_stops_with_the_variable_named(tmp_path) -> None:
    result = dsr_desk("audit", "verify", cwd=tmp_path, env={"DSR_TIMEZONE": "Nowhere/Land"})
    assert result.returncode == 2
    assert "DSR_TIMEZONE" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_names_the_missing_settings(tmp_path) -> None:
    result = dsr_desk("run", "--http", cwd=tmp_path)
    assert result.returncode == 2
    assert ("Missing settings: SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET, DSR_APPROVALS_CHANNEL, "
            "DSR_APPROVERS. See the README, section 'Creating the Slack app'.") in result.stderr
    socket_mode = dsr_desk("run", cwd=tmp_path, env={"SLACK_BOT_TOKEN": "xoxb-1"})
    assert "Missing settings: SLACK_APP_TOKEN" in socket_mode.stderr


def test_run_says_what_stops_it_before_starting(tmp_path) -> None:
    env = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s", "DSR_APPROVERS": "U_APP",
           "DSR_APPROVALS_CHANNEL": "C0APPROVALS", "SLACK_API_URL": "http://127.0.0.1:9/api/"}
    stale = dsr_desk("run", "--http", cwd=tmp_path, env=env)
    assert (stale.returncode, stale.stderr.strip()) == (
        2, "dsr-desk: The database is not up to date: run `dsr-desk db upgrade`.")
    assert dsr_desk("db", "upgrade", cwd=tmp_path).returncode == 0
    for mode in (["--http"], []):
        unreachable = dsr_desk("run", *mode, cwd=tmp_path, env=env | {"SLACK_APP_TOKEN": "xapp-1"})
        assert unreachable.returncode == 2
        assert "Slack's Web API at http://127.0.0.1:9/api/ cannot be reached" in unreachable.stderr
        assert "Traceback" not in unreachable.stderr
    with server.serve(SlackStandIn(bot_token="xoxb-real").wsgi) as slack:
        refused = dsr_desk("run", "--http", cwd=tmp_path, env=env | {"SLACK_API_URL": f"{slack.url}/api/"})
    assert refused.returncode == 2
    assert "Slack refused the bot token (invalid_auth): copy the Bot User OAuth Token" in refused.stderr
    no_worker = dsr_desk("run", "--http", "--workers", "0", cwd=tmp_path, env=env)
    assert no_worker.returncode == 2  # argparse's usage error: nothing would answer Slack
    assert "--workers: expected a whole number of at least 1, not '0'" in no_worker.stderr


def test_sandbox_serve_answers_on_localhost(tmp_path) -> None:
    environment = child_env("DSR_", "DATABASE_")
    environment["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    server = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "sandbox", "serve", "zendesk", "--seed", "2"],
        cwd=tmp_path, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        banner = server.stdout.readline()
        url = banner.split(" at ")[1].strip()
        assert "credentials: email=agent@example.com, token=sandbox-token" in server.stdout.readline()
        response = httpx.get(f"{url}/api/v2/users/search.json", params={"query": "example.org"},
                             auth=("agent@example.com/token", "sandbox-token"))
        assert response.status_code == 200
        assert all(u["email"].endswith(("example.org", "example.com", "example.net"))
                   for u in response.json()["users"])
        assert httpx.get(f"{url}/api/v2/users/search.json").status_code == 401
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_demo_logs_no_personal_data(tmp_path) -> None:
    result = dsr_desk("demo", cwd=tmp_path, env={"DSR_LOG_LEVEL": "INFO"})
    assert result.returncode == 0, result.stderr
    email = re.search(r"subject_emails=(\S+),", result.stdout).group(1)
    log_lines = [line for line in (result.stdout + result.stderr).splitlines()
                 if re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", line)]
    assert not [line for line in log_lines if email in line or "%40" in line]


def test_jobs_are_listed_and_run_once_from_the_command_line(tmp_path) -> None:
    assert dsr_desk("db", "upgrade", cwd=tmp_path).returncode == 0
    listed = dsr_desk("jobs", "list", cwd=tmp_path)
    assert [line.split()[0] for line in listed.stdout.splitlines()] == [
        "execute", "status_updates", "reminders", "escalation", "digest", "deliverables", "retention",
        "audit_anchor"]
    retention = dsr_desk("jobs", "run-once", "retention", cwd=tmp_path)
    assert retention.returncode == 0, retention.stderr
    assert retention.stdout == ("retention: purged 0 export(s), deleted 0 file(s) in Slack; reduced 0 "
                                "request(s)' identifiers\n")
    digest = dsr_desk("jobs", "run-once", "digest", cwd=tmp_path)
    assert digest.stdout == "digest: no digest: DSR_DIGEST_CHANNEL is not set\n"
    wrong = dsr_desk("jobs", "run-once", "digset", cwd=tmp_path)
    assert wrong.returncode == 2 and "invalid choice: 'digset'" in wrong.stderr


def test_the_data_map_is_imported_and_exported_as_a_file(tmp_path, monkeypatch, capsys) -> None:
    from bot.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DSR_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DSR_MANAGERS", "U0MGR")
    assert main(["db", "upgrade"]) == 0
    declared = {"format": 1, "systems": [{
        "name": "payroll", "label": "Payroll", "reach": "assisted", "owner": "U0HR",
        "categories": ["payslips"], "request_types": ["access"], "instructions": "Export it."}]}
    (tmp_path / "map.json").write_text(json.dumps(declared))
    capsys.readouterr()
    assert main(["systems", "import", "map.json", "--as", "U0MGR"]) == 0
    assert capsys.readouterr().out == "added: payroll\nchanged: none\nunchanged: none\n"
    assert main(["systems", "export", "--as", "U0MGR", "--output", "out.json"]) == 0
    exported = json.loads((tmp_path / "out.json").read_text())
    assert exported["systems"][0] | {"webhook_url": None} == declared["systems"][0] | {
        "webhook_url": None}
    assert main(["systems", "import", "map.json", "--as", "U0NOBODY"]) == 2  # not a manager
    assert "You are not allowed to change the data map" in capsys.readouterr().err
