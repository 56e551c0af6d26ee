"""Rate limits and injected faults in front of a stand-in, as WSGI middleware.

A fault is decided before the request reaches the stand-in, so an injected 429 or 5xx never
changes its state: a run with faults must end in exactly the state of a run without them.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

# (status, retry_after or None) -> (content type, body); each vendor answers in its own format.
ErrorBody = Callable[[int, int | None], tuple[str, bytes]]
# (limit, remaining, seconds until the window frees a call) -> headers added to every answer that
# passed the limit; each vendor names its rate-limit headers its own way.
LimitHeaders = Callable[[int, int, int], list[tuple[str, str]]]


def x_rate_limit_headers(limit: int, remaining: int, reset: int) -> list[tuple[str, str]]:
    """The default: `X-Rate-Limit` and `X-Rate-Limit-Remaining`."""
    return [("X-Rate-Limit", str(limit)), ("X-Rate-Limit-Remaining", str(remaining))]

_REASONS = {429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
            503: "Service Unavailable", 504: "Gateway Timeout"}


@dataclass
class FaultPlan:
    error_rate: float = 0.0  # share of calls answered with an injected 429 or 5xx
    rate_limit_share: float = 0.5  # of the injected faults, the share that are 429s
    retry_after: int = 0  # seconds, in the injected 429s' Retry-After
    slow_rate: float = 0.0  # share of calls answered only after slow_seconds
    slow_seconds: float = 0.0
    seed: int = 0


@dataclass
class TrafficStats:
    calls: Counter[str] = field(default_factory=Counter)  # "GET /api/v2/users" -> count
    injected: Counter[int] = field(default_factory=Counter)  # status -> count
    rate_limited: int = 0

    @property
    def total(self) -> int:
        return sum(self.calls.values())


class TrafficControl:
    """Counts calls, enforces a per-minute limit, injects faults; the rest reaches `app`."""

    def __init__(
        self,
        app: Any,
        error_body: ErrorBody,
        *,
        requests_per_minute: int | None = None,
        faults: FaultPlan | None = None,
        exempt: Callable[[str], bool] = lambda path: False,
        clock: Callable[[], float] = time.monotonic,
        limit_headers: LimitHeaders = x_rate_limit_headers,
    ) -> None:
        self.app = app
        self.error_body = error_body
        self.requests_per_minute = requests_per_minute
        self.faults = faults or FaultPlan()
        self.exempt = exempt
        self.clock = clock
        self.limit_headers = limit_headers
        self.stats = TrafficStats()
        self._random = random.Random(self.faults.seed)
        self._window: deque[float] = deque()
        self._lock = threading.Lock()

    def set_faults(self, faults: FaultPlan) -> None:
        with self._lock:
            self.faults = faults
            self._random = random.Random(faults.seed)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        with self._lock:
            self.stats.calls[f"{environ.get('REQUEST_METHOD')} {path}"] += 1
            decision = None if self.exempt(path) else self._decide()
            slow = bool(self.faults.slow_rate) and self._random.random() < self.faults.slow_rate
            remaining = max(0, (self.requests_per_minute or 0) - len(self._window))
            reset = (max(1, math.ceil(60 - (self.clock() - self._window[0])))
                     if self._window else 60)
        if decision is not None:
            status, retry_after = decision
            return self._error(start_response, status, retry_after)
        if slow:
            time.sleep(self.faults.slow_seconds)
        if not self.requests_per_minute:
            return self.app(environ, start_response)
        limit_headers = self.limit_headers(self.requests_per_minute, remaining, reset)

        def start_with_limits(status: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
            return start_response(status, headers + limit_headers, *exc)

        return self.app(environ, start_with_limits)

    def _decide(self) -> tuple[int, int | None] | None:
        """Under the lock: a 429 for the real limit, an injected fault, or None to pass."""
        if self.requests_per_minute:
            now = self.clock()
            while self._window and now - self._window[0] >= 60:
                self._window.popleft()
            if len(self._window) >= self.requests_per_minute:
                self.stats.rate_limited += 1
                return 429, max(1, int(60 - (now - self._window[0])) + 1)
            self._window.append(now)
        plan = self.faults
        if plan.error_rate and self._random.random() < plan.error_rate:
            status = 429 if self._random.random() < plan.rate_limit_share else self._random.choice(
                [500, 502, 503, 504]
            )
            self.stats.injected[status] += 1
            return status, plan.retry_after if status == 429 else None
        return None

    def _error(self, start_response: Callable[..., Any], status: int,
               retry_after: int | None) -> list[bytes]:
        content_type, body = self.error_body(status, retry_after)
        headers = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
        if retry_after is not None:
            headers.append(("Retry-After", str(retry_after)))
        start_response(f"{status} {_REASONS.get(status, 'Error')}", headers)
        return [body]
