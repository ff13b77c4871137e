"""Meta (Facebook) Custom Audiences `/{audience_id}/users` stand-in.

Contract: /work/shared/destinations.md section 3.7 (no OpenAPI exists: checked by hand).
Members are kept per audience as the set of rows: a single-key schema stores the hashed value
itself, a multi-key schema stores the row's values joined with "|" in schema order.
Throttling is a Graph error (code 17 or 613) in an HTTP 400, never a 429.
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
HASHED_KEYS = frozenset({
    "EMAIL", "PHONE", "FN", "LN", "FI", "CT", "ST", "ZIP", "COUNTRY", "DOBY", "DOBM", "DOBD",
    "GEN", "EMAIL_SHA256", "PHONE_SHA256", "FN_SHA256", "LN_SHA256",
})
PLAIN_KEYS = frozenset({"MADID", "EXTERN_ID", "PAGEUID", "APPUID", "LOOKALIKE_VALUE"})
MAX_SAMPLES = 10


@dataclass
class MetaConfig(StandinConfig):
    access_token: str = "EAAheadwater-test-token"
    max_rows: int = 10_000
    throttle_code: int = 17  # 17 user request limit, 613 calls to this api have exceeded...


def graph_error(status: int, code: int, message: str, subcode: int | None = None,
                kind: str = "OAuthException", transient: bool = False) -> Response:
    error: dict[str, Any] = {"message": message, "type": kind, "code": code,
                             "fbtrace_id": "A" + secrets.token_hex(10)}
    if subcode is not None:
        error["error_subcode"] = subcode
    if transient:
        error["is_transient"] = True
    return _json(status, {"error": error})


class MetaStandin(Standin):
    name = "meta"
    config: MetaConfig

    def __init__(self, config: MetaConfig | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self._audiences: dict[str, set[str]] = {}
        self._sessions: dict[tuple[str, int], dict[str, Any]] = {}

    @classmethod
    def default_config(cls) -> MetaConfig:
        return MetaConfig()

    def routes(self) -> list[Route]:
        return [
            Route.of("POST", "/{version}/{audience_id}/users", self._add),
            Route.of("DELETE", "/{version}/{audience_id}/users", self._remove),
            Route.of("GET", "/{version}/{audience_id}/sessions", self._session_status),
        ]

    # ---- inspection --------------------------------------------------------------------------
    def members(self, audience_id: str) -> set[str]:
        with self.lock:
            return set(self._audiences.get(audience_id, ()))

    def sessions(self) -> dict[tuple[str, int], dict[str, Any]]:
        with self.lock:
            return {k: dict(v) for k, v in self._sessions.items()}

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {"standin": self.name,
                    "audiences": {a: sorted(m) for a, m in self._audiences.items()},
                    "sessions": {f"{a}:{s}": dict(v) for (a, s), v in self._sessions.items()}}

    # ---- vendor answers ----------------------------------------------------------------------
    def _params(self, req: Request) -> dict[str, Any]:
        """Query, form or JSON body parameters merged (Graph accepts all three)."""
        params: dict[str, Any] = {k: v[-1] for k, v in req.query.items()}
        if req.body:
            ctype = (req.header("Content-Type") or "").split(";")[0].strip()
            try:
                if ctype == "application/json":
                    body = req.json()
                    if isinstance(body, dict):
                        params.update(body)
                else:
                    params.update({k: v[-1] for k, v in req.form().items()})
            except (ValueError, UnicodeDecodeError):
                raise HTTPError(graph_error(400, 100, "(#100) Invalid body")) from None
        return params

    def authenticate(self, req: Request) -> Response | None:
        header = req.header("Authorization") or ""
        token = header[7:] if header.startswith("Bearer ") else None
        if token is None:
            try:
                token = self._params(req).get("access_token")
            except HTTPError as exc:
                return exc.response
        if token is None:
            return graph_error(400, 104, "An access token is required to request this resource.")
        if token != self.config.access_token:
            return graph_error(400, 190, "Invalid OAuth access token - Cannot parse access token")
        return None

    def throttled(self, fault: Fault) -> Response:
        code = self.config.throttle_code
        message = ("(#17) User request limit reached" if code == 17 else
                   "(#613) Calls to this api have exceeded the rate limit.")
        response = graph_error(400, code, message, 2446079 if code == 17 else 1487742,
                               transient=True)
        wait_minutes = max(1, round((fault.retry_after or 60) / 60))
        response.headers["X-Business-Use-Case-Usage"] = json.dumps({"act_0": [{
            "type": "ads_management", "call_count": 100, "total_cputime": 100,
            "total_time": 100, "estimated_time_to_regain_access": wait_minutes}]})
        return response

    def server_error(self, fault: Fault) -> Response:
        return graph_error(fault.status, 2, "An unexpected error has occurred. Please retry your "
                           "request later.", transient=True)

    def _add(self, req: Request) -> Response:
        return self._change(req, add=True)

    def _remove(self, req: Request) -> Response:
        return self._change(req, add=False)

    def _change(self, req: Request, add: bool) -> Response:
        audience = req.params["audience_id"]
        if not audience.isdigit():
            return graph_error(400, 100, f"(#100) Unsupported request - object {audience} "
                               "does not exist", kind="GraphMethodException")
        params = self._params(req)
        payload = _decode(params.get("payload"), "payload")
        session = _decode(params.get("session"), "session") if "session" in params else None
        schema, rows = _check_payload(payload, self.config.max_rows)
        keys: list[str] = []
        samples: dict[str, str] = {}
        for row in rows:
            problem = _row_problem(schema, row)
            if problem is None and self.faults.rejects(*row):
                problem = "rejected by the stand-in's fault plan"
            if problem is not None:
                if len(samples) < MAX_SAMPLES:
                    samples[str(row[0]) if len(row) == 1 else json.dumps(row)] = problem
                continue
            keys.append(row[0] if len(row) == 1 else "|".join(row))
        invalid = len(rows) - len(keys)
        with self.lock:
            members = self._audiences.setdefault(audience, set())
            if add:
                members.update(keys)
            else:
                members.difference_update(keys)
            out: dict[str, Any] = {"audience_id": audience, "num_received": len(rows),
                                   "num_invalid_entries": invalid,
                                   "invalid_entry_samples": samples}
            if session is not None:
                out["session_id"] = self._track_session(audience, session, len(rows), invalid)
        return _json(200, out)

    def _track_session(self, audience: str, session: Any, received: int, invalid: int) -> int:
        if not isinstance(session, dict) or not isinstance(session.get("session_id"), int):
            raise HTTPError(graph_error(400, 100, "(#100) session.session_id must be an integer"))
        sid = session["session_id"]
        state = self._sessions.setdefault((audience, sid), {
            "session_id": sid, "num_received": 0, "num_invalid_entries": 0, "batches": [],
            "stage": "uploading", "estimated_num_total": session.get("estimated_num_total")})
        batch_seq = session.get("batch_seq")
        state["num_received"] += received
        state["num_invalid_entries"] += invalid
        state["batches"].append(batch_seq)
        if session.get("last_batch_flag"):
            state["stage"] = "finished"
        return sid

    def _session_status(self, req: Request) -> Response:
        raw = req.arg("session_id") or ""
        with self.lock:
            state = self._sessions.get((req.params["audience_id"], int(raw)) if raw.isdigit()
                                       else ("", -1))
            if state is None:
                return graph_error(400, 100, "(#100) session not found")
            return _json(200, {"data": [{k: v for k, v in state.items() if k != "batches"}]})


def _decode(value: Any, name: str) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise HTTPError(graph_error(400, 100, f"(#100) param {name} must be JSON")) from None
    return value


def _check_payload(payload: Any, max_rows: int) -> tuple[list[str], list[list[str]]]:
    if not isinstance(payload, dict) or "schema" not in payload or "data" not in payload:
        raise HTTPError(graph_error(400, 100, "(#100) The parameter payload is required and "
                                    "must contain schema and data"))
    schema = payload["schema"]
    schema_list = [schema] if isinstance(schema, str) else schema
    if (not isinstance(schema_list, list) or not schema_list
            or any(k not in HASHED_KEYS | PLAIN_KEYS for k in schema_list)
            or len(set(schema_list)) != len(schema_list)):
        raise HTTPError(graph_error(400, 100, f"(#100) Invalid schema: {schema!r}"))
    data = payload["data"]
    if not isinstance(data, list):
        raise HTTPError(graph_error(400, 100, "(#100) payload.data must be an array"))
    if len(data) > max_rows:
        raise HTTPError(graph_error(400, 100, f"(#100) Too many rows: at most {max_rows} per "
                                    "request"))
    rows = [[x] if not isinstance(x, list) else x for x in data]
    return [str(k) for k in schema_list], [[str(v) for v in r] for r in rows]


def _row_problem(schema: list[str], row: list[str]) -> str | None:
    if len(row) != len(schema):
        return f"row has {len(row)} values, schema has {len(schema)}"
    for key, value in zip(schema, row, strict=True):
        # Multi-key rows may leave a column empty; a single-key row may not.
        if key in HASHED_KEYS and not SHA256_HEX.match(value) and (value or len(row) == 1):
            return f"{key} is not a SHA-256 lowercase hex digest"
    return None
