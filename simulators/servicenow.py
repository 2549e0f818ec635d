"""ServiceNow Table API simulator (``python -m simulators.servicenow --help``).

Faithful to ``contracts/servicenow.md``: ``/api/now/table/{table}[/{sys_id}]`` (and the ``v1``/``v2``
aliases) with list, read, create, update and delete; the encoded query; display-value and
reference-link shapes; the error envelope; Basic, OAuth bearer tokens from ``/oauth_token.do`` and
``x-sn-apikey``; ACLs per role; rate-limit rules; the incident, problem and change_request business
rules (priority lookup, state side effects, data policies, journals).  Fault injection, state
inspection, seeding and run-time config live under ``/_sim/`` (see :mod:`simulators.base`).
"""
from __future__ import annotations

import base64
import copy
import functools
import hashlib
import json
import math
import os
import re
import secrets
import sys
import urllib.parse
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from simulators.base import (
    ConfigError,
    Routed,
    SimRequest,
    SimResponse,
    SimulatorApp,
    build_parser,
    json_response,
    merge_config,
    run_cli,
    text_response,
)
from simulators.servicenow_model import (
    ATTACHMENT_TABLE,
    CHOICE_TABLE,
    DEFAULT_CONFIG,
    JOURNAL_TABLE,
    PRIORITY_LOOKUP,
    PROBLEM_MOVES,
    SYSTEM_FIELDS,
    FieldDef,
    Schema,
    Store,
    fmt_time,
    is_sys_id,
    new_sys_id,
    seed_rows,
    stable_sys_id,
    to_str,
)
from simulators.servicenow_query import Accessor, Context, Term, parse, run_query

_TABLE_PATH = re.compile(r"/api/now(?:/v[12])?/table/([^/]+)(?:/([^/]+))?/?")
_ATTACHMENT_PATH = re.compile(r"/api/now(?:/v1)?/attachment(?:/([^/]+)(?:/(file))?)?/?")
ACL_VERBS = {"GET": "read", "POST": "create", "PATCH": "write", "PUT": "write", "DELETE": "delete"}
ACL_WORDS = {"read": "Read", "create": "Insert", "write": "Update", "delete": "Delete"}
NOT_AUTHENTICATED = ("User Not Authenticated", "Required to provide Auth information")
NOT_FOUND = ("No Record found", "Record doesn't exist or ACL restricts the record retrieval")
# Fields the platform computes: a value in a request body is ignored (business rules overwrite them).
COMPUTED = {
    "incident": {"priority", "active", "incident_state", "resolved_at", "resolved_by", "closed_at", "closed_by", "reopen_count",
                 "reopened_time", "reopened_by"},
    "problem": {"priority", "active", "problem_state", "resolved_at", "resolved_by", "closed_at", "closed_by", "reopen_count"},
    "change_request": {"active", "closed_at", "closed_by"},
}
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}( \d{2}:\d{2}:\d{2})?")


class SnError(Exception):
    """An error answered in the Table API envelope."""

    def __init__(self, status: int, message: str, detail: str | None = None, headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.detail = detail
        self.headers = headers or []

    def response(self) -> SimResponse:
        resp = json_response({"error": {"message": self.message, "detail": self.detail}, "status": "failure"}, self.status)
        resp.headers.extend(self.headers)
        return resp


def acl_error(verb: str) -> SnError:
    return SnError(403, "Operation Failed", f"ACL Exception {ACL_WORDS[verb]} Failed due to security constraints")


@dataclass
class Principal:
    user_name: str
    sys_id: str
    roles: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles


@dataclass
class View:
    """How records are rendered: sysparm_fields / display_value / exclude_reference_link."""

    fields: list[str] | None
    display: str
    exclude_link: bool
    base: str


def _flag(params: Mapping[str, str], name: str) -> bool:
    return params.get(name, "").strip().lower() == "true"


def _int_param(params: Mapping[str, str], name: str, default: int) -> int:
    try:
        value = int(params.get(name, ""))
    except ValueError:
        return default
    return value if value >= 0 else default


class ServiceNowSimulator(SimulatorApp):
    """The stateful instance; every operation runs under the app lock."""

    name = "servicenow"

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__(config)
        self.initial_config = copy.deepcopy(self.config)
        self._apply_config()
        self.store = Store()
        self.rate_counts: dict[tuple[str, int], int] = {}
        self._dirty = False
        state_file = self.config.get("state_file")
        if state_file and os.path.exists(state_file):
            with open(state_file, encoding="utf-8") as handle:
                self.store = Store.from_json(json.load(handle))
            self._rebuild_dynamic()
        else:
            self._seed()

    def _apply_config(self) -> None:
        try:
            self.schema = Schema(self.config)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        for key in ("users", "oauth_clients", "api_keys", "acls"):
            if not isinstance(self.config.get(key), dict):
                raise ConfigError(f"{key} must be an object")
        limit = self.config.get("rate_limit")
        if limit is not None and (not isinstance(limit, dict) or not isinstance(limit.get("limit"), int) or limit["limit"] < 1
                                  or not isinstance(limit.get("window", 3600), int) or limit.get("window", 3600) < 1):
            raise ConfigError('rate_limit must be null or {"limit": N, "window": seconds, "users"|"roles"|"operations": [...]}')

    def _rebuild_dynamic(self) -> None:
        """Custom columns in use (for full records): every u_ field a stored row carries that the schema allows."""
        for table, rows in self.store.rows.items():
            if self.schema.table(table) is None:
                continue
            for row in rows.values():
                self.schema.dynamic[table].update(k for k in row if k.startswith("u_") and self.schema.field(table, k) is not None)

    @property
    def acc(self) -> Accessor:
        return Accessor(self.schema, self.store)

    def _seed(self) -> None:
        now = self.now()
        for table, rows in seed_rows(self.config).items():
            for row in rows:
                self._insert_raw(table, row, "system", now)
        self._seed_choices()
        for table, rows in (self.config.get("seed_rows") or {}).items():
            if self.schema.table(table) is None:
                raise ConfigError(f"seed_rows: unknown table {table!r}")
            if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
                raise ConfigError(f"seed_rows.{table}: a list of objects")
            for row in rows:
                self._seed_one(table, row)

    def _seed_choices(self) -> None:
        """(Re)write sys_choice from the schema (the close_code list follows the config)."""
        now = self.now()
        self.store.table(CHOICE_TABLE).clear()
        for row in self.schema.choice_rows():
            self._insert_raw(CHOICE_TABLE, dict(row, sys_id=stable_sys_id(CHOICE_TABLE, row["name"], row["element"], row["value"])), "system", now)

    def _insert_raw(self, table: str, values: Mapping[str, Any], user: str, now: float) -> dict[str, str]:
        """Store a row as given (strings), stamping only the missing system fields."""
        row = {key: to_str(value) for key, value in values.items()}
        stamp = fmt_time(now)
        row.setdefault("sys_id", new_sys_id())
        for key, value in (("sys_created_on", stamp), ("sys_created_by", user), ("sys_updated_on", stamp), ("sys_updated_by", user),
                           ("sys_mod_count", "0"), ("sys_class_name", table), ("sys_tags", "")):
            row.setdefault(key, value)
        self.store.table(table)[row["sys_id"]] = row
        self._dirty = True
        return row

    def _seed_one(self, table: str, values: Mapping[str, Any]) -> dict[str, str]:
        """Insert through the business rules as the system (no ACL, no data policy); sys_* values are kept."""
        system = Principal("system", "", frozenset({"admin"}))
        row = self._write(table, None, dict(values), system, input_display=False, enforce=False)
        extra = {k: to_str(v) for k, v in values.items() if k in SYSTEM_FIELDS and k != "sys_id"}
        row.update(extra)
        return row

    # ------------------------------------------------------------------ SimulatorApp hooks
    def expire_sessions(self) -> None:
        self.store.tokens.clear()
        self._dirty = True
        self._persist()

    def reset_state(self) -> None:
        self.config = copy.deepcopy(self.initial_config)
        self._apply_config()
        self.store = Store()
        self.rate_counts.clear()
        self._seed()
        self._persist()

    def dump_state(self) -> dict[str, Any]:
        now = self.now()
        return {
            "simulator": self.name,
            "tables": {table: [dict(row) for row in rows.values()] for table, rows in self.store.rows.items() if table != CHOICE_TABLE},
            "tokens": sum(1 for tok in self.store.tokens.values() if tok["expires"] > now),
            "tokens_issued": self.store.tokens_issued,
            "refresh_tokens": sum(1 for tok in self.store.refresh_tokens.values() if tok["expires"] > now),
            "config": {k: v for k, v in self.config.items() if k not in ("users", "oauth_clients", "api_keys")},
        }

    # ------------------------------------------------------------------ control API additions
    def state_controls(self) -> dict[tuple[str, str], Any]:
        return {("POST", "/_sim/seed"): self._ctl_seed, ("POST", "/_sim/config"): self._ctl_config,
                ("GET", "/_sim/config"): self._ctl_config_get}

    def _ctl_seed(self, payload: Any) -> Any:
        """``{"table": t, "rows": [...]}`` or ``{t: [...], ...}``: insert as the system, returns the raw rows."""
        if isinstance(payload, dict) and "table" in payload:
            payload = {payload["table"]: payload.get("rows", [])}
        if not isinstance(payload, dict) or not all(isinstance(rows, list) for rows in payload.values()):
            raise ConfigError('expected {"table": name, "rows": [...]} or {name: [...]}')
        result: dict[str, list[dict[str, str]]] = {}
        for table, rows in payload.items():
            if self.schema.table(table) is None:
                raise ConfigError(f"unknown table {table!r}")
            if not all(isinstance(row, dict) for row in rows):
                raise ConfigError("rows must be objects")
            result[table] = [dict(self._seed_one(table, row)) for row in rows]
        return {"result": result}

    def _ctl_config(self, payload: Any) -> Any:
        """Change config keys at run time (until the next reset), e.g. ``{"require_close_fields": false}``."""
        if not isinstance(payload, dict):
            raise ConfigError("expected a JSON object of config keys")
        if "state_file" in payload or "seed_rows" in payload:
            raise ConfigError("state_file and seed_rows are start-up keys")
        previous = self.config
        self.config = merge_config(self.config, payload)
        try:
            self._apply_config()
        except ConfigError:
            self.config = previous
            self._apply_config()
            raise
        finally:
            self._rebuild_dynamic()
            self._seed_choices()
        return self._ctl_config_get(None)

    def _ctl_config_get(self, _payload: Any) -> Any:
        return {"config": self.config}

    # ------------------------------------------------------------------ routing
    def route(self, req: SimRequest) -> Routed:
        if req.path == "/oauth_token.do":
            return Routed(f"{req.method} oauth_token", "oauth_token", functools.partial(self._locked, self.op_token, req, "", ""))
        match = _TABLE_PATH.fullmatch(req.path)
        if match:
            table = urllib.parse.unquote(match.group(1))
            sys_id = urllib.parse.unquote(match.group(2)) if match.group(2) is not None else ""
            return Routed(f"{req.method} {table}", table, functools.partial(self._locked, self.op_table, req, table, sys_id))
        match = _ATTACHMENT_PATH.fullmatch(req.path)
        if match:
            first, second = urllib.parse.unquote(match.group(1) or ""), match.group(2) or ""
            return Routed(f"{req.method} attachment", "attachment", functools.partial(self._locked, self.op_attachment, req, first, second))
        if req.path.startswith("/api/"):
            return Routed("", "", lambda: SnError(400, "Requested URI does not represent any resource").response())
        return Routed("", "", lambda: text_response("Not Found", 404))

    def _locked(self, handler: Any, req: SimRequest, table: str, sys_id: str) -> SimResponse:
        with self.lock:
            try:
                result: SimResponse = handler(req, table, sys_id)
            except SnError as exc:
                result = exc.response()
            self._persist()
        return result

    # ------------------------------------------------------------------ authentication
    def _principal(self, user_name: str) -> Principal | None:
        spec = self.config["users"].get(user_name)
        if spec is None:
            return None
        row = next((r for r in self.store.table("sys_user").values() if r.get("user_name") == user_name), None)
        if row is not None and row.get("active") == "false":
            return None
        sys_id = row["sys_id"] if row else stable_sys_id("sys_user", user_name)
        return Principal(user_name, sys_id, frozenset(spec.get("roles") or []))

    def _authenticate(self, req: SimRequest) -> Principal:
        api_key = req.headers.get("x-sn-apikey")
        if api_key is not None:
            user = self.config["api_keys"].get(api_key.strip())
            principal = self._principal(user) if user else None
            if principal is None:
                raise SnError(401, *NOT_AUTHENTICATED)
            return principal
        header = req.headers.get("Authorization") or ""
        scheme, _sep, credentials = header.strip().partition(" ")
        if scheme.lower() == "basic":
            try:
                user, _colon, password = base64.b64decode(credentials.strip(), validate=True).decode("utf-8").partition(":")
            except (ValueError, UnicodeDecodeError):
                user, password = "", ""
            spec = self.config["users"].get(user)
            principal = self._principal(user) if spec and secrets.compare_digest(str(spec.get("password", "")), password) else None
            if principal is None:
                raise SnError(401, *NOT_AUTHENTICATED, headers=[("WWW-Authenticate", 'BASIC realm="Service-now"')])
            return principal
        if scheme.lower() == "bearer":
            token = self.store.tokens.get(credentials.strip())
            if token is not None and token["expires"] <= self.now():
                del self.store.tokens[credentials.strip()]
                self._dirty = True
                token = None
            principal = self._principal(token["user"]) if token else None
            if principal is None:
                raise SnError(401, *NOT_AUTHENTICATED)
            return principal
        raise SnError(401, *NOT_AUTHENTICATED, headers=[("WWW-Authenticate", 'BASIC realm="Service-now"')])

    def _allowed(self, principal: Principal, table: str, verb: str) -> bool:
        """Role ACLs grant (union over the user's roles); a user's own ``deny`` ({table or "*": [verbs]}) takes away."""
        deny = (self.config["users"].get(principal.user_name) or {}).get("deny") or {}
        if verb in (deny.get(table) or []) or verb in (deny.get("*") or []):
            return False
        for role in principal.roles:
            rules = self.config["acls"].get(role) or {}
            if verb in (rules[table] if table in rules else rules.get("*") or []):
                return True
        return False

    def _rate_limit(self, principal: Principal, operation: str) -> list[tuple[str, str]]:
        """Count the request against the configured rule; 429 when over it.  Returns the X-RateLimit-* headers."""
        rule = self.config.get("rate_limit")
        if not rule:
            return []
        if rule.get("users") is not None and principal.user_name not in rule["users"]:
            return []
        if rule.get("roles") is not None and not principal.roles & set(rule["roles"]):
            return []
        if rule.get("operations") is not None and operation not in rule["operations"]:
            return []
        window = int(rule.get("window", 3600))
        now = self.now()
        start = int(now // window * window)
        reset = start + window
        key = (principal.user_name, start)
        self.rate_counts[key] = self.rate_counts.get(key, 0) + 1
        limit = int(rule["limit"])
        headers = [("X-RateLimit-Limit", str(limit)), ("X-RateLimit-Reset", str(reset)),
                   ("X-RateLimit-Rule", str(rule.get("rule") or stable_sys_id("sys_rate_limit_rules", "labops")))]
        if self.rate_counts[key] > limit:
            retry = max(1, math.ceil(reset - now))
            name = rule.get("name") or "labops simulator rule"
            raise SnError(429, f"Rate limit exceeded: rule '{name}' allows {limit} requests per {window} seconds",
                          f"User {principal.user_name} exceeded the rate limit; retry after {retry} seconds",
                          headers=[*headers, ("Retry-After", str(retry))])
        return headers

    # ------------------------------------------------------------------ OAuth token endpoint
    def op_token(self, req: SimRequest, _table: str, _sys_id: str) -> SimResponse:
        denied = json_response({"error": "server_error", "error_description": "access_denied"}, 401)
        if req.method != "POST":
            return json_response({"error": "invalid_request", "error_description": "POST required"}, 405)
        if not (req.headers.get("Content-Type") or "").lower().startswith("application/x-www-form-urlencoded"):
            return denied  # a JSON body carries no readable parameters
        params = dict(urllib.parse.parse_qsl(req.body.decode("utf-8", "replace"), keep_blank_values=True))
        client = self.config["oauth_clients"].get(params.get("client_id", ""))
        if client is None or not secrets.compare_digest(str(client.get("secret", "")), params.get("client_secret", "")):
            return denied
        grant = params.get("grant_type", "")
        now = self.now()
        with_refresh = True
        if grant == "password":
            spec = self.config["users"].get(params.get("username", ""))
            if spec is None or not secrets.compare_digest(str(spec.get("password", "")), params.get("password", "")):
                return denied
            user = params["username"]
        elif grant == "client_credentials":
            user = str(client.get("user") or "")
            with_refresh = False
        elif grant == "refresh_token":
            stored = self.store.refresh_tokens.get(params.get("refresh_token", ""))
            if stored is None or stored["client"] != params["client_id"] or stored["expires"] <= now:
                return denied
            user = stored["user"]
        else:
            return json_response({"error": "unsupported_grant_type", "error_description": f"grant type {grant!r} is not supported"}, 400)
        if self._principal(user) is None:
            return denied
        lifetime = int(self.config["token_lifetime"])
        access = secrets.token_urlsafe(48)
        self.store.tokens[access] = {"user": user, "client": params["client_id"], "expires": now + lifetime}
        self.store.tokens_issued += 1
        body: dict[str, Any] = {"access_token": access, "scope": params.get("scope") or "useraccount", "token_type": "Bearer", "expires_in": lifetime}
        if with_refresh:
            refresh = params.get("refresh_token") if grant == "refresh_token" else secrets.token_urlsafe(48)
            assert refresh is not None
            if grant != "refresh_token":
                self.store.refresh_tokens[refresh] = {"user": user, "client": params["client_id"],
                                                      "expires": now + int(self.config["refresh_lifetime"])}
            body["refresh_token"] = refresh
        self._dirty = True
        return json_response(body)

    # ------------------------------------------------------------------ Table API
    def op_table(self, req: SimRequest, table: str, sys_id: str) -> SimResponse:
        return self._rate_limited(req, table, lambda principal: self._table_op(req, table, sys_id, principal))

    def _rate_limited(self, req: SimRequest, resource: str, handle: Callable[[Principal], SimResponse]) -> SimResponse:
        """Authenticate, count the request against the rate limit of ``<method> <resource>`` and answer with the
        X-RateLimit-* headers, on success and on an error reply alike."""
        principal = self._authenticate(req)
        rate_headers = self._rate_limit(principal, f"{req.method} {resource}")
        try:
            resp = handle(principal)
        except SnError as exc:
            exc.headers.extend(rate_headers)
            raise
        resp.headers.extend(rate_headers)
        return resp

    def _table_op(self, req: SimRequest, table: str, sys_id: str, principal: Principal) -> SimResponse:
        if self.schema.table(table) is None:
            raise SnError(400, f"Invalid table {table}")
        verb = ACL_VERBS.get(req.method)
        if verb is None or (verb == "create" and sys_id) or (verb in ("write", "delete") and not sys_id):
            raise SnError(405, "Method not Supported", f"{req.method} method not supported for API")
        params = dict(urllib.parse.parse_qsl(req.query, keep_blank_values=True))
        view = self._view(req, params)
        if verb == "read":
            if not self._allowed(principal, table, "read"):
                if sys_id:
                    raise SnError(404, *NOT_FOUND)
                raise acl_error("read")
            return self._get_record(table, sys_id, view) if sys_id else self._list(req, table, params, view, principal)
        current = self.store.table(table).get(sys_id) if sys_id else None
        if sys_id and current is None:
            raise SnError(404, *NOT_FOUND)  # the record is fetched before its ACLs are evaluated
        if not self._allowed(principal, table, verb):
            raise acl_error(verb)
        if verb == "delete":
            del self.store.table(table)[sys_id]
            self._dirty = True
            return SimResponse(204)
        body = self._body(req)
        input_display = _flag(params, "sysparm_input_display_value")
        if verb == "create":
            row = self._write(table, None, body, principal, input_display)
            return json_response({"result": self._render(table, row, view)}, 201)
        assert current is not None
        if table == "incident" and current.get("state") == "7" and self.config["closed_read_only"] and not principal.is_admin:
            raise acl_error("write")
        row = self._write(table, current, body, principal, input_display)
        return json_response({"result": self._render(table, row, view)})

    def _body(self, req: SimRequest) -> dict[str, Any]:
        if not req.body.strip():
            return {}
        content_type = (req.headers.get("Content-Type") or "").lower()
        if "json" not in content_type:
            raise SnError(415, "Unsupported Media Type", f"Content-Type {content_type or '(none)'} is not supported; send application/json")
        try:
            data = json.loads(req.body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SnError(400, "Exception while reading request", "The payload is not valid JSON.") from exc
        if isinstance(data, list):  # not a bulk operation: only the first element counts
            data = data[0] if data else {}
        if not isinstance(data, dict):
            raise SnError(400, "Exception while reading request", "The payload is not valid JSON.")
        return data

    def _view(self, req: SimRequest, params: Mapping[str, str]) -> View:
        fields = [f.strip() for f in params["sysparm_fields"].split(",") if f.strip()] if params.get("sysparm_fields") else None
        display = params.get("sysparm_display_value", "false").strip().lower()
        base = self.config.get("instance_url") or f"http://{req.headers.get('Host') or '127.0.0.1'}"
        return View(fields, display if display in ("true", "all") else "false", _flag(params, "sysparm_exclude_reference_link"), base.rstrip("/"))

    # ------------------------------------------------------------------ Attachment API (contract §12)
    def op_attachment(self, req: SimRequest, first: str, second: str) -> SimResponse:
        return self._rate_limited(req, "attachment", lambda principal: self._attachment_op(req, first, second, principal))

    def _attachment_op(self, req: SimRequest, first: str, second: str, principal: Principal) -> SimResponse:
        params = dict(urllib.parse.parse_qsl(req.query, keep_blank_values=True))
        view = self._view(req, params)
        if req.method == "POST" and first == "file" and not second:
            return self._attach(req, params, view, principal)
        if req.method == "GET" and not first:
            if not self._allowed(principal, ATTACHMENT_TABLE, "read"):
                raise acl_error("read")
            return self._list(req, ATTACHMENT_TABLE, params, view, principal)
        meta = self.store.table(ATTACHMENT_TABLE).get(first) if first else None
        if req.method not in ("GET", "DELETE") or not first or (second and req.method != "GET"):
            raise SnError(405, "Method not Supported", f"{req.method} method not supported for API")
        if meta is None or not self._allowed(principal, ATTACHMENT_TABLE, "read"):
            raise SnError(404, *NOT_FOUND)
        if req.method == "DELETE":
            if not self._allowed(principal, meta.get("table_name", ""), "write"):
                raise acl_error("delete")
            del self.store.table(ATTACHMENT_TABLE)[first]
            self.store.blobs.pop(first, None)
            self._dirty = True
            return SimResponse(204)
        if second == "file":
            content = base64.b64decode(self.store.blobs.get(first, ""))
            return SimResponse(200, content, meta.get("content_type") or "application/octet-stream")
        return json_response({"result": self._render(ATTACHMENT_TABLE, meta, view)})

    def _attach(self, req: SimRequest, params: Mapping[str, str], view: View, principal: Principal) -> SimResponse:
        for name in ("table_name", "table_sys_id", "file_name"):
            if not params.get(name):
                raise SnError(400, f"Missing parameter: {name}")
        table = params["table_name"]
        if self.schema.table(table) is None:
            raise SnError(400, f"Invalid table {table}")
        if params["table_sys_id"] not in self.store.table(table):
            raise SnError(404, *NOT_FOUND)
        if not self._allowed(principal, table, "write"):
            raise acl_error("create")
        sys_id = new_sys_id()
        content_type = (req.headers.get("Content-Type") or "application/octet-stream").split(";")[0].strip()
        row = self._insert_raw(ATTACHMENT_TABLE, {
            "sys_id": sys_id, "file_name": params["file_name"], "content_type": content_type, "size_bytes": str(len(req.body)),
            "size_compressed": str(len(zlib.compress(req.body))), "compressed": "true", "hash": hashlib.sha256(req.body).hexdigest(),
            "table_name": table, "table_sys_id": params["table_sys_id"], "download_link": f"{view.base}/api/now/attachment/{sys_id}/file",
            "state": "available"}, principal.user_name, self.now())
        self.store.blobs[sys_id] = base64.b64encode(req.body).decode("ascii")
        return json_response({"result": self._render(ATTACHMENT_TABLE, row, view)}, 201)

    # ------------------------------------------------------------------ reads
    def _get_record(self, table: str, sys_id: str, view: View) -> SimResponse:
        row = self.store.table(table).get(sys_id)
        if row is None:
            raise SnError(404, *NOT_FOUND)
        return json_response({"result": self._render(table, row, view)})

    def _list(self, req: SimRequest, table: str, params: Mapping[str, str], view: View, principal: Principal) -> SimResponse:
        query = parse(params.get("sysparm_query", ""))
        plain = [Term(key, "=", value) for key, value in params.items() if not key.startswith("sysparm_")]
        if plain:
            query.blocks = [block + [[term] for term in plain] for block in query.blocks] or [[[term] for term in plain]]
        ctx = Context(principal.user_name, principal.sys_id, self.now())
        rows = run_query(self.acc, table, list(self.store.table(table).values()), query, ctx, bool(self.config["invalid_query_returns_no_rows"]))
        max_limit = int(self.config["max_limit"])
        limit = min(_int_param(params, "sysparm_limit", max_limit) or max_limit, max_limit)
        offset = _int_param(params, "sysparm_offset", 0)
        page = rows[offset:offset + limit]
        resp = json_response({"result": [self._render(table, row, view) for row in page]})
        if not _flag(params, "sysparm_no_count"):
            resp.headers.append(("X-Total-Count", str(len(rows))))
        if not _flag(params, "sysparm_suppress_pagination_header"):
            resp.headers.append(("Link", self._links(req, view.base, len(rows), limit, offset)))
        return resp

    @staticmethod
    def _links(req: SimRequest, base: str, total: int, limit: int, offset: int) -> str:
        kept = [(k, v) for k, v in urllib.parse.parse_qsl(req.query, keep_blank_values=True) if k not in ("sysparm_limit", "sysparm_offset")]

        def url(at: int) -> str:
            query = urllib.parse.urlencode([*kept, ("sysparm_limit", str(limit)), ("sysparm_offset", str(at))], quote_via=urllib.parse.quote)
            return f"<{base}{req.path}?{query}>"
        last = ((total - 1) // limit) * limit if total > 0 else 0
        links = [f'{url(0)};rel="first"']
        if offset > 0:
            links.append(f'{url(max(0, offset - limit))};rel="prev"')
        if offset + limit < total:
            links.append(f'{url(offset + limit)};rel="next"')
        links.append(f'{url(last)};rel="last"')
        return ",".join(links)

    def _render(self, table: str, row: Mapping[str, str], view: View) -> dict[str, Any]:
        acc = self.acc
        out: dict[str, Any] = {}
        for name in view.fields if view.fields is not None else self.schema.columns(table):
            resolved = acc.resolve(table, name)
            if resolved is None:
                continue
            fdef = resolved[1]
            raw = acc.raw(table, row, name)
            if view.display == "false":
                value: Any = raw
                if fdef.kind == "reference" and raw and not view.exclude_link:
                    value = {"link": f"{view.base}/api/now/table/{fdef.ref}/{raw}", "value": raw}
            else:
                shown = acc.display(table, row, name)
                if fdef.kind == "reference" and raw and not view.exclude_link:
                    link = f"{view.base}/api/now/table/{fdef.ref}/{raw}"
                    value = {"display_value": shown, "link": link} if view.display == "true" else {"display_value": shown, "value": raw, "link": link}
                else:
                    value = shown if view.display == "true" else {"display_value": shown, "value": raw}
            out[name] = value
        return out

    # ------------------------------------------------------------------ writes
    def _coerce(self, table: str, name: str, fdef: FieldDef, value: Any, input_display: bool) -> str | None:
        """The stored string for a body value, or None when the platform would not set the field."""
        text = to_str(value)
        if fdef.kind == "choice" and input_display and text:
            text = next((v for v, label in fdef.choices if label.lower() == text.lower()), text)
        if fdef.kind == "choice" and fdef.numeric and text and not re.fullmatch(r"-?\d+", text):
            return None
        if fdef.kind == "integer" and text and not re.fullmatch(r"-?\d+", text):
            return None
        if fdef.kind == "boolean":
            return "true" if text.strip().lower() in ("true", "1", "yes", "on") else "false"
        if fdef.kind == "datetime" and text:
            text = text.replace("T", " ").rstrip("Z")
            if not _DATE.fullmatch(text):
                return None
            return text if " " in text else f"{text} 00:00:00"
        if fdef.kind == "reference" and text and input_display:
            return self._lookup_display(fdef.ref, text)  # an unknown name leaves the field unchanged
        if fdef.max_length and len(text) > fdef.max_length:
            text = text[:fdef.max_length]
        return text

    def _lookup_display(self, table: str, text: str) -> str | None:
        rows = self.store.table(table)
        if text in rows:
            return text
        tdef = self.schema.table(table)
        keys = [tdef.display] if tdef else []
        if table == "sys_user":
            keys += ["user_name", "email"]
        for key in keys:
            for row in rows.values():
                if row.get(key, "").lower() == text.lower():
                    return row["sys_id"]
        return None

    def _write(self, table: str, current: dict[str, str] | None, body: Mapping[str, Any], principal: Principal,
               input_display: bool, enforce: bool = True) -> dict[str, str]:
        """Insert (``current`` None) or update one record through the business rules; returns the stored row."""
        now = self.now()
        new = dict(current) if current is not None else {}
        journals: list[tuple[str, str]] = []
        computed = COMPUTED.get(table, set())
        for name, value in body.items():
            fdef = self.schema.field(table, name)
            if fdef is None or name in SYSTEM_FIELDS or (name in computed and enforce):
                continue  # unknown, system and computed fields are ignored silently
            if fdef.kind == "journal":
                text = to_str(value)
                if text:
                    journals.append((name, text))
                continue
            stored = self._coerce(table, name, fdef, value, input_display)
            if stored is not None:
                new[name] = stored
                if name.startswith("u_"):
                    self.schema.dynamic[table].add(name)
        if current is None:
            self._defaults(table, new, principal, now)
        self._rules(table, current, new, principal, now, enforce)
        if current is not None:
            changed = any(new.get(k, "") != current.get(k, "") for k in set(new) | set(current))
            if not changed and not journals:
                return current
            new["sys_updated_on"] = fmt_time(now)
            new["sys_updated_by"] = principal.user_name
            new["sys_mod_count"] = str(int(current.get("sys_mod_count", "0") or 0) + 1)
            current.clear()
            current.update(new)
            row = current
        else:
            sys_id = to_str(body.get("sys_id"))
            if not is_sys_id(sys_id) or sys_id in self.store.table(table):
                sys_id = new_sys_id()
            new["sys_id"] = sys_id
            tdef = self.schema.tables[table]
            if tdef.prefix and not new.get("number"):
                new["number"] = self.store.next_number(tdef)  # after the data policies: a refused insert takes no number
            row = self._insert_raw(table, new, principal.user_name, now)
        for element, text in journals:
            self._insert_raw(JOURNAL_TABLE, {"element_id": row["sys_id"], "element": element, "name": table, "value": text},
                             principal.user_name, now)
        self._dirty = True
        return row

    def _defaults(self, table: str, row: dict[str, str], principal: Principal, now: float) -> None:
        defaults: dict[str, str] = {}
        if table in ("incident", "problem", "change_request"):
            defaults = {"impact": "3", "urgency": "3", "opened_at": fmt_time(now), "opened_by": principal.sys_id}
            defaults.update({"incident": {"state": "1", "reopen_count": "0", "contact_type": ""},
                             "problem": {"state": "101", "reopen_count": "0", "known_error": "false"},
                             "change_request": {"state": "-5", "type": "normal", "approval": "not requested", "risk": "3",
                                                "priority": "4", "on_hold": "false"}}[table])
        elif table == "kb_knowledge":
            defaults = {"workflow_state": "draft", "active": "true", "author": principal.sys_id, "article_type": "text"}
        elif table in ("sys_user", "sys_user_group"):
            defaults = {"active": "true"}
        elif table == "cmdb_ci":
            defaults = {"operational_status": "1"}
        for key, value in defaults.items():
            if not row.get(key):
                row[key] = value
        if table == "sys_user" and not row.get("name"):
            row["name"] = " ".join(p for p in (row.get("first_name", ""), row.get("last_name", "")) if p) or row.get("user_name", "")

    def _rules(self, table: str, old: Mapping[str, str] | None, new: dict[str, str], principal: Principal, now: float, enforce: bool) -> None:
        """Business rules and data policies of the task tables (contract §9, §10)."""
        if table not in ("incident", "problem", "change_request"):
            return
        old_state = old.get("state", "") if old is not None else ""
        state = new.get("state", "")
        entering = state != old_state
        missing: list[str] = []
        stamp, user = fmt_time(now), principal.sys_id
        fields = self.schema.tables[table].fields
        close_fields = bool(self.config["require_close_fields"]) and enforce
        hold_reason = bool(self.config["require_hold_reason"]) and enforce
        if table in ("incident", "problem"):
            new["priority"] = PRIORITY_LOOKUP.get((new.get("impact", "3"), new.get("urgency", "3")), new.get("priority", "5"))
        if table == "incident":
            new["incident_state"] = state
            new["active"] = "false" if state in ("7", "8") else "true"
            if state == "3":
                if hold_reason and not new.get("hold_reason"):
                    missing.append(fields["hold_reason"].label)
            else:
                new["hold_reason"] = ""
            if state in ("6", "7") and entering and close_fields:
                missing += [fields[f].label for f in ("close_code", "close_notes") if not new.get(f)]
            self._stamp_states(new, entering, state, ("6",), ("7",), stamp, user)
            if old_state == "6" and state in ("1", "2", "3"):
                new["reopen_count"] = str(int(new.get("reopen_count", "0") or 0) + 1)
                new.update(resolved_at="", resolved_by="", reopened_time=stamp, reopened_by=user)
        elif table == "problem":
            if enforce and self.config["problem_state_model"] and entering and \
                    (state not in PROBLEM_MOVES.get(old_state, set()) if old is not None else state not in ("101", "102")):
                labels = fields["state"]
                move = f"{labels.choice_label(old_state) or '(none)'} to {labels.choice_label(state)}"
                raise SnError(403, "Operation Failed", f"Invalid state transition: {move} is not allowed by the problem state model")
            new["problem_state"] = state
            new["active"] = "false" if state == "107" else "true"
            if state in ("106", "107") and entering and close_fields and not new.get("resolution_code"):
                missing.append(fields["resolution_code"].label)
            self._stamp_states(new, entering, state, ("106",), ("107",), stamp, user)
            if old_state in ("106",) and state in ("101", "102", "103", "104"):
                new["reopen_count"] = str(int(new.get("reopen_count", "0") or 0) + 1)
                new.update(resolved_at="", resolved_by="")
        else:
            new["active"] = "false" if state in ("3", "4") else "true"
            if enforce and self.config["change_requires_assignment_group"] and state in ("-4", "-3", "-2", "-1", "0", "3") \
                    and not new.get("assignment_group"):
                missing.append(fields["assignment_group"].label)
            if state == "3" and entering and close_fields:
                missing += [fields[f].label for f in ("close_code", "close_notes") if not new.get(f)]
            if new.get("on_hold") == "true" and hold_reason and not new.get("on_hold_reason"):
                missing.append(fields["on_hold_reason"].label)
            if entering and state in ("3", "4"):
                new.update(closed_at=stamp, closed_by=user)
        if missing:
            raise SnError(403, "Operation Failed", f"Data Policy Exception: The following fields are mandatory: {', '.join(missing)}")

    @staticmethod
    def _stamp_states(new: dict[str, str], entering: bool, state: str, resolved: tuple[str, ...], closed: tuple[str, ...],
                      stamp: str, user: str) -> None:
        if not entering:
            return
        if state in resolved or (state in closed and not new.get("resolved_at")):
            new.update(resolved_at=stamp, resolved_by=user)
        if state in closed:
            new.update(closed_at=stamp, closed_by=user)


def build_app(overrides: Mapping[str, Any] | None = None) -> ServiceNowSimulator:
    """A ServiceNow simulator with ``overrides`` applied to :data:`DEFAULT_CONFIG` (for in-process use)."""
    return ServiceNowSimulator(merge_config(DEFAULT_CONFIG, overrides))


EPILOG = """\
examples:
  python -m simulators.servicenow --port 8081
  python -m simulators.servicenow --print-config > servicenow.json   # edit, then: --config servicenow.json
  curl -s -u itsm.bot:bot-pw "http://127.0.0.1:PORT/api/now/table/incident?sysparm_query=active=true&sysparm_limit=5"
  curl -s -XPOST http://127.0.0.1:PORT/oauth_token.do \\
       -d grant_type=password -d client_id=labops -d client_secret=client-secret -d username=itsm.bot -d password=bot-pw

control API (not under /api):
  GET /_sim/health | GET /_sim/state | POST /_sim/reset | POST /_sim/clock {"advance": seconds}
  GET|DELETE /_sim/requests   the request log (operation, method, status) / clear it and the counters
  GET|POST|DELETE /_sim/faults   e.g. {"kind":"http_status","status":503,"count":2,"operations":["POST incident"]}
  POST /_sim/seed {"table": "cmdb_ci", "rows": [{"name": "db-01"}]}   insert rows as the system
  GET|POST /_sim/config {"require_close_fields": false}   change config keys until the next reset
  Operation names: "<METHOD> <table>" (fault operations may also name just the table) and "POST oauth_token".
  See docs/simulators.md.
"""


def main(argv: list[str] | None = None) -> int:
    parser = build_parser("python -m simulators.servicenow",
                          "Stateful ServiceNow Table API simulator (contracts/servicenow.md) with OAuth, ACLs, rate limits and fault injection.",
                          EPILOG)
    return run_cli(ServiceNowSimulator, DEFAULT_CONFIG, parser, argv)


if __name__ == "__main__":
    sys.exit(main())
