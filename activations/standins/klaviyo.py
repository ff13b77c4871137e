"""Klaviyo (JSON:API, revision 2026-07-15) stand-in.

Contract: /work/shared/destinations.md section 3.3 and the per-operation `klaviyo_*.json` specs.
Bulk import jobs are applied when accepted and read queued -> processing -> complete on status
reads. Profiles are matched on email, then phone_number, then external_id.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from activations.standins.core import (
    HTTPError,
    Request,
    Response,
    Route,
    Standin,
    StandinConfig,
    json_response,
)
from activations.standins.faults import Fault
from activations.standins.specs import Violation, body_schema_ref

JSONAPI = "application/vnd.api+json"
BULK = body_schema_ref("klaviyo_bulk_import_profiles.json", "/api/profile-bulk-import-jobs",
                       "post", JSONAPI)
LIST_ADD = body_schema_ref("klaviyo_add_profiles_to_list.json",
                           "/api/lists/{id}/relationships/profiles", "post", JSONAPI)
LIST_REMOVE = body_schema_ref("klaviyo_remove_profiles_from_list.json",
                              "/api/lists/{id}/relationships/profiles", "delete", JSONAPI)
EVENT = body_schema_ref("klaviyo_create_event.json", "/api/events", "post", JSONAPI)
MATCH_KEYS = ("email", "phone_number", "external_id")


@dataclass
class KlaviyoConfig(StandinConfig):
    api_key: str = "pk_headwater_test"
    revision: str = "2026-07-15"
    max_bulk_profiles: int = 10_000
    max_list_profiles: int = 1_000
    processing_polls: int = 1
    rate_limit_header: int = 150


def jsonapi_errors(status: int, code: str, title: str, detail: str,
                   pointer: str | None = None, parameter: str | None = None) -> Response:
    source = {"pointer": pointer} if pointer else ({"parameter": parameter} if parameter else {})
    error = {"id": secrets.token_hex(16), "status": status, "code": code, "title": title,
             "detail": detail, "source": source}
    return json_response(status, {"errors": [error]}, content_type=JSONAPI)


def _now() -> str:
    return datetime.now(UTC).isoformat()


class KlaviyoStandin(Standin):
    name = "klaviyo"
    config: KlaviyoConfig

    def __init__(self, config: KlaviyoConfig | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self._profiles: dict[str, dict[str, Any]] = {}
        self._index: dict[tuple[str, str], str] = {}
        self._lists: dict[str, set[str]] = {}
        self._jobs: dict[str, dict[str, Any]] = {}
        self._events: list[dict[str, Any]] = []
        self._event_keys: dict[tuple[str, str, str], int] = {}

    @classmethod
    def default_config(cls) -> KlaviyoConfig:
        return KlaviyoConfig()

    def routes(self) -> list[Route]:
        rel = "/api/lists/{id}/relationships/profiles"
        return [
            Route.of("POST", "/api/profile-bulk-import-jobs", self._bulk_import),
            Route.of("GET", "/api/profile-bulk-import-jobs/{id}", self._job_status),
            Route.of("GET", "/api/profile-bulk-import-jobs/{id}/import-errors", self._errors),
            Route.of("GET", "/api/profile-bulk-import-jobs/{id}/relationships/profiles",
                     self._job_profiles),
            Route.of("POST", rel, self._list_add),
            Route.of("DELETE", rel, self._list_remove),
            Route.of("POST", "/api/events", self._event),
        ]

    # ---- inspection --------------------------------------------------------------------------
    def profiles(self) -> dict[str, dict[str, Any]]:
        with self.lock:
            return {pid: dict(p) for pid, p in self._profiles.items()}

    def profile_id(self, email: str) -> str | None:
        with self.lock:
            return self._index.get(("email", email.strip().lower()))

    def members(self, list_id: str) -> set[str]:
        """Emails (else profile ids) of the list's members."""
        with self.lock:
            return {self._profiles[p].get("email") or p for p in self._lists.get(list_id, ())}

    def events(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(e) for e in self._events]

    def deliveries_by_key(self) -> dict[str, int]:
        """Event submissions per unique_id (duplicates recorded once)."""
        with self.lock:
            return {k[2]: n for k, n in self._event_keys.items()}

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {"standin": self.name, "profiles": self.profiles(),
                    "lists": {k: sorted(self.members(k)) for k in self._lists},
                    "events": self.events(),
                    "jobs": {k: {x: y for x, y in v.items() if x != "errors"}
                             for k, v in self._jobs.items()}}

    # ---- vendor answers ----------------------------------------------------------------------
    def authenticate(self, req: Request) -> Response | None:
        if req.header("Authorization") != f"Klaviyo-API-Key {self.config.api_key}":
            return jsonapi_errors(401, "not_authenticated", "Authentication credentials were "
                                  "not provided.", "Missing or invalid private key.",
                                  pointer="/data/")
        if not req.header("revision"):
            return jsonapi_errors(400, "invalid", "Invalid input.",
                                  "The revision header is required.", parameter="revision")
        return None

    def throttled(self, fault: Fault) -> Response:
        wait = max(1, round(fault.retry_after or 1))
        response = jsonapi_errors(429, "throttled", "Request was throttled.",
                                  f"Request was throttled. Expected available in {wait} second"
                                  f"{'s' if wait != 1 else ''}.")
        response.headers["Retry-After"] = str(wait)
        return response

    def server_error(self, fault: Fault) -> Response:
        return jsonapi_errors(fault.status, "error", "A server error occurred.",
                              "A server error occurred.")

    def extra_headers(self, req: Request, status: int) -> dict[str, str]:
        if status == 429:  # Klaviyo sends only Retry-After on a 429
            return {}
        limit, remaining, reset = self.rate.status(self.config.rate_limit_header)
        return {"RateLimit-Limit": str(limit), "RateLimit-Remaining": str(remaining),
                "RateLimit-Reset": str(max(0, round(reset - time.time())))}

    def _body(self, req: Request) -> Any:
        try:
            return req.json()
        except ValueError:
            raise HTTPError(jsonapi_errors(400, "invalid", "Invalid input.",
                                           "Malformed JSON.", pointer="/")) from None

    def _invalid(self, violations: list[Violation]) -> Response:
        v = violations[0]
        return jsonapi_errors(400, "invalid", "Invalid input.", v.message, pointer=v.path)

    def _bulk_import(self, req: Request) -> Response:
        body = self._body(req)
        try:
            profiles = body["data"]["attributes"]["profiles"]["data"]
        except (KeyError, TypeError):
            profiles = None
        if isinstance(profiles, list) and len(profiles) > self.config.max_bulk_profiles:
            return jsonapi_errors(400, "invalid", "Invalid input.",
                                  f"at most {self.config.max_bulk_profiles} profiles per job",
                                  pointer="/data/attributes/profiles/data")
        violations = self.violations(BULK, body)
        if violations:
            return self._invalid(violations)
        lists = [x.get("id") for x in (body["data"].get("relationships", {}).get("lists", {})
                                       .get("data") or [])]
        errors: list[dict[str, Any]] = []
        ids: list[str] = []
        with self.lock:
            for index, profile in enumerate(profiles or []):
                attrs = profile.get("attributes") or {}
                keys = [(k, _norm(k, attrs[k])) for k in MATCH_KEYS if attrs.get(k)]
                if not keys or self.faults.rejects(*(v for _, v in keys)):
                    errors.append(_import_error(index, profile, "Profile rejected" if keys else
                                                "a profile needs email, phone_number or "
                                                "external_id"))
                    continue
                pid = self._upsert(keys, attrs)
                ids.append(pid)
                for list_id in lists:
                    self._lists.setdefault(list_id, set()).add(pid)
            job_id = secrets.token_hex(12)
            self._jobs[job_id] = {"status": "queued", "created_at": _now(),
                                  "total_count": len(profiles or []), "completed_count": 0,
                                  "failed_count": len(errors), "completed_at": None,
                                  "started_at": None, "expires_at": None, "polls": 0,
                                  "errors": errors, "profile_ids": ids, "lists": lists}
            return json_response(202, {"data": self._job_doc(job_id)}, content_type=JSONAPI)

    def _upsert(self, keys: list[tuple[str, str]], attrs: dict[str, Any]) -> str:
        pid = next((self._index[k] for k in keys if k in self._index), None)
        if pid is None:
            pid = "01" + secrets.token_hex(12).upper()
            self._profiles[pid] = {"id": pid}
        stored = self._profiles[pid]
        for key, value in attrs.items():
            if key == "properties" and isinstance(value, dict):
                stored.setdefault("properties", {}).update(value)
            else:
                stored[key] = _norm(key, value) if key in MATCH_KEYS and value else value
        for k in keys:
            self._index[k] = pid
        return pid

    def _job_doc(self, job_id: str) -> dict[str, Any]:
        job = self._jobs[job_id]
        attrs = {k: job[k] for k in ("status", "created_at", "total_count", "completed_count",
                                     "failed_count", "completed_at", "started_at", "expires_at")}
        return {"type": "profile-bulk-import-job", "id": job_id, "attributes": attrs,
                "relationships": {"lists": {"data": [{"type": "list", "id": x}
                                                     for x in job["lists"]]}}}

    def _job(self, req: Request) -> dict[str, Any]:
        job = self._jobs.get(req.params["id"])
        if job is None:
            raise HTTPError(jsonapi_errors(404, "not_found", "Not found.",
                                           "No job with that id.", parameter="id"))
        return job

    def _job_status(self, req: Request) -> Response:
        with self.lock:
            job = self._job(req)
            job["polls"] += 1
            if job["status"] == "queued":
                job["status"], job["started_at"] = "processing", _now()
            elif job["status"] == "processing" and job["polls"] > self.config.processing_polls:
                job["status"], job["completed_at"] = "complete", _now()
                job["completed_count"] = job["total_count"] - job["failed_count"]
            return json_response(200, {"data": self._job_doc(req.params["id"])},
                                 content_type=JSONAPI)

    def _errors(self, req: Request) -> Response:
        size = min(100, max(1, int(req.arg("page[size]") or 20)))
        start = int(req.arg("page[cursor]") or 0)
        with self.lock:
            errors = self._job(req)["errors"]
            page = errors[start:start + size]
        nxt = None
        if start + size < len(errors):
            path = f"/api/profile-bulk-import-jobs/{req.params['id']}/import-errors"
            nxt = f"{self.url}{path}?page[cursor]={start + size}&page[size]={size}"
        return json_response(200, {"data": page, "links": {"self": None, "next": nxt}},
                             content_type=JSONAPI)

    def _job_profiles(self, req: Request) -> Response:
        with self.lock:
            ids = self._job(req)["profile_ids"]
        return json_response(200, {"data": [{"type": "profile", "id": i} for i in ids]},
                             content_type=JSONAPI)

    def _membership(self, req: Request, ref: Any, add: bool) -> Response:
        body = self._body(req)
        data = body.get("data") if isinstance(body, dict) else None
        if isinstance(data, list) and len(data) > self.config.max_list_profiles:
            return jsonapi_errors(400, "invalid", "Invalid input.",
                                  f"at most {self.config.max_list_profiles} profiles per call",
                                  pointer="/data")
        violations = self.violations(ref, body)
        if violations:
            return self._invalid(violations)
        ids = [d["id"] for d in data or []]
        with self.lock:
            unknown = [i for i in ids if i not in self._profiles]
            if unknown:
                return jsonapi_errors(404, "not_found", "Not found.",
                                      f"profiles not found: {unknown[:10]}", pointer="/data")
            members = self._lists.setdefault(req.params["id"], set())
            if add:
                members.update(ids)
            else:
                members.difference_update(ids)
        return json_response(204, None)

    def _list_add(self, req: Request) -> Response:
        return self._membership(req, LIST_ADD, add=True)

    def _list_remove(self, req: Request) -> Response:
        return self._membership(req, LIST_REMOVE, add=False)

    def _event(self, req: Request) -> Response:
        body = self._body(req)
        violations = self.violations(EVENT, body)
        if violations:
            return self._invalid(violations)
        try:
            attrs = body["data"]["attributes"]
            metric = attrs["metric"]["data"]["attributes"].get("name", "")
            profile = attrs["profile"]["data"].get("attributes") or {}
            who = next((str(profile[k]).lower() for k in MATCH_KEYS if profile.get(k)),
                       attrs["profile"]["data"].get("id", ""))
        except (KeyError, TypeError, AttributeError):
            return jsonapi_errors(400, "invalid", "Invalid input.",
                                  "data.attributes.metric and .profile are required", "/data")
        unique = attrs.get("unique_id") or attrs.get("time") or str(int(time.time()))
        key = (str(who), str(metric), str(unique))
        with self.lock:
            self._event_keys[key] = self._event_keys.get(key, 0) + 1
            if self._event_keys[key] == 1:  # "only the first processed event will be recorded"
                self._events.append({"metric": metric, "profile": who, "unique_id": unique,
                                     "properties": attrs.get("properties"),
                                     "time": attrs.get("time")})
        return json_response(202, None)


def _norm(key: str, value: Any) -> Any:
    return value.strip().lower() if key == "email" and isinstance(value, str) else value


def _import_error(index: int, profile: Any, detail: str) -> dict[str, Any]:
    return {"type": "import-error", "id": secrets.token_hex(8), "attributes": {
        "code": "invalid", "title": "Invalid input.", "detail": detail,
        "source": {"pointer": f"/data/attributes/profiles/data/{index}"},
        "original_payload": profile}}
