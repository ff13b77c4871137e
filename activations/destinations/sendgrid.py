"""SendGrid Marketing Contacts (destinations.md §3.1).

Add/update: `PUT /v3/marketing/contacts` with `list_ids` and up to 30,000 contacts or 6 MB,
whichever is lower; answered 202 with a job id (SendGrid upserts by identifier, so a re-send is
harmless). Remove (mirror mode): `POST /v3/marketing/contacts/search/emails` (100 per call)
to find contact ids, then `DELETE /v3/marketing/lists/{list_id}/contacts?contact_ids=...`.
Auth: `Authorization: Bearer <api key>`.

Options: `list_id` (required for mirror mode; contacts are added to it). Destination fields
that are SendGrid's reserved contact fields go at the top level; any other field goes into
`custom_fields` under its own name (use SendGrid's field ids, like `e1_T`, as field names).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, ClassVar

from activations.destinations.base import (
    Action,
    Channel,
    DestinationAuthError,
    DestinationConfig,
    DestinationConfigError,
    Outcome,
    Record,
    RecordResult,
    result_for_all,
)
from activations.http import HttpClient

RESERVED_FIELDS = frozenset(
    {
        "email", "phone_number_id", "external_id", "anonymous_id", "first_name", "last_name",
        "alternate_emails", "address_line_1", "address_line_2", "city",
        "state_province_region", "postal_code", "country",
    }
)
MAX_CONTACTS = 30_000
MAX_BYTES = 6_000_000
SEARCH_CHUNK = 100
# Bisecting a refused batch isolates the bad contact; the depth bounds the extra requests.
MAX_BISECT_DEPTH = 8


class SendGridDestination:
    max_batch_size: ClassVar[int] = MAX_CONTACTS
    supported_actions: ClassVar[frozenset[Action]] = frozenset(
        {Action.ADD, Action.UPDATE, Action.REMOVE}
    )
    channel: ClassVar[Channel | None] = Channel.EMAIL
    default_base_url: ClassVar[str | None] = "https://api.sendgrid.com"
    # SendGrid does not publish numbers; its X-RateLimit-* headers drive the pauses.
    default_rate_limit: ClassVar[tuple[float, int] | None] = None

    def __init__(self, config: DestinationConfig, http: HttpClient) -> None:
        api_key = config.credentials.get("api_key")
        if not api_key:
            raise DestinationConfigError(
                "sendgrid: set destination.credentials.api_key to the NAME of the environment "
                "variable holding the API key (e.g. api_key: SENDGRID_API_KEY)"
            )
        self._headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
        self.base_url = config.base_url
        self.list_id = config.options.get("list_id")
        self.http = http

    # -- helpers ---------------------------------------------------------------------------
    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(
            method, self.base_url + path, headers=self._headers, **kwargs
        )
        if response.status_code in (401, 403):
            raise DestinationAuthError(
                f"SendGrid refused the API key ({response.status_code}): check the environment "
                "variable named in destination.credentials.api_key and the key's scopes "
                "(marketing contacts read/write)"
            )
        return response

    @staticmethod
    def _contact(record: Record) -> dict[str, Any]:
        contact: dict[str, Any] = {}
        custom: dict[str, Any] = {}
        for name, value in record.fields.items():
            if name in RESERVED_FIELDS:
                contact[name] = value
            elif value is not None:
                custom[name] = value
        if custom:
            contact["custom_fields"] = custom
        return contact

    # -- contract --------------------------------------------------------------------------
    def send_batch(self, records: Sequence[Record]) -> list[RecordResult]:
        if not records:
            return []
        if records[0].action == Action.REMOVE:
            return self._remove(records)
        results: dict[str, RecordResult] = {}
        valid: list[tuple[Record, dict[str, Any], int]] = []
        for r in records:
            email = r.fields.get("email")
            if not isinstance(email, str) or "@" not in email:
                results[r.idempotency_key] = RecordResult(
                    r.idempotency_key, Outcome.REJECTED, None,
                    "no valid `email` field: map one in identifiers (email: email)",
                )
                continue
            contact = self._contact(r)
            valid.append((r, contact, len(json.dumps(contact, default=str)) + 1))
        chunk: list[tuple[Record, dict[str, Any], int]] = []
        size = 0
        for item in valid:
            if chunk and (len(chunk) >= MAX_CONTACTS or size + item[2] > MAX_BYTES - 1024):
                results.update(self._put(chunk, 0))
                chunk, size = [], 0
            chunk.append(item)
            size += item[2]
        if chunk:
            results.update(self._put(chunk, 0))
        return [results[r.idempotency_key] for r in records]

    def _put(
        self, chunk: list[tuple[Record, dict[str, Any], int]], depth: int
    ) -> dict[str, RecordResult]:
        body: dict[str, Any] = {"contacts": [c for _, c, _ in chunk]}
        if self.list_id:
            body["list_ids"] = [self.list_id]
        response = self._request(
            "PUT", "/v3/marketing/contacts", data=json.dumps(body, default=str).encode()
        )
        code = response.status_code
        records = [r for r, _, _ in chunk]
        if code < 300:
            job_id = _json(response).get("job_id")
            return {
                r.idempotency_key: RecordResult(
                    r.idempotency_key, Outcome.DELIVERED, code, external_id=job_id
                )
                for r in records
            }
        if code == 400 and len(chunk) > 1 and depth < MAX_BISECT_DEPTH:
            # SendGrid refuses the whole request for one bad contact: find it by halving.
            half = len(chunk) // 2
            return {**self._put(chunk[:half], depth + 1), **self._put(chunk[half:], depth + 1)}
        reason = _errors(response)
        return {
            r.idempotency_key: RecordResult(r.idempotency_key, Outcome.REJECTED, code, reason)
            for r in records
        }

    def _remove(self, records: Sequence[Record]) -> list[RecordResult]:
        if not self.list_id:
            raise DestinationConfigError(
                "sendgrid: mirror mode removes members from a list: set destination.options."
                "list_id to the SendGrid list id"
            )
        results: list[RecordResult] = []
        for start in range(0, len(records), SEARCH_CHUNK):
            part = records[start : start + SEARCH_CHUNK]
            emails = [str(r.fields.get("email", "")).strip().lower() for r in part]
            response = self._request(
                "POST", "/v3/marketing/contacts/search/emails",
                data=json.dumps({"emails": emails}).encode(),
            )
            if response.status_code == 404:
                # None of them is a contact: nothing to remove, which is what we wanted.
                results += result_for_all(part, Outcome.DELIVERED, 404)
                continue
            if response.status_code >= 300:
                results += result_for_all(
                    part, Outcome.REJECTED, response.status_code, _errors(response)
                )
                continue
            found = _json(response).get("result") or {}
            ids: dict[str, str] = {}
            for email in emails:
                entry = found.get(email) or {}
                contact = entry.get("contact") if isinstance(entry, dict) else None
                if isinstance(contact, dict) and contact.get("id"):
                    ids[email] = str(contact["id"])
            if ids:
                deleted = self._request(
                    "DELETE", f"/v3/marketing/lists/{self.list_id}/contacts",
                    params={"contact_ids": ",".join(sorted(set(ids.values())))},
                )
                if deleted.status_code >= 300:
                    results += result_for_all(
                        part, Outcome.REJECTED, deleted.status_code, _errors(deleted)
                    )
                    continue
                code = deleted.status_code
            else:
                code = response.status_code
            results += result_for_all(part, Outcome.DELIVERED, code)
        return results


def _json(response: Any) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _errors(response: Any) -> str:
    data = _json(response)
    errors = data.get("errors")
    if isinstance(errors, list) and errors:
        parts = []
        for e in errors[:5]:
            if isinstance(e, dict):
                field = e.get("field")
                parts.append(f"{field}: {e.get('message')}" if field else str(e.get("message")))
        return f"{response.status_code} " + "; ".join(parts)
    return f"{response.status_code} {response.text.strip()[:300]}"
