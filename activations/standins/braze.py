"""Braze REST (`/users/track`, `/users/delete`) stand-in.

Contract: /work/shared/destinations.md section 3.2 (no official OpenAPI: checked by hand).
Audience membership is modelled the way a sync writes it to Braze: an array attribute changed
with `{"add": [...]}` / `{"remove": [...]}`; `members(attribute, value)` reads it back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from activations.standins.core import HTTPError, Request, Response, Route, Standin, StandinConfig
from activations.standins.core import json_response as _json
from activations.standins.faults import Fault

ARRAYS = ("attributes", "events", "purchases")
ID_KEYS = ("external_id", "user_alias", "braze_id", "email", "phone")
DELETE_KEYS = ("external_ids", "user_aliases", "braze_ids")


@dataclass
class BrazeConfig(StandinConfig):
    api_key: str = "braze-headwater-test-key"
    max_objects: int = 75  # combined across attributes, events, purchases (the safe reading)
    max_delete_ids: int = 50
    rate_limit_header: int = 3000


def _user_key(obj: dict[str, Any]) -> str | None:
    for key in ID_KEYS:
        value = obj.get(key)
        if isinstance(value, dict):  # user_alias
            return f"alias:{value.get('alias_label')}:{value.get('alias_name')}"
        if isinstance(value, str) and value:
            return value.lower() if key == "email" else (value if key == "external_id"
                                                          else f"{key}:{value}")
    return None


class BrazeStandin(Standin):
    name = "braze"
    config: BrazeConfig

    def __init__(self, config: BrazeConfig | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self._users: dict[str, dict[str, Any]] = {}
        self._events: list[dict[str, Any]] = []
        self._purchases: list[dict[str, Any]] = []

    @classmethod
    def default_config(cls) -> BrazeConfig:
        return BrazeConfig()

    def routes(self) -> list[Route]:
        return [Route.of("POST", "/users/track", self._track),
                Route.of("POST", "/users/delete", self._delete)]

    # ---- inspection --------------------------------------------------------------------------
    def users(self) -> dict[str, dict[str, Any]]:
        """Users keyed by external_id (else lower-case email, else "<kind>:<value>")."""
        with self.lock:
            return {k: dict(v) for k, v in self._users.items()}

    def members(self, attribute: str, value: Any) -> set[str]:
        """Users whose array attribute `attribute` contains `value`."""
        with self.lock:
            return {k for k, u in self._users.items() if value in (u.get(attribute) or [])}

    def events(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(e) for e in self._events]

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {"standin": self.name, "users": self.users(), "events": self.events(),
                    "purchases": [dict(p) for p in self._purchases]}

    # ---- vendor answers ----------------------------------------------------------------------
    def authenticate(self, req: Request) -> Response | None:
        if req.header("Authorization") == f"Bearer {self.config.api_key}":
            return None
        return _json(401, {"message": "Invalid API key: the API key is missing or wrong"})

    def throttled(self, fault: Fault) -> Response:
        return _json(429, {"message": "API rate limit reached"})

    def server_error(self, fault: Fault) -> Response:
        return _json(fault.status, {"message": "Internal server error"})

    def extra_headers(self, req: Request, status: int) -> dict[str, str]:
        limit, remaining, reset = self.rate.status(self.config.rate_limit_header)
        return {"X-RateLimit-Limit": str(limit),
                "X-RateLimit-Remaining": "0" if status == 429 else str(remaining),
                "X-RateLimit-Reset": str(int(reset) + 1)}

    def _body(self, req: Request) -> dict[str, Any]:
        try:
            body = req.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise HTTPError(_json(400, {"message": "Invalid JSON: the body must be an object"}))
        return body

    def _track(self, req: Request) -> Response:
        body = self._body(req)
        arrays = {k: body.get(k) or [] for k in ARRAYS}
        if any(not isinstance(v, list) for v in arrays.values()):
            return _json(400, {"message": "attributes, events and purchases must be arrays"})
        if sum(len(v) for v in arrays.values()) > self.config.max_objects:
            return _json(400, {"message": "Max Input Length Exceeded", "errors": [
                f"at most {self.config.max_objects} attributes, events and purchases combined"]})
        errors: list[dict[str, Any]] = []
        processed = dict.fromkeys(ARRAYS, 0)
        with self.lock:
            for name, items in arrays.items():
                for index, obj in enumerate(items):
                    problem = self._apply(name, obj)
                    if problem:
                        errors.append({"type": problem, "input_array": name, "index": index})
                    else:
                        processed[name] += 1
        out: dict[str, Any] = {"message": "success"}
        for name in ARRAYS:
            if arrays[name]:
                out[f"{name}_processed"] = processed[name]
        if errors:
            out["errors"] = errors  # non-fatal: the rest of the batch was processed
        return _json(201, out)

    def _apply(self, array: str, obj: Any) -> str | None:
        key = _user_key(obj) if isinstance(obj, dict) else None
        if key is None:
            return "'external_id', 'user_alias', 'braze_id', 'email' or 'phone' is required"
        if self.faults.rejects(key, obj.get("external_id"), obj.get("email")):
            return "rejected by the stand-in's fault plan"
        if array == "events" and not obj.get("name"):
            return "event 'name' is required"
        if array == "purchases" and not obj.get("product_id"):
            return "purchase 'product_id' is required"
        if array != "attributes":
            (self._events if array == "events" else self._purchases).append({"user": key, **obj})
            return None
        if obj.get("_update_existing_only") and key not in self._users:
            return None  # documented as silently skipped
        user = self._users.setdefault(key, {})
        for field, value in obj.items():
            if field in ID_KEYS or field.startswith("_"):
                user.setdefault(field, value)
            elif isinstance(value, dict) and set(value) <= {"add", "remove"}:
                current = list(user.get(field) or [])
                current += [v for v in value.get("add") or [] if v not in current]
                user[field] = [v for v in current if v not in (value.get("remove") or [])]
            elif value is None:
                user.pop(field, None)
            else:
                user[field] = value
        return None

    def _delete(self, req: Request) -> Response:
        body = self._body(req)
        kinds = [k for k in DELETE_KEYS if body.get(k)]
        if len(kinds) != 1 or not isinstance(body[kinds[0]], list):
            return _json(400, {"message": "exactly one of external_ids, user_aliases, braze_ids "
                               "is required"})
        ids = body[kinds[0]]
        if len(ids) > self.config.max_delete_ids:
            return _json(400, {"message": "The max number of external_ids and aliases per "
                               "request was exceeded"})
        deleted = 0
        with self.lock:
            for ident in ids:
                key = _user_key({kinds[0][:-1] if kinds[0] != "user_aliases" else "user_alias":
                                 ident})
                if key is not None and self._users.pop(key, None) is not None:
                    deleted += 1
        return _json(201, {"deleted": deleted, "message": "success"})
