"""Fault injection for the stand-ins: random rates plus scripted faults.

A 5xx, a timeout or a dropped connection can strike either before the stand-in applies a request
or after it (the vendor did the work, then the answer was lost). The second kind is what makes a
"no duplicates" test meaningful: a client that blindly resends a non-idempotent request after it
will create a second message.
"""

from __future__ import annotations

import random
import threading
from collections import deque
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

FaultKind = Literal["429", "5xx", "timeout", "drop"]
Phase = Literal["before", "after"]
PhasePolicy = Literal["before", "after", "both"]

FAULT_KINDS: tuple[str, ...] = ("429", "5xx", "timeout", "drop")
# Bounds that keep a misconfigured plan from hanging a test run.
MAX_TIMEOUT_SECONDS = 120.0
MAX_SCRIPTED = 100_000


@dataclass(frozen=True)
class Fault:
    """One fault, answered instead of (phase before) or after (phase after) the real work.

    429 never applies the request: every vendor documents a throttled request as not processed.
    """

    kind: FaultKind
    phase: Phase = "before"
    status: int = 503  # for kind 5xx
    # Seconds for the vendor's Retry-After header; None = the vendor's default (some send none).
    retry_after: float | None = None
    timeout_seconds: float = 5.0  # for kind timeout: hold the connection this long, then close

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {FAULT_KINDS}")
        if self.phase not in ("before", "after"):
            raise ValueError(f"fault phase must be 'before' or 'after', not {self.phase!r}")
        if self.kind == "429" and self.phase != "before":
            raise ValueError("a 429 is never applied: its phase must be 'before'")
        if not 500 <= self.status <= 599:
            raise ValueError(f"a 5xx fault needs a status in 500..599, not {self.status}")
        if not 0 <= self.timeout_seconds <= MAX_TIMEOUT_SECONDS:
            raise ValueError(f"timeout_seconds must be within 0..{MAX_TIMEOUT_SECONDS}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Fault:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class FaultPlan:
    """Random faults per request, and records the stand-in refuses one by one.

    Rates are probabilities per request to a vendor route (admin routes are never faulted).
    `phase` says when a 5xx/timeout/drop strikes: before the state change, after it, or either
    (a coin flip per fault).
    """

    rate_429: float = 0.0
    rate_5xx: float = 0.0
    rate_timeout: float = 0.0
    rate_drop: float = 0.0
    # Probability that one record of a batch is refused with the vendor's per-record error
    # (transient: the same record may be accepted next time).
    rate_reject: float = 0.0
    # Identifiers (email, phone, external id, hashed id, idempotency key...) always refused.
    reject_ids: frozenset[str] = field(default_factory=frozenset)
    phase: PhasePolicy = "both"
    retry_after: float | None = None
    timeout_seconds: float = 5.0
    status_5xx: int = 503
    seed: int | None = None

    def __post_init__(self) -> None:
        rates = (self.rate_429, self.rate_5xx, self.rate_timeout, self.rate_drop)
        if any(not 0.0 <= r <= 1.0 for r in (*rates, self.rate_reject)):
            raise ValueError("fault rates are probabilities within 0..1")
        if sum(rates) > 1.0:
            raise ValueError("rate_429 + rate_5xx + rate_timeout + rate_drop must not exceed 1")
        if self.phase not in ("before", "after", "both"):
            raise ValueError(f"phase must be before, after or both, not {self.phase!r}")
        if not isinstance(self.reject_ids, frozenset):
            object.__setattr__(self, "reject_ids", frozenset(self.reject_ids))
        # Validates status and timeout bounds once, with the same rules as a scripted fault.
        Fault("5xx", status=self.status_5xx, timeout_seconds=self.timeout_seconds)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["reject_ids"] = sorted(self.reject_ids)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FaultPlan:
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        if "reject_ids" in kwargs:
            kwargs["reject_ids"] = frozenset(str(x) for x in kwargs["reject_ids"])
        return cls(**kwargs)


class FaultInjector:
    """Draws faults for one stand-in: scripted ones first (FIFO), then the plan's rates."""

    def __init__(self, plan: FaultPlan | None = None) -> None:
        self._lock = threading.Lock()
        self._scripted: deque[Fault] = deque()
        self._plan = plan or FaultPlan()
        self._rng = random.Random(self._plan.seed)
        self.injected: dict[str, int] = {}

    @property
    def plan(self) -> FaultPlan:
        return self._plan

    def set_plan(self, plan: FaultPlan) -> None:
        with self._lock:
            self._plan = plan
            self._rng = random.Random(plan.seed)

    def script(self, fault: Fault, count: int = 1) -> None:
        """Answer the next `count` vendor requests with `fault` (after earlier scripted ones)."""
        with self._lock:
            if len(self._scripted) + count > MAX_SCRIPTED:
                raise ValueError(f"at most {MAX_SCRIPTED} scripted faults may be pending")
            self._scripted.extend([fault] * count)

    def clear_script(self) -> None:
        with self._lock:
            self._scripted.clear()

    def pending_scripted(self) -> int:
        with self._lock:
            return len(self._scripted)

    def draw(self) -> Fault | None:
        with self._lock:
            fault = self._scripted.popleft() if self._scripted else self._draw_random()
            if fault is not None:
                key = f"{fault.kind}:{fault.phase}"
                self.injected[key] = self.injected.get(key, 0) + 1
            return fault

    def _draw_random(self) -> Fault | None:
        plan = self._plan
        total = plan.rate_429 + plan.rate_5xx + plan.rate_timeout + plan.rate_drop
        if total <= 0.0:
            return None
        x = self._rng.random()
        if x >= total:
            return None
        if x < plan.rate_429:
            return Fault("429", retry_after=plan.retry_after)
        phase: Phase
        if plan.phase == "both":
            phase = "after" if self._rng.random() < 0.5 else "before"
        else:
            phase = plan.phase
        if x < plan.rate_429 + plan.rate_5xx:
            kind: FaultKind = "5xx"
        elif x < plan.rate_429 + plan.rate_5xx + plan.rate_timeout:
            kind = "timeout"
        else:
            kind = "drop"
        return Fault(
            kind, phase=phase, status=plan.status_5xx, timeout_seconds=plan.timeout_seconds
        )

    def rejects(self, *identifiers: object) -> bool:
        """Whether the record carrying these identifiers is refused this time."""
        plan = self._plan
        if plan.reject_ids and any(
            i is not None and str(i) in plan.reject_ids for i in identifiers
        ):
            return True
        if plan.rate_reject <= 0.0:
            return False
        with self._lock:
            return self._rng.random() < plan.rate_reject
