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
_OTHER_IDS = frozenset(IDENTIFIERS[1:])


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
            return {_primary(c): self._view(cid) for cid, c in self._contacts.items()}

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
        # Per request, not per contact: this loop is the benchmark's hot path.
        now = _now()
        h = uuid.uuid4().hex
        id_prefix = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-"
        created = updated = 0
        errors: list[dict[str, Any]] = []
        with self.lock:
            accepted: list[str] = []
            fast = self._fast_upsert(contacts or [], now, id_prefix, accepted)
            for index, contact in enumerate((contacts or []) if fast is None else []):
                ids = _identifiers(contact)
                if not ids:
                    errors.append({"index": index, "message": "contact must include at least one "
                                   "of email, phone_number_id, external_id, anonymous_id"})
                    continue
                if self.faults.rejects(*(v for _, v in ids)):
                    errors.append({"index": index, "email": contact.get("email"),
                                   "message": "contact rejected"})
                    continue
                if self._apply(contact, ids, now, f"{id_prefix}{index:012x}", accepted):
                    created += 1
                else:
                    updated += 1
            if fast is not None:
                created, updated = fast
            for list_id in list_ids:
                self._lists.setdefault(list_id, set()).update(accepted)
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

    def _fast_upsert(self, contacts: list[Any], now: str, id_prefix: str,
                     accepted: list[str]) -> tuple[int, int] | None:
        """(created, updated) for a batch of email-only contacts without per-record faults.

        The 1M-row benchmark goes through here: one dict lookup and one store per contact.
        None when the batch needs the general path.
        """
        plan = self.faults.plan
        if plan.reject_ids or plan.rate_reject:
            return None
        try:
            keys = [c["email"].strip().lower() for c in contacts]
        except (KeyError, AttributeError, TypeError):
            return None
        fields_used = set().union(*map(dict.keys, contacts))
        if fields_used & _OTHER_IDS or "custom_fields" in fields_used:
            return None
        index, store = self._by_identifier, self._contacts
        created = 0
        append = accepted.append
        for n, (email, contact) in enumerate(zip(keys, contacts, strict=True)):
            key = ("email", email)
            cid = index.get(key)
            if cid is None:
                cid = index[key] = f"{id_prefix}{n:012x}"
                contact.update(id=cid, email=email, created_at=now, updated_at=now)
                store[cid] = contact
                created += 1
            else:
                stored = store[cid]
                stored.update(contact)
                stored.update(email=email, updated_at=now)
            append(cid)
        return created, len(contacts) - created

    def _apply(self, contact: dict[str, Any], ids: list[tuple[str, str]], now: str,
               new_id: str, accepted: list[str]) -> bool:
        """Upsert one contact; True when it was created."""
        cid = next((self._by_identifier[i] for i in ids if i in self._by_identifier), None)
        created = cid is None
        if cid is None:
            cid = new_id
            self._contacts[cid] = {"id": cid, "created_at": now}
        stored = self._contacts[cid]
        for key, value in contact.items():
            if key == "custom_fields" and isinstance(value, dict):
                stored.setdefault("custom_fields", {}).update(value)
            else:
                stored[key] = value.lower() if key == "email" and isinstance(value, str) else value
        stored["updated_at"] = now
        for ident in ids:
            self._by_identifier[ident] = cid
        accepted.append(cid)
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
                    result[email] = {"contact": self._view(cid)}
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
            members.difference_update(ids)
            job_id = str(uuid.uuid4())
            self._jobs[job_id] = {"id": job_id, "status": "pending", "job_type": "delete",
                                  "polls": 0, "started_at": _now(),
                                  "results": {"requested_count": len(ids), "deleted_count": 0,
                                              "created_count": 0, "updated_count": len(ids),
                                              "errored_count": 0}}
        return json_response(202, {"job_id": job_id})

    def _view(self, cid: str) -> dict[str, Any]:
        """A contact as SendGrid shows it: list memberships are derived, not stored per contact."""
        lists = sorted(lid for lid, members in self._lists.items() if cid in members)
        return {**self._contacts[cid], "list_ids": lists}

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


