"""HTTP for every destination: retries with backoff and jitter, Retry-After, rate limits.

One `HttpClient` per sync run. Destinations call `client.request(...)` and only ever see a final
answer: 2xx or a 4xx refusal. Throttling (429) and server errors (5xx) are retried here, and
when the retry budget is spent they surface as TransientDestinationError so that the engine
leaves the records pending for the next run. Every request Headwater sends is idempotent (set
semantics or an idempotency key), which is why POST, PUT and DELETE are retried too.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.request import getproxies

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from activations.destinations.base import TransientDestinationError

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# Epoch-looking values in *-Reset headers (SendGrid, Braze); smaller ones are deltas (Klaviyo).
_EPOCH_THRESHOLD = 1_000_000_000


def reset_delay(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds until the vendor's rate-limit window resets, from whichever header it sends."""
    now = time.time() if now is None else now
    retry_after = headers.get("Retry-After")
    if retry_after:
        value = retry_after.strip()
        if value.replace(".", "", 1).isdigit():
            return max(0.0, float(value))
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - now)
        except (TypeError, ValueError):
            pass
    for name in ("X-RateLimit-Reset", "RateLimit-Reset", "X-Rate-Limit-Reset"):
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            value_f = float(raw.strip())
        except ValueError:
            continue
        return max(0.0, value_f - now) if value_f > _EPOCH_THRESHOLD else max(0.0, value_f)
    return None


class VendorAwareRetry(Retry):
    """urllib3 Retry that also waits for X-RateLimit-Reset / RateLimit-Reset on a 429.

    Plain Retry honours only Retry-After; SendGrid and Braze send an epoch reset instead.
    """

    def get_retry_after(self, response: Any) -> float | None:
        delay = super().get_retry_after(response)
        if delay is None and getattr(response, "status", None) == 429:
            delay = reset_delay(response.headers)
            if delay is not None:
                delay = min(delay, float(self.retry_after_max))
        return delay


class TokenBucket:
    """Client-side rate limiter: `rate` requests per second with bursts up to `burst`."""

    def __init__(
        self,
        rate: float,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._tokens = float(self.burst)
        self._clock = clock
        self._sleep = sleep
        self._last = clock()
        self._paused_until = 0.0
        self._lock = threading.Lock()

    def pause_for(self, seconds: float) -> None:
        """The vendor said its window is spent: send nothing for `seconds`."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)
            self._tokens = 0.0

    def acquire(self) -> float:
        """Block until a request may go; return the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                if now < self._paused_until:
                    delay = self._paused_until - now
                else:
                    self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
                    self._last = now
                    if self._tokens >= 1.0:
                        self._tokens -= 1.0
                        return waited
                    delay = (1.0 - self._tokens) / self.rate
            self._sleep(delay)
            waited += delay


@dataclass
class HttpSettings:
    total_retries: int = 5
    backoff_factor: float = 0.5
    backoff_max: float = 60.0
    backoff_jitter: float = 0.5
    timeout_seconds: float = 30.0
    # Longest single wait a vendor header may impose before the run gives up on the batch.
    retry_after_max: int = 300
    rate: float | None = None
    burst: int = 1
    # Fixed headers on every request (auth); kept out of logs.
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)


_CA_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


class HttpClient:
    """A requests Session with urllib3 retries, a token bucket and rate-limit header hooks."""

    def __init__(self, settings: HttpSettings) -> None:
        self.settings = settings
        retry = VendorAwareRetry(
            total=settings.total_retries,
            connect=settings.total_retries,
            read=settings.total_retries,
            status=settings.total_retries,
            backoff_factor=settings.backoff_factor,
            backoff_max=settings.backoff_max,
            backoff_jitter=settings.backoff_jitter,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"}),
            respect_retry_after_header=True,
            retry_after_max=settings.retry_after_max,
            raise_on_status=False,
        )
        self.session = requests.Session()
        adapter = HTTPAdapter(max_retries=retry, pool_connections=4, pool_maxsize=4)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers.update(settings.headers)
        # requests reads the proxy and CA-bundle variables (and ~/.netrc) from os.environ again
        # on every request: ~0.7 ms a send measured in the fast path's worker, more than the
        # webhook request itself. Without a proxy they are read once here, the CA bundle the
        # way requests picks it (REQUESTS_CA_BUNDLE, then CURL_CA_BUNDLE); with a proxy set,
        # requests keeps reading them itself, no_proxy included. ~/.netrc is not a credential
        # source here: every destination's credentials come from configuration.
        if not getproxies():
            self.session.trust_env = False
            bundle = next((os.environ[v] for v in _CA_VARIABLES if os.environ.get(v)), None)
            if bundle:
                self.session.verify = bundle
        self.limiter = TokenBucket(settings.rate, settings.burst) if settings.rate else None
        self.requests_sent = 0

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """Send with retries; return a 2xx/3xx/4xx response or raise TransientDestinationError."""
        if self.limiter is not None:
            self.limiter.acquire()
        kwargs.setdefault("timeout", self.settings.timeout_seconds)
        self.requests_sent += 1
        try:
            response = self.session.request(method, url, **kwargs)
        except requests.RequestException as exc:
            # The exception text carries the URL but never our headers, so it is safe to show.
            raise TransientDestinationError(
                f"{method} {url} failed after {self.settings.total_retries} retries: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        self._observe_limits(response)
        if response.status_code in RETRY_STATUSES:
            raise TransientDestinationError(
                f"{method} {url} answered {response.status_code} after "
                f"{self.settings.total_retries} retries: {response.text[:300]}"
            )
        return response

    def _observe_limits(self, response: requests.Response) -> None:
        """Pause proactively when the vendor says the window is spent."""
        if self.limiter is None:
            self.limiter = None if not _spent(response.headers) else TokenBucket(1000.0, 1000)
        if self.limiter is not None and _spent(response.headers):
            delay = reset_delay(response.headers)
            if delay:
                delay = min(delay, float(self.settings.retry_after_max))
                log.info("rate-limit window spent; pausing %.1fs", delay)
                self.limiter.pause_for(delay)

    def close(self) -> None:
        self.session.close()


def _spent(headers: Mapping[str, str]) -> bool:
    for name in ("X-RateLimit-Remaining", "RateLimit-Remaining", "X-Rate-Limit-Remaining"):
        raw = headers.get(name)
        if raw is not None:
            try:
                return float(raw.split(",")[0].strip()) <= 0
            except ValueError:
                return False
    return False
