"""SendGrid Marketing Contacts (v3) stand-in.

Contract: /work/shared/destinations.md section 3.1 and the vendor specs
`sendgrid_mc_contacts_v3.json`, `sendgrid_mc_lists_v3.json` (twilio/sendgrid-oai).

Simplification, on purpose: an upsert is applied when the PUT is accepted (SendGrid applies it
later, in the background); the job still answers `pending` for the first `pending_polls` status
reads, so a client must poll as it would against the real API.
"""

from __future__ import annotations

import uuid
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

CONTACTS_SPEC = "sendgrid_mc_contacts_v3.json"
UPSERT = body_schema_ref(CONTACTS_SPEC, "/v3/marketing/contacts", "put")
SEARCH_EMAILS = body_schema_ref(CONTACTS_SPEC, "/v3/marketing/contacts/search/emails", "post")
IDENTIFIERS = ("email", "phone_number_id", "external_id", "anonymous_id")


@dataclass
class SendGridConfig(StandinConfig):
    api_key: str = "SG.headwater-test-key"
    max_contacts: int = 30_000
    max_body_bytes: int = 6 * 1024 * 1024
    max_search_emails: int = 100
    pending_polls: int = 1  # status reads that answer "pending" before the job completes
    rate_limit_header: int = 600  # X-RateLimit-Limit when no rate_limit is enforced


def _err(status: int, message: str, field: str | None = None, **extra: Any) -> Response:
    return json_response(status, {"errors": [{"field": field, "message": message, **extra}]})


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class SendGridStandin(Standin):
    name = "sendgrid"
    config: SendGridConfig

    def __init__(self, config: SendGridConfig | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self._contacts: dict[str, dict[str, Any]] = {}  # contact id -> contact
        self._by_identifier: dict[tuple[str, str], str] = {}  # (kind, value) -> contact id
        self._lists: dict[str, set[str]] = {}  # list id -> contact ids
        self._jobs: dict[str, dict[str, Any]] = {}
        self._job_errors: dict[str, list[dict[str, Any]]] = {}

    @classmethod
    def default_config(cls) -> SendGridConfig:
        return SendGridConfig()

    def routes(self) -> list[Route]:
        return [
            Route.of("PUT", "/v3/marketing/contacts", self._upsert),
            Route.of("GET", "/v3/marketing/contacts/imports/{id}", self._job_status),
            Route.of("POST", "/v3/marketing/contacts/search/emails", self._search_emails),
            Route.of("DELETE", "/v3/marketing/lists/{id}/contacts", self._remove_from_list),
            Route.of("GET", "/v3/marketing/lists/{id}/contacts/count", self._list_count),
            # Not SendGrid's: it only publishes a downloadable file URL, format unspecified.
            Route.of("GET", "/__standin/sendgrid/errors/{id}", self._job_error_file),
        ]

    # ---- inspection --------------------------------------------------------------------------
    def contacts(self) -> dict[str, dict[str, Any]]:
        """Contacts keyed by their primary identifier (email, else the first one present)."""
        with self.lock:
            return {_primary(c): dict(c) for c in self._contacts.values()}

    def members(self, list_id: str) -> set[str]:
        """Primary identifiers (emails) of the list's members."""
        with self.lock:
            return {_primary(self._contacts[cid]) for cid in self._lists.get(list_id, ())}

    def jobs(self) -> dict[str, dict[str, Any]]:
        with self.lock:
            return {k: dict(v) for k, v in self._jobs.items()}

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "standin": self.name,
                "contacts": {cid: dict(c) for cid, c in self._contacts.items()},
                "lists": {lid: sorted(self.members(lid)) for lid in self._lists},
                "jobs": {k: dict(v) for k, v in self._jobs.items()},
            }

    # ---- cross-cutting vendor answers --------------------------------------------------------
    def authenticate(self, req: Request) -> Response | None:
        # The error file URL is a pre-signed download: no API key, like the real one.
        if req.header("Authorization") == f"Bearer {self.config.api_key}" or req.path.startswith(
            "/__standin/"
        ):
            return None
        return _err(401, "authorization required")

    def throttled(self, fault: Fault) -> Response:
        return _err(429, "too many requests")

    def server_error(self, fault: Fault) -> Response:
        return _err(fault.status, "internal error")

    def extra_headers(self, req: Request, status: int) -> dict[str, str]:
        limit, remaining, reset = self.rate.status(self.config.rate_limit_header)
        if status == 429:
            remaining = 0
        return {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(int(reset) + 1),
        }

    # ---- handlers ----------------------------------------------------------------------------
    def _json_body(self, req: Request) -> Any:
        if len(req.body) > self.config.max_body_bytes:
            raise HTTPError(_err(413, "request entity too large: the limit is 6MB"))
        try:
            return req.json()
        except ValueError:
            raise HTTPError(_err(400, "invalid JSON", None)) from None

    def _bad_request(self, violations: list[Violation]) -> Response:
        errors = [{"field": v.field or None, "message": v.message} for v in violations]
        return json_response(400, {"errors": errors})

    def _upsert(self, req: Request) -> Response:
        body = self._json_body(req)
        contacts = body.get("contacts") if isinstance(body, dict) else None
        if isinstance(contacts, list) and len(contacts) > self.config.max_contacts:
            return _err(400, f"contacts array must have at most {self.config.max_contacts} items",
                        "contacts")
        violations = self.violations(UPSERT, body)
        if violations:
            return self._bad_request(violations)
        list_ids = [str(x) for x in body.get("list_ids") or []]
        created = updated = 0
        errors: list[dict[str, Any]] = []
        with self.lock:
            for index, contact in enumerate(contacts or []):
                ids = _identifiers(contact)
                if not ids:
                    errors.append({"index": index, "message": "contact must include at least one "
                                   "of email, phone_number_id, external_id, anonymous_id"})
                    continue
                if self.faults.rejects(*(v for _, v in ids)):
                    errors.append({"index": index, "email": contact.get("email"),
                                   "message": "contact rejected"})
                    continue
                if self._apply(contact, ids, list_ids):
                    created += 1
                else:
                    updated += 1
            job_id = str(uuid.uuid4())
            self._jobs[job_id] = {
                "id": job_id, "status": "pending", "job_type": "upsert", "polls": 0,
                "results": {"requested_count": len(contacts or []), "created_count": created,
                            "updated_count": updated, "deleted_count": 0,
                            "errored_count": len(errors)},
                "started_at": _now(),
            }
            if errors:
                self._job_errors[job_id] = errors
                self._jobs[job_id]["results"]["errors_url"] = (
                    f"{self.url}/__standin/sendgrid/errors/{job_id}"
                )
        return json_response(202, {"job_id": job_id})

    def _apply(self, contact: dict[str, Any], ids: list[tuple[str, str]],
               list_ids: list[str]) -> bool:
        """Upsert one contact; True when it was created."""
        cid = next((self._by_identifier[i] for i in ids if i in self._by_identifier), None)
        created = cid is None
        if cid is None:
            cid = str(uuid.uuid4())
            self._contacts[cid] = {"id": cid, "created_at": _now()}
        stored = self._contacts[cid]
        for key, value in contact.items():
            if key == "custom_fields" and isinstance(value, dict):
                stored.setdefault("custom_fields", {}).update(value)
            else:
                stored[key] = value.lower() if key == "email" and isinstance(value, str) else value
        stored["updated_at"] = _now()
        for ident in ids:
            self._by_identifier[ident] = cid
        for list_id in list_ids:
            self._lists.setdefault(list_id, set()).add(cid)
        stored["list_ids"] = sorted(lid for lid, m in self._lists.items() if cid in m)
        return created

    def _job_status(self, req: Request) -> Response:
        with self.lock:
            job = self._jobs.get(req.params["id"])
            if job is None:
                return _err(404, "job not found", "id")
            job["polls"] += 1
            if job["status"] == "pending" and job["polls"] > self.config.pending_polls:
                job["status"] = "errored" if job["results"]["errored_count"] else "completed"
                job["finished_at"] = _now()
            return json_response(200, {k: v for k, v in job.items() if k != "polls"})

    def _job_error_file(self, req: Request) -> Response:
        with self.lock:
            return json_response(200, {"errors": self._job_errors.get(req.params["id"], [])})

    def _search_emails(self, req: Request) -> Response:
        body = self._json_body(req)
        emails = body.get("emails") if isinstance(body, dict) else None
        if isinstance(emails, list) and len(emails) > self.config.max_search_emails:
            return _err(400, f"emails must have at most {self.config.max_search_emails} items",
                        "emails")
        violations = self.violations(SEARCH_EMAILS, body)
        if violations:
            return self._bad_request(violations)
        if any(not isinstance(e, str) or "@" not in e for e in emails or []):
            return _err(400, "invalid email address", "emails")
        result: dict[str, Any] = {}
        with self.lock:
            for email in emails or []:
                cid = self._by_identifier.get(("email", email.strip().lower()))
                if cid is None:
                    result[email] = {"error": "contact not found"}
                else:
                    result[email] = {"contact": dict(self._contacts[cid])}
        if not any("contact" in v for v in result.values()):
            return _err(404, "No contacts found")
        return json_response(200, {"result": result})

    def _remove_from_list(self, req: Request) -> Response:
        raw = req.arg("contact_ids")
        if not raw:
            return _err(400, "contact_ids is required", "contact_ids")
        ids = [x for x in raw.split(",") if x]
        with self.lock:
            members = self._lists.get(req.params["id"])
            if members is None:
                return _err(404, "list not found", "id")
            unknown = [i for i in ids if i not in self._contacts]
            if unknown:
                return _err(404, f"contact ids not found: {','.join(unknown[:10])}", "contact_ids")
            for cid in ids:
                members.discard(cid)
                stored = self._contacts[cid]
                list_id = req.params["id"]
                stored["list_ids"] = [x for x in stored.get("list_ids", []) if x != list_id]
            job_id = str(uuid.uuid4())
            self._jobs[job_id] = {"id": job_id, "status": "pending", "job_type": "delete",
                                  "polls": 0, "started_at": _now(),
                                  "results": {"requested_count": len(ids), "deleted_count": 0,
                                              "created_count": 0, "updated_count": len(ids),
                                              "errored_count": 0}}
        return json_response(202, {"job_id": job_id})

    def _list_count(self, req: Request) -> Response:
        with self.lock:
            members = self._lists.get(req.params["id"])
            if members is None:
                return _err(404, "list not found", "id")
            return json_response(200, {"contact_count": len(members),
                                       "billable_count": len(members)})


def _identifiers(contact: Any) -> list[tuple[str, str]]:
    if not isinstance(contact, dict):
        return []
    out = []
    for kind in IDENTIFIERS:
        value = contact.get(kind)
        if isinstance(value, str) and value.strip():
            out.append((kind, value.strip().lower() if kind == "email" else value))
    return out


def _primary(contact: dict[str, Any]) -> str:
    for kind in IDENTIFIERS:
        if contact.get(kind):
            return str(contact[kind])
    return str(contact["id"])


