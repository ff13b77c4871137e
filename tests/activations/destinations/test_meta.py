"""Meta Custom Audiences client against the Meta stand-in (real HTTP on 127.0.0.1)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import pytest

from activations.destinations.base import (
    Action,
    DestinationAuthError,
    DestinationConfig,
    Outcome,
    Record,
    TransientDestinationError,
)
from activations.destinations.meta import MetaDestination
from activations.http import HttpClient, HttpSettings
from activations.standins.faults import Fault, FaultPlan
from activations.standins.meta import MetaConfig, MetaStandin

TOKEN = MetaConfig().access_token
AUDIENCE = "23850000000000001"
# Meta's published examples (conversions-api customer-information-parameters page).
JOHN_EMAIL = "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"
PHONE_650 = "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176"
MARY = "6915771be1c5aa0c886870b6951b03d7eafc121fea0e80a5ea83beb7c449f4ec"


def h(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def fast_http(retries: int = 2) -> HttpClient:
    return HttpClient(HttpSettings(total_retries=retries, backoff_factor=0.0,
                                   backoff_jitter=0.0, retry_after_max=1))


@pytest.fixture
def meta() -> Iterator[MetaStandin]:
    with MetaStandin() as standin:
        yield standin


def make(url: str, token: str = TOKEN, **opts: Any) -> MetaDestination:
    options = {"audience_id": AUDIENCE, **opts}
    return MetaDestination(DestinationConfig("meta", url, {"access_token": token}, options),
                           fast_http())


def person(n: int, action: Action = Action.ADD, **fields: Any) -> Record:
    base = {"email": f"user{n}@example.com", "phone": f"+1650555{n:04d}"}
    return Record(f"p{n}", action, {**base, **fields}, f"k{n}-{action}")


def test_rows_are_hashed_per_meta_published_examples(meta: MetaStandin) -> None:
    rec = Record("p1", Action.ADD, {"email": "John_Smith@gmail.com", "phone": "(650)555-1212",
                                    "first_name": "Mary", "last_name": None}, "k1")
    assert make(meta.url).send_batch([rec])[0].outcome is Outcome.DELIVERED
    assert meta.members(AUDIENCE) == {f"{JOHN_EMAIL}|{PHONE_650}|{MARY}|"}
    sent = meta.request_log()[0]
    assert sent.method == "POST" and sent.path == f"/v25.0/{AUDIENCE}/users"


def test_remove_deletes_the_same_rows(meta: MetaStandin) -> None:
    dest = make(meta.url, schema=["EMAIL"])
    dest.send_batch([person(1), person(2)])
    results = dest.send_batch([person(1, Action.REMOVE)])
    assert results[0].outcome is Outcome.DELIVERED
    assert meta.members(AUDIENCE) == {h("user2@example.com")}
    assert meta.request_log()[-1].method == "DELETE"


def test_session_is_sent_and_stable_for_a_resent_batch(meta: MetaStandin) -> None:
    dest = make(meta.url)
    dest.send_batch([person(1), person(2)])
    dest.send_batch([person(2), person(1)])
    [(_, sid)] = list(meta.sessions())
    state = meta.sessions()[(AUDIENCE, sid)]
    assert state["batches"] == [1, 1] and state["stage"] == "finished"


def test_sampled_invalid_entry_is_rejected_others_delivered(meta: MetaStandin) -> None:
    meta.set_faults(FaultPlan(reject_ids=frozenset({h("user2@example.com")})))
    results = make(meta.url, schema=["EMAIL"]).send_batch([person(1), person(2), person(3)])
    assert [r.outcome for r in results] == [Outcome.DELIVERED, Outcome.REJECTED,
                                            Outcome.DELIVERED]
    assert "fault plan" in (results[1].error or "")


@pytest.mark.parametrize(
    ("fields", "outcome"),
    [({"email": "not-an-email", "phone": None}, Outcome.REJECTED),
     ({"email": "not-an-email", "phone": "+16505551212"}, Outcome.DELIVERED)],
    ids=["no_matchable_key_rejected_locally", "bad_email_blanked_phone_kept"],
)
def test_local_validation(meta: MetaStandin, fields: dict[str, Any], outcome: Outcome) -> None:
    result = make(meta.url).send_batch([Record("p", Action.ADD, fields, "k")])[0]
    assert result.outcome is outcome
    if outcome is Outcome.DELIVERED:
        assert meta.members(AUDIENCE) == {f"|{h('16505551212')}||"}
    else:
        assert meta.request_log() == []


@pytest.mark.parametrize("code", [17, 613], ids=["code_17", "code_613"])
def test_graph_throttle_in_400_is_transient(code: int) -> None:
    with MetaStandin(MetaConfig(throttle_code=code)) as meta:
        meta.script(Fault("429"))
        with pytest.raises(TransientDestinationError, match=f"#{code}"):
            make(meta.url).send_batch([person(1)])
        assert meta.members(AUDIENCE) == set()


def test_bad_token_is_an_auth_error_without_the_token(meta: MetaStandin) -> None:
    with pytest.raises(DestinationAuthError) as info:
        make(meta.url, token="EAAwrong").send_batch([person(1)])
    assert "EAAwrong" not in str(info.value)


def test_splits_above_10000_rows(meta: MetaStandin) -> None:
    results = make(meta.url, schema=["EMAIL"]).send_batch([person(i) for i in range(10_001)])
    assert all(r.outcome is Outcome.DELIVERED for r in results)
    assert len(meta.request_log()) == 2 and len(meta.members(AUDIENCE)) == 10_001
