"""The pieces of HTTP mode's process layout that a whole server run does not pin down."""

from __future__ import annotations

import threading

from bot.http import WakePipe


def test_a_wake_reaches_the_jobs_process_and_a_full_pipe_never_blocks_a_worker() -> None:
    pipe = WakePipe()
    for _ in range(100_000):  # far more than a pipe holds, with nobody reading
        pipe.send()
    woken = threading.Event()
    pipe.listen(woken.set)
    assert woken.wait(5)
