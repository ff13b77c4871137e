"""Iterable (API 1.8) stand-in.

Contract: /work/shared/destinations.md section 3.4 and `iterable_api_docs.json` (Swagger 2.0; its
missing `consumes` does not matter here: the body schema is validated as JSON directly).
Users are keyed by email, else userId. Per-record failures come back by identifier, grouped by
reason (`failedUpdates`), never by position, as the vendor reports them.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from activations.standins.core import HTTPError, Request, Response, Route, Standin, StandinConfig
from activations.standins.core import json_response as _json
from activations.standins.faults import Fault
from activations.standins.specs import swagger_body_ref

SPEC = "iterable_api_docs.json"
BULK = swagger_body_ref(SPEC, "/api/users/bulkUpdate", "post")
SUBSCRIBE = swagger_body_ref(SPEC, "/api/lists/subscribe", "post")
UNSUBSCRIBE = swagger_body_ref(SPEC, "/api/lists/unsubscribe", "post")
TRACK = swagger_body_ref(SPEC, "/api/events/track", "post")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
FAILED_KEYS = ("conflictEmails", "conflictUserIds", "forgottenEmails", "forgottenUserIds",
               "invalidDataEmails", "invalidDataUserIds", "invalidEmails", "invalidUserIds",
               "notFoundEmails", "notFoundUserIds")


@dataclass
class IterableConfig(StandinConfig):
    api_key: str = "iterable-headwater-test-key"
    max_body_bytes: int = 4 * 1024 * 1024
    # Not documented by Iterable (destinations.md: "not found"); None = no cap.
    max_users: int | None = None


def iterable_error(status: int, code: str, msg: str, params: Any = None) -> Response:
    return _json(status, {"msg": msg, "code": code, "params": params})


class IterableStandin(Standin):
    name = "iterable"
    config: IterableConfig

    def __init__(self, config: IterableConfig | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self._users: dict[str, dict[str, Any]] = {}
        self._lists: dict[int, set[str]] = {}
        self._events: dict[str, dict[str, Any]] = {}
        self._event_requests: dict[str, int] = {}

    @classmethod
    def default_config(cls) -> IterableConfig:
        return IterableConfig()

    def routes(self) -> list[Route]:
        return [
            Route.of("POST", "/api/users/bulkUpdate", self._bulk_update),
            Route.of("POST", "/api/lists/subscribe", self._subscribe),
            Route.of("POST", "/api/lists/unsubscribe", self._unsubscribe),
            Route.of("POST", "/api/events/track", self._track),
        ]

    # ---- inspection --------------------------------------------------------------------------
    def users(self) -> dict[str, dict[str, Any]]:
        with self.lock:
            return {k: dict(v) for k, v in self._users.items()}

    def members(self, list_id: int) -> set[str]:
        with self.lock:
            return set(self._lists.get(int(list_id), ()))

    def events(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(e) for e in self._events.values()]

    def deliveries_by_key(self) -> dict[str, int]:
        """Track requests per event `id` (an event with a known id is updated, not added)."""
        with self.lock:
            return dict(self._event_requests)

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {"standin": self.name, "users": self.users(),
                    "lists": {str(k): sorted(v) for k, v in self._lists.items()},
                    "events": self.events()}

    # ---- vendor answers ----------------------------------------------------------------------
    def authenticate(self, req: Request) -> Response | None:
        if req.header("Api-Key") == self.config.api_key:
            return None
        return iterable_error(401, "BadApiKey", "Invalid API key")

    def throttled(self, fault: Fault) -> Response:
        return iterable_error(429, "RateLimitExceeded", "Rate limit exceeded")

    def server_error(self, fault: Fault) -> Response:
        return iterable_error(fault.status, "GenericError", "Internal error")

    def _body(self, req: Request, ref: Any, array_key: str) -> dict[str, Any]:
        if len(req.body) > self.config.max_body_bytes:
            raise HTTPError(iterable_error(413, "BatchTooLarge", "Request body exceeds 4MB"))
        try:
            body = req.json()
        except ValueError:
            raise HTTPError(iterable_error(400, "BadJsonBody", "Malformed JSON")) from None
        items = body.get(array_key) if isinstance(body, dict) else None
        cap = self.config.max_users
        if cap is not None and isinstance(items, list) and len(items) > cap:
            raise HTTPError(iterable_error(400, "BatchTooLarge", f"At most {cap} {array_key}"))
        violations = self.violations(ref, body)
        if violations:
            v = violations[0]
            raise HTTPError(iterable_error(400, "BadParams", f"{v.field or 'body'}: {v.message}",
                                           {"validationErrors": [x.message for x in violations]}))
        return body

    def _bulk_result(self, users: list[Any], apply: Any) -> Response:
        failed: dict[str, list[str]] = {k: [] for k in FAILED_KEYS}
        ok = 0
        with self.lock:
            for user in users:
                email = user.get("email") if isinstance(user, dict) else None
                uid = user.get("userId") if isinstance(user, dict) else None
                bucket = "Emails" if email else "UserIds"
                ident = str(email or uid or "")
                if not ident or (email and not EMAIL.match(email)):
                    failed["invalid" + bucket].append(ident)
                elif self.faults.rejects(ident):
                    failed["invalidData" + bucket].append(ident)
                else:
                    reason = apply(ident.lower() if email else ident, user)
                    if reason:
                        failed[reason + bucket].append(ident)
                    else:
                        ok += 1
        fails = sum(len(v) for v in failed.values())
        return _json(200, {"successCount": ok, "failCount": fails,
                           "invalidEmails": failed["invalidEmails"],
                           "invalidUserIds": failed["invalidUserIds"],
                           "failedUpdates": failed, "createdFields": [],
                           "filteredOutFields": []})

    def _upsert(self, key: str, user: dict[str, Any]) -> str | None:
        stored = self._users.setdefault(key, {"email" if "@" in key else "userId": key})
        stored.update(user.get("dataFields") or {})
        return None

    def _bulk_update(self, req: Request) -> Response:
        return self._bulk_result(self._body(req, BULK, "users")["users"], self._upsert)

    def _subscribe(self, req: Request) -> Response:
        body = self._body(req, SUBSCRIBE, "subscribers")
        members = self._lists.setdefault(int(body["listId"]), set())
        only_existing = bool(body.get("updateExistingUsersOnly"))

        def add(key: str, user: dict[str, Any]) -> str | None:
            if only_existing and key not in self._users:
                return "notFound"
            self._upsert(key, user)
            members.add(key)
            return None

        return self._bulk_result(body.get("subscribers") or [], add)

    def _unsubscribe(self, req: Request) -> Response:
        body = self._body(req, UNSUBSCRIBE, "subscribers")
        members = self._lists.setdefault(int(body["listId"]), set())

        def remove(key: str, _user: dict[str, Any]) -> str | None:
            if key not in self._users:
                return "notFound"
            members.discard(key)
            return None

        return self._bulk_result(body.get("subscribers") or [], remove)

    def _track(self, req: Request) -> Response:
        body = self._body(req, TRACK, "")
        who = body.get("email") or body.get("userId")
        if not who:
            return iterable_error(400, "BadParams", "email or userId is required")
        event_id = str(body.get("id") or f"auto-{time.time_ns()}")
        with self.lock:
            self._event_requests[event_id] = self._event_requests.get(event_id, 0) + 1
            # "If an event exists with that id, the event will be updated."
            self._events[event_id] = {"id": event_id, "eventName": body.get("eventName"),
                                      "user": str(who).lower(),
                                      "dataFields": body.get("dataFields") or {}}
        return _json(200, {"msg": f"Event with id: {event_id} tracked.", "code": "Success",
                           "params": {"id": event_id}})
