"""Google Ads Customer Match (OfflineUserDataJobService, REST transcoding) stand-in.

Contract: /work/shared/destinations.md section 3.8 (protobuf only; no OpenAPI: checked by hand).
Operations are staged in the job and applied when the job is run; the job then reads RUNNING for
`running_polls` status reads and SUCCESS after. Members are kept per user list as the set of
identifier values (hashed email / phone, mobile id, third-party id; address info as JSON).
Error codes marked "stand-in" are synthetic where the real enum value was not verified.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

from activations.standins.core import HTTPError, Request, Response, Route, Standin, StandinConfig
from activations.standins.core import json_response as _json
from activations.standins.faults import Fault

SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
ONEOF = ("hashedEmail", "hashedPhoneNumber", "mobileId", "thirdPartyUserId", "addressInfo")
HASHED = frozenset({"hashedEmail", "hashedPhoneNumber"})
PREFIX = "/{version}/customers/{cid}/offlineUserDataJobs"


@dataclass
class GoogleAdsConfig(StandinConfig):
    access_token: str = "ya29.headwater-test-token"
    developer_token: str = "headwater-dev-token"
    max_identifiers: int = 100_000
    running_polls: int = 1
    api_version: str = "v20"


def _failure(errors: list[dict[str, Any]], version: str) -> dict[str, Any]:
    return {"@type": f"type.googleapis.com/google.ads.googleads.{version}.errors.GoogleAdsFailure",
            "errors": errors, "requestId": secrets.token_hex(8)}


def ads_error(status: int, rpc: str, message: str, errors: list[dict[str, Any]],
              version: str = "v20") -> Response:
    return _json(status, {"error": {"code": status, "message": message, "status": rpc,
                                    "details": [_failure(errors, version)]}})


def _op_error(index: int, code: dict[str, str], message: str) -> dict[str, Any]:
    return {"errorCode": code, "message": message,
            "location": {"fieldPathElements": [{"fieldName": "operations", "index": index}]}}


class GoogleAdsStandin(Standin):
    name = "google_ads"
    config: GoogleAdsConfig

    def __init__(self, config: GoogleAdsConfig | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self._jobs: dict[str, dict[str, Any]] = {}
        self._lists: dict[str, set[str]] = {}

    @classmethod
    def default_config(cls) -> GoogleAdsConfig:
        return GoogleAdsConfig()

    def routes(self) -> list[Route]:
        return [
            Route.of("POST", PREFIX + ":create", self._create),
            Route.of("POST", PREFIX + "/{job}:addOperations", self._add_operations),
            Route.of("POST", PREFIX + "/{job}:run", self._run),
            # Not a REST route of Google's (it answers status through GAQL search): a shortcut.
            Route.of("GET", PREFIX + "/{job}", self._get),
            Route.of("POST", "/{version}/customers/{cid}/googleAds:search", self._search),
        ]

    # ---- inspection --------------------------------------------------------------------------
    def members(self, user_list: str) -> set[str]:
        """Identifier values in a user list (resource name customers/{cid}/userLists/{id})."""
        with self.lock:
            return set(self._lists.get(user_list, ()))

    def jobs(self) -> dict[str, dict[str, Any]]:
        with self.lock:
            return {k: {**v, "staged": len(v["staged"])} for k, v in self._jobs.items()}

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {"standin": self.name,
                    "user_lists": {k: sorted(v) for k, v in self._lists.items()},
                    "jobs": self.jobs()}

    # ---- vendor answers ----------------------------------------------------------------------
    def _err(self, status: int, rpc: str, message: str, errors: list[dict[str, Any]]) -> Response:
        return ads_error(status, rpc, message, errors, self.config.api_version)

    def authenticate(self, req: Request) -> Response | None:
        if req.header("Authorization") != f"Bearer {self.config.access_token}":
            return self._err(401, "UNAUTHENTICATED", "Request is missing required authentication "
                             "credential. Expected OAuth 2 access token.",
                             [{"errorCode": {"authenticationError": "AUTHENTICATION_ERROR"},
                               "message": "Authentication of the request failed."}])
        if req.header("developer-token") != self.config.developer_token:
            return self._err(401, "UNAUTHENTICATED", "The developer token is not valid.",
                             [{"errorCode": {"authenticationError": "DEVELOPER_TOKEN_NOT_VALID"},
                               "message": "The developer token is not valid."}])
        return None

    def throttled(self, fault: Fault) -> Response:
        delay = f"{max(1, round(fault.retry_after or 1))}s"
        return self._err(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check "
                         "quota).", [{"errorCode": {"quotaError": "RESOURCE_EXHAUSTED"},
                                      "message": "Too many requests. Retry in " + delay,
                                      "details": {"quotaErrorDetails": {"retryDelay": delay}}}])

    def server_error(self, fault: Fault) -> Response:
        return self._err(fault.status, "UNAVAILABLE" if fault.status == 503 else "INTERNAL",
                         "The service is currently unavailable.",
                         [{"errorCode": {"internalError": "TRANSIENT_ERROR"},
                           "message": "Transient error, retry."}])

    def _body(self, req: Request) -> dict[str, Any]:
        try:
            body = req.json() if req.body else {}
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise HTTPError(self._err(400, "INVALID_ARGUMENT", "Invalid JSON payload received.",
                                      [{"errorCode": {"requestError": "INVALID_INPUT"},
                                        "message": "body must be a JSON object"}]))
        return body

    def _job(self, req: Request) -> dict[str, Any]:
        name = f"customers/{req.params['cid']}/offlineUserDataJobs/{req.params['job']}"
        job = self._jobs.get(name)
        if job is None:
            raise HTTPError(self._err(404, "NOT_FOUND", f"{name} not found",
                                      [{"errorCode": {"requestError": "RESOURCE_NOT_FOUND"},
                                        "message": "The job does not exist."}]))
        return job

    def _create(self, req: Request) -> Response:
        body = self._body(req)
        job = body.get("job")
        meta = job.get("customerMatchUserListMetadata") if isinstance(job, dict) else None
        user_list = meta.get("userList") if isinstance(meta, dict) else None
        if (not isinstance(job, dict) or job.get("type") != "CUSTOMER_MATCH_USER_LIST"
                or not isinstance(user_list, str)
                or not re.fullmatch(r"customers/\d+/userLists/\d+", user_list)):
            return self._err(400, "INVALID_ARGUMENT", "Request contains an invalid argument.",
                             [{"errorCode": {"fieldError": "REQUIRED"},
                               "message": "job.type CUSTOMER_MATCH_USER_LIST and "
                               "customerMatchUserListMetadata.userList are required."}])
        if body.get("validateOnly"):
            return _json(200, {})
        with self.lock:
            job_id = str(len(self._jobs) + 1000 + secrets.randbelow(1000) * 100_000)
            name = f"customers/{req.params['cid']}/offlineUserDataJobs/{job_id}"
            self._jobs[name] = {"resourceName": name, "id": job_id, "status": "PENDING",
                                "type": job["type"], "userList": user_list, "staged": [],
                                "polls": 0}
        return _json(200, {"resourceName": name})

    def _add_operations(self, req: Request) -> Response:
        body = self._body(req)
        operations = body.get("operations")
        if not isinstance(operations, list) or not operations:
            return self._err(400, "INVALID_ARGUMENT", "Request contains an invalid argument.",
                             [{"errorCode": {"fieldError": "REQUIRED"},
                               "message": "operations is required."}])
        count = sum(len(op.get(k, {}).get("userIdentifiers", []) or [])
                    for op in operations if isinstance(op, dict) for k in ("create", "remove"))
        if count > self.config.max_identifiers:
            return self._err(400, "INVALID_ARGUMENT", "Request contains an invalid argument.",
                             [{"errorCode": {"userDataError": "TOO_MANY_USER_IDENTIFIERS"},
                               "message": f"At most {self.config.max_identifiers} user "
                               "identifiers per request."}])
        staged: list[tuple[str, list[str]]] = []
        errors: list[dict[str, Any]] = []
        for index, op in enumerate(operations):
            problem, parsed = self._parse_op(op)
            if problem is None and parsed[1] and self.faults.rejects(*parsed[1]):
                problem = ({"offlineUserDataJobError": "REJECTED_BY_STANDIN"},
                           "The stand-in's fault plan rejects this identifier.")
            if problem is not None:
                errors.append(_op_error(index, *problem))
            else:
                staged.append(parsed)
        partial = bool(body.get("enablePartialFailure"))
        if errors and not partial:
            return self._err(400, "INVALID_ARGUMENT", "Request contains an invalid argument.",
                             errors)
        with self.lock:
            job = self._job(req)
            if job["status"] != "PENDING":
                return self._err(400, "FAILED_PRECONDITION", "The job is not pending.", [{
                    "errorCode": {"offlineUserDataJobError": "INVALID_JOB_STATUS"},  # stand-in
                    "message": f"Operations cannot be added to a {job['status']} job."}])
            if not body.get("validateOnly"):
                job["staged"].extend(staged)
        if errors:
            return _json(200, {"partialFailureError": {
                "code": 3, "message": f"Multiple errors in 'details'. {len(errors)} failed.",
                "details": [_failure(errors, self.config.api_version)]}})
        return _json(200, {})

    def _parse_op(self, op: Any) -> tuple[tuple[dict[str, str], str] | None,
                                          tuple[str, list[str]]]:
        if isinstance(op, dict) and op.get("removeAll") is True and len(op) == 1:
            return None, ("removeAll", [])
        kinds = [k for k in ("create", "remove") if isinstance(op, dict) and k in op]
        if len(kinds) != 1 or not isinstance(op[kinds[0]], dict):
            problem = ({"fieldError": "REQUIRED"}, "exactly one of create, remove, removeAll")
            return problem, ("", [])
        identifiers = op[kinds[0]].get("userIdentifiers")
        if not isinstance(identifiers, list) or not identifiers:
            return ({"fieldError": "REQUIRED"}, "userIdentifiers is required"), ("", [])
        values: list[str] = []
        for ident in identifiers:
            present = [k for k in ONEOF if isinstance(ident, dict) and k in ident]
            if len(present) != 1:
                return ({"fieldError": "ONE_OF_FIELDS_SET_MORE_THAN_ONCE"},  # stand-in
                        "each UserIdentifier sets exactly one identifier"), ("", [])
            kind, value = present[0], ident[present[0]]
            if kind in HASHED and not (isinstance(value, str) and SHA256_HEX.match(value)):
                return ({"offlineUserDataJobError": "INVALID_SHA256_FORMAT"},
                        f"{kind} must be a SHA-256 lowercase hex digest"), ("", [])
            if kind == "addressInfo":
                value = "addressInfo:" + json.dumps(value, sort_keys=True)
            values.append(str(value))
        return None, (kinds[0], values)

    def _run(self, req: Request) -> Response:
        with self.lock:
            job = self._job(req)
            if job["status"] != "PENDING":
                return self._err(400, "FAILED_PRECONDITION", "The job has already been run.", [{
                    "errorCode": {"offlineUserDataJobError": "INVALID_JOB_STATUS"},  # stand-in
                    "message": f"The job is {job['status']}."}])
            members = self._lists.setdefault(job["userList"], set())
            for kind, values in job["staged"]:
                if kind == "create":
                    members.update(values)
                elif kind == "remove":
                    members.difference_update(values)
                else:
                    members.clear()
            job["status"] = "RUNNING"
            job["polls"] = 0
        op = f"customers/{req.params['cid']}/operations/{job['id']}"
        return _json(200, {"name": op, "metadata": {
            "@type": f"type.googleapis.com/google.ads.googleads.{self.config.api_version}"
                     ".resources.OfflineUserDataJobMetadata"}})

    def _status(self, job: dict[str, Any]) -> dict[str, Any]:
        if job["status"] == "RUNNING":
            job["polls"] += 1
            if job["polls"] > self.config.running_polls:
                job["status"] = "SUCCESS"
        return {"resourceName": job["resourceName"], "id": job["id"], "status": job["status"],
                "type": job["type"],
                "customerMatchUserListMetadata": {"userList": job["userList"]}}

    def _get(self, req: Request) -> Response:
        with self.lock:
            return _json(200, self._status(self._job(req)))

    def _search(self, req: Request) -> Response:
        query = str(self._body(req).get("query", ""))
        m = re.search(r"offline_user_data_job\.(?:resource_name\s*=\s*'([^']+)'|id\s*=\s*(\d+))",
                      query)
        with self.lock:
            rows = []
            for name, job in self._jobs.items():
                if m and (m.group(1) == name or m.group(2) == job["id"]):
                    rows.append({"offlineUserDataJob": self._status(job)})
        return _json(200, {"results": rows, "fieldMask": "offlineUserDataJob.status"})
