"""Google Ads Customer Match through OfflineUserDataJobService (REST transcoding).

Contract (/work/shared/destinations.md §3.8, googleapis offline_user_data_job_service.proto):
1. POST {base}/{version}/customers/{cid}/offlineUserDataJobs:create with a
   CUSTOMER_MATCH_USER_LIST job naming the user list (and the consent it was uploaded under);
2. POST {resourceName}:addOperations `{"operations": [{"create"|"remove": UserData}],
   "enablePartialFailure": true}`, at most 100,000 user identifiers per request;
3. POST {resourceName}:run (Google processes it asynchronously, often for hours).
Headers: `Authorization: Bearer <OAuth token>`, `developer-token`, optional `login-customer-id`.

One UserData per record, one UserIdentifier per identifier (the proto's oneof): hashedEmail,
hashedPhoneNumber (SHA-256 of E.164 WITH '+'), addressInfo (hashed first/last name, plain
countryCode and postalCode; only when all four are present, as Google matches on the set) or
thirdPartyUserId for CRM_ID lists. Normalization: activations/identifiers.py.

Per-record errors: partialFailureError.details[].errors[].location.fieldPathElements[0].index
is the failing operation = the record at that position: REJECTED with Google's message. A
request-level 4xx rejects the whole chunk. Decision: one job per batch, run at the end of the
batch (the engine has no begin/end-of-run hook yet; Google advises few large jobs, and a batch
of 10,000 records is already one). Creates and removes are set operations, so a batch resent
after a failure mid-way is harmless; an unrun job is simply abandoned by Google.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
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
)
from activations.http import HttpClient
from activations.identifiers import (
    google_country_code,
    google_hash,
    google_hashed_email,
    google_hashed_phone,
    google_normalize_first_name,
    google_normalize_last_name,
    google_postal_code,
)

MAX_IDENTIFIERS = 100_000
MAX_RECORDS = 10_000  # Google's recommended request size; also bounds the batch the engine sends
KEY_TYPES = ("CONTACT_INFO", "CRM_ID", "MOBILE_ADVERTISING_ID")


@dataclass(frozen=True)
class GoogleAdsOptions:
    """Settings for a Customer Match sync, from DestinationConfig."""

    access_token: str  # OAuth2 access token, scope adwords (credential `access_token`)
    developer_token: str  # Google Ads developer token (credential `developer_token`)
    login_customer_id: str | None  # manager account id when acting through one (optional)
    customer_id: str  # the advertiser's customer id, digits only (option)
    user_list_id: str  # the Customer Match user list id (option)
    api_version: str  # REST version path segment, e.g. v20 (option)
    upload_key_type: str  # the list's key type: CONTACT_INFO, CRM_ID or MOBILE_ADVERTISING_ID
    consent: dict[str, str]  # adUserData/adPersonalization sent with the job (option)
    canonicalize_gmail: bool  # drop dots/+suffix in gmail addresses before hashing (option)
    default_phone_country: str  # region for phones without a country code (option)

    @classmethod
    def from_config(cls, config: DestinationConfig) -> GoogleAdsOptions:
        creds, o = config.credentials, config.options
        if not creds.get("access_token") or not creds.get("developer_token"):
            raise DestinationConfigError(
                "google_ads: set destination.credentials.access_token and developer_token to "
                "the NAMES of the environment variables holding them"
            )
        customer = re.sub(r"-", "", str(o.get("customer_id", "")))
        user_list = str(o.get("user_list_id", ""))
        if not customer.isdigit() or not user_list.isdigit():
            raise DestinationConfigError(
                "google_ads: destination.options.customer_id (e.g. 123-456-7890) and "
                "user_list_id (numeric) are required"
            )
        key_type = str(o.get("upload_key_type", "CONTACT_INFO")).upper()
        if key_type not in KEY_TYPES:
            raise DestinationConfigError(
                f"google_ads: upload_key_type must be one of {KEY_TYPES}, not {key_type!r}"
            )
        login = creds.get("login_customer_id") or o.get("login_customer_id")
        return cls(
            access_token=creds["access_token"],
            developer_token=creds["developer_token"],
            login_customer_id=re.sub(r"-", "", str(login)) if login else None,
            customer_id=customer,
            user_list_id=user_list,
            api_version=str(o.get("api_version", "v20")),
            upload_key_type=key_type,
            # The engine's ads consent gate only lets consented profiles through.
            consent=dict(o.get("consent") or {"adUserData": "GRANTED",
                                               "adPersonalization": "GRANTED"}),
            canonicalize_gmail=bool(o.get("canonicalize_gmail", False)),
            default_phone_country=str(o.get("default_phone_country", "US")),
        )


class GoogleAdsDestination:
    kind: ClassVar[str] = "google_ads"
    channel: ClassVar[Channel | None] = Channel.ADS
    default_base_url: ClassVar[str | None] = "https://googleads.googleapis.com"
    # Three requests per batch; quota errors come back as 429 and are retried by the HTTP layer.
    default_rate_limit: ClassVar[tuple[float, int] | None] = (5.0, 5)
    max_batch_size: ClassVar[int] = MAX_RECORDS
    supported_actions: ClassVar[frozenset[Action]] = frozenset(
        {Action.ADD, Action.UPDATE, Action.REMOVE}
    )

    def __init__(self, config: DestinationConfig, http: HttpClient) -> None:
        self.options = GoogleAdsOptions.from_config(config)
        base = (config.base_url or "https://googleads.googleapis.com").rstrip("/")
        self.root = f"{base}/{self.options.api_version}"
        self.http = http
        self._headers = {
            "Authorization": f"Bearer {self.options.access_token}",
            "developer-token": self.options.developer_token,
            "Content-Type": "application/json",
        }
        if self.options.login_customer_id:
            self._headers["login-customer-id"] = self.options.login_customer_id

    def user_identifiers(self, record: Record) -> list[dict[str, Any]]:
        """The record's UserIdentifiers, one identifier each (empty when none is usable)."""
        f, o = record.fields, self.options
        out: list[dict[str, Any]] = []
        if o.upload_key_type == "CRM_ID":
            uid = f.get("external_id")
            return [{"thirdPartyUserId": str(uid)}] if uid not in (None, "") else []
        if o.upload_key_type == "MOBILE_ADVERTISING_ID":
            mid = f.get("mobile_id")
            return [{"mobileId": str(mid)}] if mid not in (None, "") else []
        if (email := google_hashed_email(f.get("email"), o.canonicalize_gmail)) is not None:
            out.append({"hashedEmail": email})
        if (phone := google_hashed_phone(f.get("phone"), o.default_phone_country)) is not None:
            out.append({"hashedPhoneNumber": phone})
        first = google_hash(google_normalize_first_name(f.get("first_name")))
        last = google_hash(google_normalize_last_name(f.get("last_name")))
        country = google_country_code(f.get("country"))
        postal = google_postal_code(f.get("postal_code"))
        if first and last and country and postal:
            out.append({"addressInfo": {"hashedFirstName": first, "hashedLastName": last,
                                        "countryCode": country, "postalCode": postal}})
        return out

    def send_batch(self, records: Sequence[Record]) -> list[RecordResult]:
        if not records:
            return []
        results: dict[str, RecordResult] = {}
        ready: list[tuple[Record, list[dict[str, Any]]]] = []
        for r in records:
            idents = self.user_identifiers(r)
            if idents:
                ready.append((r, idents))
            else:
                results[r.idempotency_key] = RecordResult(
                    r.idempotency_key, Outcome.REJECTED, None,
                    f"no usable identifier for a {self.options.upload_key_type} list "
                    "(email, phone, or first/last name + country + postal code)")
        if ready:
            results.update(self._job(records[0].action, ready))
        return [results[r.idempotency_key] for r in records]

    # -- the job ---------------------------------------------------------------------------
    def _post(self, url: str, body: dict[str, Any]) -> Any:
        resp = self.http.request("POST", url, headers=self._headers,
                                 data=json.dumps(body).encode())
        if resp.status_code in (401, 403):
            raise DestinationAuthError(
                f"google_ads refused the credentials ({resp.status_code}: {_status(resp)}): "
                "check the access token, developer token and login-customer-id environment "
                "variables named in destination.credentials"
            )
        return resp

    def _job(self, action: Action, ready: list[tuple[Record, list[dict[str, Any]]]]
             ) -> dict[str, RecordResult]:
        o = self.options
        user_list = f"customers/{o.customer_id}/userLists/{o.user_list_id}"
        created = self._post(f"{self.root}/customers/{o.customer_id}/offlineUserDataJobs:create",
                             {"job": {"type": "CUSTOMER_MATCH_USER_LIST",
                                      "customerMatchUserListMetadata": {
                                          "userList": user_list, "consent": o.consent}}})
        if created.status_code >= 300:
            reason = f"google_ads job create: {_status(created)}"
            return {r.idempotency_key: RecordResult(r.idempotency_key, Outcome.REJECTED,
                                                    created.status_code, reason)
                    for r, _ in ready}
        job = str(_json(created).get("resourceName"))
        verb = "remove" if action == Action.REMOVE else "create"
        out: dict[str, RecordResult] = {}
        for chunk in _chunks(ready):
            resp = self._post(f"{self.root}/{job}:addOperations", {
                "operations": [{verb: {"userIdentifiers": ids}} for _, ids in chunk],
                "enablePartialFailure": True,
            })
            if resp.status_code >= 300:
                reason = f"google_ads addOperations: {_status(resp)}"
                for r, _ in chunk:
                    out[r.idempotency_key] = RecordResult(r.idempotency_key, Outcome.REJECTED,
                                                          resp.status_code, reason)
                continue
            failed = _partial_failures(_json(resp))
            for i, (r, _) in enumerate(chunk):
                if i in failed:
                    out[r.idempotency_key] = RecordResult(r.idempotency_key, Outcome.REJECTED,
                                                          resp.status_code,
                                                          f"google_ads: {failed[i]}", job)
                else:
                    out[r.idempotency_key] = RecordResult(r.idempotency_key, Outcome.DELIVERED,
                                                          resp.status_code, None, job)
        if any(x.outcome is Outcome.DELIVERED for x in out.values()):
            ran = self._post(f"{self.root}/{job}:run", {})
            if ran.status_code >= 300:
                # Operations were staged but the job never ran: nothing changed at Google.
                reason = f"google_ads run: {_status(ran)}"
                for key, res in out.items():
                    if res.outcome is Outcome.DELIVERED:
                        out[key] = RecordResult(key, Outcome.RETRY, ran.status_code, reason, job)
        return out


def _chunks(ready: list[tuple[Record, list[dict[str, Any]]]]
            ) -> list[list[tuple[Record, list[dict[str, Any]]]]]:
    """Split so that no request carries more than 100,000 user identifiers."""
    chunks: list[list[tuple[Record, list[dict[str, Any]]]]] = [[]]
    count = 0
    for item in ready:
        if chunks[-1] and count + len(item[1]) > MAX_IDENTIFIERS:
            chunks.append([])
            count = 0
        chunks[-1].append(item)
        count += len(item[1])
    return chunks


def _partial_failures(data: dict[str, Any]) -> dict[int, str]:
    """Operation index -> Google's message, from partialFailureError's GoogleAdsFailure."""
    out: dict[int, str] = {}
    status = data.get("partialFailureError") or {}
    for detail in status.get("details") or []:
        for err in (detail or {}).get("errors") or []:
            elements = ((err.get("location") or {}).get("fieldPathElements")) or []
            first = elements[0] if elements else {}
            if first.get("fieldName") == "operations" and isinstance(first.get("index"), int):
                code = ",".join(f"{k}={v}" for k, v in (err.get("errorCode") or {}).items())
                out.setdefault(first["index"], f"{code}: {err.get('message')}")
    return out


def _status(resp: Any) -> str:
    error = _json(resp).get("error") or {}
    messages = [e.get("message") for d in error.get("details") or []
                for e in (d.get("errors") or []) if isinstance(e, dict)]
    text = f"{resp.status_code} {error.get('status')}: {error.get('message')}"
    return text + (f" ({'; '.join(str(m) for m in messages[:3])})" if messages else "")


def _json(response: Any) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
