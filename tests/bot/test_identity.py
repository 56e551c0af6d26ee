"""A worker's stable identity: the same after its process dies however it dies, never shared by
two live processes."""

from __future__ import annotations

import signal
import subprocess
import sys

from bot.identity import claim

URL = "sqlite:///identity-test.sqlite3"


def test_live_workers_never_share_an_id_and_a_released_slot_is_taken_again(tmp_path) -> None:
    first, second = claim(URL, "worker", tmp_path), claim(URL, "worker", tmp_path)
    assert first.id.endswith(":worker:1") and second.id.endswith(":worker:2")
    assert claim("postgresql://other/db", "worker", tmp_path).id.endswith(":worker:1")
    first.release()
    again = claim(URL, "worker", tmp_path)
    assert again.id == first.id
    for identity in (second, again):
        identity.release()


def test_a_killed_worker_is_replaced_under_its_own_id(tmp_path) -> None:
    """SIGKILL leaves no chance to clean up: the kernel drops the lock, the replacement takes
    the slot, and with it the id its leases name (Worker.recover releases them at start)."""
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys, pathlib; from bot.identity import claim; "
         f"i = claim({URL!r}, 'worker', pathlib.Path({str(tmp_path)!r})); print(i.id, flush=True);"
         " sys.stdin.read()"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    killed_id = child.stdout.readline().strip()
    assert killed_id.endswith(":worker:1")
    assert claim(URL, "worker", tmp_path).id.endswith(":worker:2")  # while it lives
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert claim(URL, "worker", tmp_path).id == killed_id
