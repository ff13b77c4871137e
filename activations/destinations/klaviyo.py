"""Klaviyo (JSON:API, revision 2026-07-15): list membership via bulk import, flows via events.

Contract (/work/shared/destinations.md §3.3, klaviyo_*.json specs). Every request carries
`Authorization: Klaviyo-API-Key <key>`, `revision: 2026-07-15` and the JSON:API content type.

- ADD/UPDATE: POST /api/profile-bulk-import-jobs (<= 10,000 profiles) with the list as a
  relationship, so one job upserts the profiles and adds them to the list. The job is polled
  (bounded by `job_max_wait_seconds`); if it reports `failed_count`, its /import-errors pages
  are read and each error's JSON pointer (`/data/attributes/profiles/data/<i>`) marks record i
  REJECTED with Klaviyo's detail. A job still running when the wait ends is DELIVERED with a
  note: Klaviyo accepted it (202), only the per-record check is skipped.
- REMOVE: DELETE /api/lists/{id}/relationships/profiles needs Klaviyo profile ids (<= 1,000 per
  call). Decision: resolve them by email with GET /api/profiles?filter=any(email,[...]) (100 per
  page, the filter Klaviyo documents for this), or take a `klaviyo_id` field when the engine has
  one. An email Klaviyo does not know is not on the list: DELIVERED. Removal from a list is not
  an unsubscribe (no consent change, no suppression).
- SEND: POST /api/events, one per record, `unique_id` = the record's idempotency key, so a
  retried send is recorded once ("only the first processed event will be recorded").
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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
    TransientDestinationError,
    send_each,
)
from activations.http import HttpClient
from activations.identifiers import normalize_email, normalize_phone_e164

REVISION = "2026-07-15"
JSONAPI = "application/vnd.api+json"
MAX_IMPORT = 10_000
MAX_LIST_CALL = 1_000
LOOKUP_PAGE = 100
MAX_ERROR_PAGES = 200  # 200 x 100 errors: a whole 10,000-profile job, with a bound
PROFILE_FIELDS = frozenset({"email", "phone_number", "external_id", "first_name", "last_name",
                            "organization", "title", "locale", "image"})
_POINTER = re.compile(r"^/data/attributes/profiles/data/(\d+)")


@dataclass(frozen=True)
class KlaviyoOptions:
    """Settings for a Klaviyo sync, from DestinationConfig (options + credentials)."""

    api_key: str  # private API key (credential `api_key`); never logged
    list_id: str | None  # list that ADD/UPDATE join and REMOVE leaves (option; mirror mode)
    metric_name: str  # metric (event name) for SEND; flows trigger on it (option)
    default_phone_country: str  # region for phone numbers without a country code (option)
    job_poll_interval_seconds: float  # pause between bulk-job status reads (option)
    job_max_wait_seconds: float  # longest wait for a job before reporting it as accepted

    @classmethod
    def from_config(cls, config: DestinationConfig) -> KlaviyoOptions:
        api_key = config.credentials.get("api_key")
        if not api_key:
            raise DestinationConfigError(
                "klaviyo: set destination.credentials.api_key to the NAME of the environment "
                "variable holding the private API key (scopes: profiles, lists, events write)"
            )
        o = config.options
        return cls(
            api_key=api_key,
            list_id=str(o["list_id"]) if o.get("list_id") else None,
            metric_name=str(o.get("metric_name", "Headwater Journey Step")),
            default_phone_country=str(o.get("default_phone_country", "US")),
            job_poll_interval_seconds=float(o.get("job_poll_interval_seconds", 2.0)),
            job_max_wait_seconds=float(o.get("job_max_wait_seconds", 120.0)),
        )


class KlaviyoDestination:
    kind: ClassVar[str] = "klaviyo"
    channel: ClassVar[Channel | None] = Channel.EMAIL
    default_base_url: ClassVar[str | None] = "https://a.klaviyo.com"
    # Per-endpoint tiers differ (bulk/list 10/s 150/min, events 350/s); Klaviyo's RateLimit-*
    # headers and Retry-After drive the pauses instead of one fixed number.
    default_rate_limit: ClassVar[tuple[float, int] | None] = None
    max_batch_size: ClassVar[int] = MAX_IMPORT
    supported_actions: ClassVar[frozenset[Action]] = frozenset(
        {Action.ADD, Action.UPDATE, Action.REMOVE, Action.SEND}
    )

    def __init__(
        self, config: DestinationConfig, http: HttpClient,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.options = KlaviyoOptions.from_config(config)
        self.base_url = (config.base_url or "https://a.klaviyo.com").rstrip("/")
        self.http = http
        self._sleep = sleep
        self._headers = {
            "Authorization": f"Klaviyo-API-Key {self.options.api_key}",
            "revision": REVISION,
            "Content-Type": JSONAPI,
            "Accept": JSONAPI,
        }

    def send_batch(self, records: Sequence[Record]) -> list[RecordResult]:
        if not records:
            return []
        action = records[0].action
        if action == Action.SEND:
            return self._events(records)
        if action == Action.REMOVE:
            return self._remove(records)
        results: list[RecordResult] = []
        for start in range(0, len(records), MAX_IMPORT):
            results += self._import(records[start : start + MAX_IMPORT])
        return results

    # -- http ------------------------------------------------------------------------------
    def _call(self, method: str, path_or_url: str, **kwargs: Any) -> Any:
        url = path_or_url if path_or_url.startswith("http") else self.base_url + path_or_url
        if "json_body" in kwargs:
            kwargs["data"] = json.dumps(kwargs.pop("json_body"), default=str).encode()
        response = self.http.request(method, url, headers=self._headers, **kwargs)
        if response.status_code in (401, 403):
            raise DestinationAuthError(
                f"klaviyo refused the API key ({response.status_code}): check the environment "
                "variable named in destination.credentials.api_key and the key's scopes"
            )
        return response

    # -- mapping ---------------------------------------------------------------------------
    def _profile_attributes(self, record: Record) -> dict[str, Any] | str:
        attrs: dict[str, Any] = {}
        props: dict[str, Any] = {}
        for name, value in record.fields.items():
            if value is None or name in ("klaviyo_id", "properties"):
                continue
            if name == "email":
                email = normalize_email(value)
                if email is None:
                    return "field email is not a valid email address"
                attrs["email"] = email
            elif name in ("phone", "phone_number"):
                phone = normalize_phone_e164(value, self.options.default_phone_country)
                if phone is None:
                    return "field phone is not a possible phone number"
                attrs["phone_number"] = phone
            elif name in PROFILE_FIELDS:
                attrs[name] = value
            else:
                props[name] = value
        if isinstance(record.fields.get("properties"), dict):
            props.update(record.fields["properties"])
        if not any(k in attrs for k in ("email", "phone_number", "external_id")):
            return "no identifier: map email, phone or external_id for Klaviyo"
        if props:
            attrs["properties"] = props
        return attrs

    # -- ADD / UPDATE ----------------------------------------------------------------------
    def _import(self, records: Sequence[Record]) -> list[RecordResult]:
        results: dict[str, RecordResult] = {}
        sent: list[Record] = []
        profiles: list[dict[str, Any]] = []
        for r in records:
            attrs = self._profile_attributes(r)
            if isinstance(attrs, str):
                results[r.idempotency_key] = RecordResult(r.idempotency_key, Outcome.REJECTED,
                                                          None, attrs)
            else:
                sent.append(r)
                profiles.append({"type": "profile", "attributes": attrs})
        if sent:
            data: dict[str, Any] = {"type": "profile-bulk-import-job",
                                    "attributes": {"profiles": {"data": profiles}}}
            if self.options.list_id:
                data["relationships"] = {"lists": {"data": [
                    {"type": "list", "id": self.options.list_id}]}}
            resp = self._call("POST", "/api/profile-bulk-import-jobs", json_body={"data": data})
            if resp.status_code >= 300:
                reason = _errors(resp)
                for r in sent:
                    results[r.idempotency_key] = RecordResult(
                        r.idempotency_key, Outcome.REJECTED, resp.status_code, reason)
            else:
                job_id = str((_json(resp).get("data") or {}).get("id") or "")
                results.update(self._job_results(job_id, sent, resp.status_code))
        return [results[r.idempotency_key] for r in records]

    def _job_results(self, job_id: str, sent: list[Record], status: int) -> dict[str, RecordResult]:
        job = self._wait_for_job(job_id)
        state = job.get("status")
        note = None if state == "complete" else (
            f"klaviyo import job {job_id} still {state} after "
            f"{self.options.job_max_wait_seconds:.0f}s; per-record errors not checked")
        if state == "cancelled":
            return {r.idempotency_key: RecordResult(r.idempotency_key, Outcome.RETRY, status,
                                                    f"klaviyo import job {job_id} was cancelled")
                    for r in sent}
        failed = self._import_errors(job_id) if job.get("failed_count") else {}
        out: dict[str, RecordResult] = {}
        for i, r in enumerate(sent):
            if i in failed:
                out[r.idempotency_key] = RecordResult(r.idempotency_key, Outcome.REJECTED,
                                                      status, failed[i], job_id)
            else:
                out[r.idempotency_key] = RecordResult(r.idempotency_key, Outcome.DELIVERED,
                                                      status, note, job_id)
        return out

    def _wait_for_job(self, job_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.options.job_max_wait_seconds
        while True:
            resp = self._call("GET", f"/api/profile-bulk-import-jobs/{job_id}")
            attrs = (_json(resp).get("data") or {}).get("attributes") or {}
            if resp.status_code >= 300 or attrs.get("status") in ("complete", "cancelled"):
                return attrs
            if time.monotonic() >= deadline:
                return attrs
            self._sleep(self.options.job_poll_interval_seconds)

    def _import_errors(self, job_id: str) -> dict[int, str]:
        """Record index -> Klaviyo's reason, from every page of the job's import-errors."""
        failed: dict[int, str] = {}
        url: str | None = f"/api/profile-bulk-import-jobs/{job_id}/import-errors?page[size]=100"
        for _ in range(MAX_ERROR_PAGES):
            if not url:
                break
            body = _json(self._call("GET", url))
            for err in body.get("data") or []:
                attrs = err.get("attributes") or {}
                match = _POINTER.match(str((attrs.get("source") or {}).get("pointer") or ""))
                if match:
                    detail = attrs.get("detail") or attrs.get("title") or "import error"
                    failed[int(match.group(1))] = f"klaviyo {attrs.get('code')}: {detail}"
            url = (body.get("links") or {}).get("next")
        return failed

    # -- REMOVE ----------------------------------------------------------------------------
    def _remove(self, records: Sequence[Record]) -> list[RecordResult]:
        list_id = self.options.list_id
        if not list_id:
            raise DestinationConfigError(
                "klaviyo: mirror mode removes profiles from a list: set "
                "destination.options.list_id to the Klaviyo list id"
            )
        ids: dict[str, str] = {}  # idempotency key -> Klaviyo profile id
        by_email: dict[str, list[Record]] = {}
        results: dict[str, RecordResult] = {}
        for r in records:
            if r.fields.get("klaviyo_id"):
                ids[r.idempotency_key] = str(r.fields["klaviyo_id"])
            elif (email := normalize_email(r.fields.get("email"))) is not None:
                by_email.setdefault(email, []).append(r)
            else:
                results[r.idempotency_key] = RecordResult(
                    r.idempotency_key, Outcome.REJECTED, None,
                    "no email or klaviyo_id to find the Klaviyo profile to remove")
        emails = sorted(by_email)
        for start in range(0, len(emails), LOOKUP_PAGE):
            found = self._lookup(emails[start : start + LOOKUP_PAGE])
            for email in emails[start : start + LOOKUP_PAGE]:
                for r in by_email[email]:
                    if email in found:
                        ids[r.idempotency_key] = found[email]
                    else:  # unknown to Klaviyo, so certainly not on the list
                        results[r.idempotency_key] = RecordResult(
                            r.idempotency_key, Outcome.DELIVERED, 200, "not a Klaviyo profile")
        keyed = list(ids.items())
        for start in range(0, len(keyed), MAX_LIST_CALL):
            part = keyed[start : start + MAX_LIST_CALL]
            unique = sorted({pid for _, pid in part})
            body = {"data": [{"type": "profile", "id": pid} for pid in unique]}
            resp = self._call("DELETE", f"/api/lists/{list_id}/relationships/profiles",
                              json_body=body)
            ok = resp.status_code < 300
            for key, pid in part:
                results[key] = RecordResult(
                    key, Outcome.DELIVERED if ok else Outcome.REJECTED, resp.status_code,
                    None if ok else _errors(resp), pid)
        return [results[r.idempotency_key] for r in records]

    def _lookup(self, emails: list[str]) -> dict[str, str]:
        listed = ",".join(json.dumps(e) for e in emails)
        params = {"filter": f"any(email,[{listed}])", "fields[profile]": "email",
                  "page[size]": str(LOOKUP_PAGE)}
        resp = self._call("GET", "/api/profiles", params=params)
        if resp.status_code >= 300:
            raise TransientDestinationError(
                f"klaviyo: looking up profiles to remove failed: {_errors(resp)}")
        found: dict[str, str] = {}
        for profile in _json(resp).get("data") or []:
            email = normalize_email((profile.get("attributes") or {}).get("email"))
            if email and profile.get("id"):
                found[email] = str(profile["id"])
        return found

    # -- SEND ------------------------------------------------------------------------------
    def _events(self, records: Sequence[Record]) -> list[RecordResult]:
        return send_each(records, self._event)

    def _event(self, record: Record) -> RecordResult:
        fields = dict(record.fields)
        metric = fields.pop("event_name", None) or self.options.metric_name
        when = fields.pop("time", None)
        value = fields.pop("value", None)
        ident = {k: fields.pop(k) for k in ("email", "phone", "phone_number", "external_id")
                 if fields.get(k) is not None}
        probe = Record(record.profile_id, Action.ADD, ident, record.idempotency_key)
        profile = self._profile_attributes(probe)
        if isinstance(profile, str):
            return RecordResult(record.idempotency_key, Outcome.REJECTED, None, profile)
        props = fields.pop("properties", None)
        properties = dict(props) if isinstance(props, dict) else {}
        properties.update({k: v for k, v in fields.items() if k != "klaviyo_id"})
        attributes: dict[str, Any] = {
            "properties": properties,
            "metric": {"data": {"type": "metric", "attributes": {"name": str(metric)}}},
            "profile": {"data": {"type": "profile", "attributes": profile}},
            # Klaviyo's dedup key: a resend after a lost answer is recorded once.
            "unique_id": record.idempotency_key,
        }
        if when:
            attributes["time"] = str(when)
        if value is not None:
            attributes["value"] = value
        resp = self._call("POST", "/api/events",
                          json_body={"data": {"type": "event", "attributes": attributes}})
        if resp.status_code < 300:
            return RecordResult(record.idempotency_key, Outcome.DELIVERED, resp.status_code)
        return RecordResult(record.idempotency_key, Outcome.REJECTED, resp.status_code,
                            _errors(resp))


def _json(response: Any) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _errors(response: Any) -> str:
    errors = _json(response).get("errors")
    if isinstance(errors, list) and errors:
        parts = [f"{e.get('code')}: {e.get('detail') or e.get('title')}"
                 for e in errors[:5] if isinstance(e, dict)]
        return f"klaviyo {response.status_code} " + "; ".join(parts)
    return f"klaviyo {response.status_code} {response.text.strip()[:300]}"
