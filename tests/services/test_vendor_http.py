"""VendorHTTP against a real local server with injected faults."""

from __future__ import annotations

import json

import httpx
import pytest

from services.connectors.http import Limits, VendorBusy, VendorHTTP, retry_after_seconds
from services.sandbox import server
from services.sandbox.traffic import FaultPlan, TrafficControl


def ok_app(environ, start_response):
    body = json.dumps({"path": environ["PATH_INFO"]}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


def error_body(status, retry_after):
    return "application/json", json.dumps({"error": f"E{status}"}).encode()


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def serve():
    running = []

    def start(**traffic_options):
        traffic = TrafficControl(ok_app, error_body, **traffic_options)
        running.append(server.start(traffic))
        return traffic, running[-1].url

    yield start
    for r in running:
        r.stop()


def make(url_limits=None, **limits) -> tuple[VendorHTTP, Sleeps]:
    sleeps = Sleeps()
    http = VendorHTTP(httpx.Client(), vendor="Vendor", sleep=sleeps,
                      limits=Limits(backoff_base=0.01, backoff_max=0.05, **limits))
    return http, sleeps


def test_429_is_retried_after_its_retry_after(serve) -> None:
    traffic, url = serve(faults=FaultPlan(error_rate=1.0, rate_limit_share=1.0, retry_after=0))
    http, sleeps = make(attempts=3)
    with pytest.raises(VendorBusy) as raised:
        http.request("GET", f"{url}/api/things?email=jane@example.com")
    assert traffic.stats.injected[429] == 3
    assert sleeps == [0.0, 0.0]  # Retry-After: 0 honoured, not the backoff
    assert "429 on GET /api/things" in str(raised.value)
    assert "jane" not in str(raised.value)  # never the query string


def test_5xx_backoff_then_success(serve) -> None:
    traffic, url = serve(faults=FaultPlan(error_rate=0.6, rate_limit_share=0.0, seed=3))
    http, sleeps = make(attempts=10)
    for n in range(20):
        assert http.request("GET", f"{url}/n/{n}").json() == {"path": f"/n/{n}"}
    injected = sum(traffic.stats.injected.values())
    assert injected > 5
    assert len(sleeps) == injected
    assert all(0 < s <= 0.06 for s in sleeps)
    assert http.calls == 20 + injected


def test_long_retry_after_goes_back_to_the_engine(serve) -> None:
    _, url = serve(faults=FaultPlan(error_rate=1.0, rate_limit_share=1.0, retry_after=120))
    http, sleeps = make(max_inline_wait=60)
    with pytest.raises(VendorBusy) as raised:
        http.request("GET", f"{url}/x")
    assert raised.value.retry_after == 120
    assert sleeps == []


def test_timeouts_are_retried_and_reported_without_the_query(serve) -> None:
    _, url = serve(faults=FaultPlan(slow_rate=1.0, slow_seconds=0.3))
    http, sleeps = make(attempts=2, timeout=0.05)
    with pytest.raises(VendorBusy, match=r"timeout on GET /slow") as raised:
        http.request("GET", f"{url}/slow?phone=%2B15550001")
    assert "15550001" not in str(raised.value)
    assert len(sleeps) == 1


def test_rate_limit_blocks_the_call_over_the_limit(serve) -> None:
    _, url = serve()
    http, _ = make(requests_per_minute=3)

    class Blocked(Exception):
        pass

    def refuse_to_wait(seconds: float) -> None:
        raise Blocked

    http.sleep = refuse_to_wait
    for _ in range(3):
        http.request("GET", f"{url}/ok")
    with pytest.raises(Blocked):
        http.request("GET", f"{url}/ok")
    assert http.calls == 3


@pytest.mark.parametrize(("header", "seconds"), [("7", 7.0), ("0", 0.0), ("nonsense", None),
                                                 (None, None), ("-3", 0.0)])
def test_retry_after_parsing(header, seconds) -> None:
    assert retry_after_seconds(header) == seconds
