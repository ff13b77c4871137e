"""Retry behaviour of the HTTP layer against a real server on 127.0.0.1, case by case."""

from __future__ import annotations

import time

import pytest
from batch_receiver import BatchReceiver, Scripted

from activations.destinations.base import TransientDestinationError
from activations.http import HttpClient, HttpSettings, TokenBucket, reset_delay


def _client(**kw) -> HttpClient:
    settings = dict(total_retries=3, backoff_factor=0.01, backoff_jitter=0.01, backoff_max=2.0)
    settings.update(kw)
    return HttpClient(HttpSettings(**settings))


@pytest.fixture
def server():
    r = BatchReceiver(count_only=True).start()
    yield r
    r.stop()


@pytest.mark.parametrize(
    ("script", "final_status", "requests_made"),
    [
        pytest.param([Scripted(400, body={"error": "bad"})], 400, 1, id="fatal_400_not_retried"),
        pytest.param([Scripted(422)], 422, 1, id="fatal_422_not_retried"),
        pytest.param([Scripted(503)], 200, 2, id="retriable_503_then_ok"),
        pytest.param([Scripted(500), Scripted(502)], 200, 3, id="retriable_500_502_then_ok"),
        pytest.param(
            [Scripted(429, {"Retry-After": "1"})], 200, 2, id="retriable_429_retry_after"
        ),
        pytest.param(
            [Scripted(429, {"X-RateLimit-Reset": "__EPOCH_PLUS_1__"})], 200, 2,
            id="retriable_429_ratelimit_reset_epoch",
        ),
    ],
)
def test_retry_cases(server, script, final_status, requests_made):
    for s in script:
        for k, v in list(s.headers.items()):
            if v == "__EPOCH_PLUS_1__":
                s.headers[k] = str(int(time.time()) + 2)
    server.script = list(script)
    client = _client()
    response = client.request("POST", server.url + "/x", data=b"{}")
    assert response.status_code == final_status
    assert len(server.request_times) == requests_made


def test_429_waits_at_least_retry_after(server):
    server.script = [Scripted(429, {"Retry-After": "1"})]
    _client().request("PUT", server.url + "/x", data=b"{}")
    first, second = server.request_times
    assert second - first >= 0.9  # honoured the header, not the 0.01 s backoff


@pytest.mark.parametrize(
    "status", [pytest.param(503, id="503_exhausted"), pytest.param(429, id="429_exhausted")]
)
def test_exhausted_retries_raise_transient(server, status):
    server.script = [Scripted(status)] * 4
    with pytest.raises(TransientDestinationError, match=str(status)):
        _client().request("DELETE", server.url + "/x")
    assert len(server.request_times) == 4  # 1 + 3 retries


def test_connection_refused_is_transient():
    client = _client(total_retries=1)
    with pytest.raises(TransientDestinationError, match="failed after 1 retries"):
        client.request("POST", "http://127.0.0.1:9/x", data=b"{}")


def test_spent_window_pauses_next_request(server):
    reset = str(int(time.time()) + 2)
    server.script = [Scripted(200, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset})]
    client = _client()
    client.request("POST", server.url + "/x", data=b"{}")
    client.request("POST", server.url + "/x", data=b"{}")
    first, second = server.request_times
    assert second - first >= 0.5


def test_token_bucket_spaces_requests():
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    bucket = TokenBucket(rate=10, burst=2, clock=lambda: now[0], sleep=sleep)
    for _ in range(4):
        bucket.acquire()
    assert slept and sum(slept) == pytest.approx(0.2)  # two over the burst at 10/s


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param({"Retry-After": "7"}, 7.0, id="retry_after_seconds"),
        pytest.param({"RateLimit-Reset": "12"}, 12.0, id="ratelimit_reset_delta"),
        pytest.param({"X-RateLimit-Reset": "1000000100"}, 100.0, id="x_ratelimit_reset_epoch"),
        pytest.param({}, None, id="none"),
    ],
)
def test_reset_delay(headers, expected):
    assert reset_delay(headers, now=1_000_000_000) == expected


def test_proxy_from_the_environment_is_honoured(server, monkeypatch):
    """The client reads the environment once, but a proxy set there still carries requests:
    the destination here is unroutable (TEST-NET-2), so only the proxy can answer."""
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY",
                 "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", server.url)
    monkeypatch.setenv("http_proxy", server.url)
    response = _client(total_retries=0, timeout_seconds=5).request(
        "POST", "http://198.51.100.7/x", data=b"{}")
    assert response.status_code == 200
    assert len(server.request_times) == 1


def test_ca_bundle_from_the_environment_is_honoured(server, monkeypatch, tmp_path):
    """REQUESTS_CA_BUNDLE still decides what verifies TLS after the environment is read once:
    a bundle path that does not exist is refused before any connection is made."""
    missing = tmp_path / "no-such-bundle.pem"
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(missing))
    with pytest.raises(OSError, match="no-such-bundle"):
        _client(total_retries=0).request("POST", server.url.replace("http:", "https:") + "/x")
