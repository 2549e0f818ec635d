"""Jira REST simulator, Cloud (v3 + v2) and Data Center (v2) (``python -m simulators.jira --help``).

Faithful to ``contracts/jira.md`` (the §7 checklist): issues (create, get, edit, delete), the
workflow (statuses, transitions, resolution screen), comments, issue properties, issue links, the
enhanced JQL search with ``nextPageToken`` and its eventual consistency (``search_lag`` +
``reconcileIssues``), the Data Center ``/search`` with ``startAt``/``total``, the legacy Cloud search
answering 410, ADF validation on v3, the field rules of §4, the error envelope, per-mode
authentication, rate limits.  Fault injection, state inspection, seeding and run-time config live
under ``/_sim/`` (see :mod:`simulators.base`).
"""
from __future__ import annotations

import base64
import binascii
import copy
import functools
import hashlib
import json
import math
import os
import re
import secrets
import sys
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from simulators import jira_adf
from simulators.base import (
    ConfigError,
    Fault,
    Routed,
    SimRequest,
    SimResponse,
    SimulatorApp,
    build_parser,
    json_response,
    mask_query,
    merge_config,
    run_cli,
    text_response,
)
from simulators.jira_jql import Catalog as JqlCatalog
from simulators.jira_jql import JqlError, compile_query, order_issues, parse
from simulators.jira_model import (
    CATEGORIES,
    CUSTOM_TYPES,
    DEFAULT_CONFIG,
    EDITABLE,
    SYSTEM_FIELDS,
    Catalog,
    Store,
    fmt_time,
    snapshot,
)

_REST = re.compile(r"/rest/api/(2|3|latest)(/.*)?")
NOT_FOUND_ISSUE = "Issue does not exist or you do not have permission to see it."
CLOUD_401 = "Client must be authenticated to access this resource."
DC_401 = "You are not authenticated. Authentication required to perform this operation."
GONE = ("The requested API has been removed. Please migrate to the /rest/api/3/search/jql API. "
        "A full migration guideline is available at https://developer.atlassian.com/changelog/#CHANGE-2046")
UNBOUNDED = "Unbounded JQL queries are not allowed here. Please add a search restriction to your query."
MAX_TEXT = 32767
TOKEN_LIFETIME = 7 * 86400
FAULT_MESSAGES = {
    400: "The request could not be processed.", 403: "You do not have permission to perform this operation.",
    404: NOT_FOUND_ISSUE, 409: "The issue was changed by another request at the same time. Reload the issue and try again.",
    413: "The request exceeds a limit of this issue.", 422: "The instance configuration does not allow this operation.",
}
_TIME_IN = re.compile(r"(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}(?::\d{2})?)(?:\.\d+)?(Z|[+-]\d{2}:?\d{2})?")


class JiraError(Exception):
    """An error answered in the Jira envelope (or as plain text when ``plain`` is set)."""

    def __init__(self, status: int, messages: list[str] | str | None = None, errors: Mapping[str, str] | None = None,
                 plain: str | None = None, headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(plain or str(messages or errors))
        self.status = status
        self.messages = [messages] if isinstance(messages, str) else list(messages or [])
        self.errors = dict(errors or {})
        self.plain = plain
        self.headers = headers or []

    def response(self) -> SimResponse:
        if self.plain is not None:
            resp = text_response(self.plain, self.status)
        else:
            resp = json_response({"errorMessages": self.messages, "errors": self.errors}, self.status)
        resp.headers.extend(self.headers)
        return resp


def cannot_set(name: str) -> str:
    return f"Field '{name}' cannot be set. It is not on the appropriate screen, or unknown."


@dataclass
class Principal:
    email: str  # the users key ("" for anonymous)
    spec: Mapping[str, Any]

    @property
    def anonymous(self) -> bool:
        return not self.email

    @property
    def admin(self) -> bool:
        return bool(self.spec.get("admin"))


@dataclass
class Ctx:
    """One request: API flavour, caller, base URL and query parameters."""

    req: SimRequest
    version: str  # "2" | "3" | "latest"
    principal: Principal
    base: str
    params: dict[str, str]

    @property
    def adf(self) -> bool:
        return self.version == "3"

    @property
    def api_path(self) -> str:
        return f"{self.base}/rest/api/{self.version}"


Handler = Callable[..., SimResponse]


def _parse_time(value: Any, now: float) -> float | None:
    """Seed/control time values: epoch number, Jira or ISO timestamp, or a JQL-style offset (``-3d``)."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    rel = re.fullmatch(r"([-+]?)(\d+(?:\.\d+)?)([smhdw])", text)
    if rel:
        seconds = float(rel.group(2)) * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[rel.group(3)]
        return now - seconds if rel.group(1) == "-" else now + seconds
    match = _TIME_IN.fullmatch(text)
    if match:
        clock = match.group(2) if match.group(2).count(":") == 2 else match.group(2) + ":00"
        epoch = float(time.mktime(time.strptime(f"{match.group(1)} {clock}", "%Y-%m-%d %H:%M:%S")) - time.timezone)
        zone = (match.group(3) or "Z").replace(":", "")
        if zone != "Z":
            sign = 1 if zone[0] == "+" else -1
            epoch -= sign * (int(zone[1:3]) * 3600 + int(zone[3:5]) * 60)
        frac = re.search(r"\.(\d+)", text)
        return epoch + (float("0." + frac.group(1)) if frac else 0.0)
    raise ConfigError(f"cannot read the time {value!r} (epoch, 2026-05-04T10:15:30.000+0000 or -3d)")


class JiraSimulator(SimulatorApp):
    """The stateful Jira instance; every operation runs under the app lock."""

    name = "jira"

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__(config)
        self.initial_config = copy.deepcopy(self.config)
        self.catalog = Catalog.build(self.config)
        self.store = Store()
        self.rate_counts: dict[tuple[str, int], int] = {}
        self.failed_logins: dict[str, int] = {}
        self._dirty = False
        state_file = self.config.get("state_file")
        if state_file and os.path.exists(state_file):
            with open(state_file, encoding="utf-8") as handle:
                self.store = Store.from_json(json.load(handle))

    @property
    def cloud(self) -> bool:
        return bool(self.config["mode"] == "cloud")

    # ------------------------------------------------------------------ SimulatorApp hooks
    def handle(self, req: SimRequest) -> SimResponse:
        """As the base, but the request log also keeps each request's ``path``, masked ``query`` and JSON ``body``."""
        if req.path == "/_sim" or req.path.startswith("/_sim/"):
            return self.control(req)
        routed = self.route(req)
        with self.lock:
            key = routed.operation or "<no route>"
            self.counters[key] = self.counters.get(key, 0) + 1
        resp = self._respond(routed)
        with self.lock:
            self.request_log.append({"operation": key, "method": req.method, "status": "DROP" if resp.drop else resp.status,
                                     "path": req.path, "query": mask_query(req.query), "body": _logged_body(req.body)})
        return resp

    def reset_state(self) -> None:
        self.config = copy.deepcopy(self.initial_config)
        self.catalog = Catalog.build(self.config)
        self.store = Store()
        self.rate_counts.clear()
        self.failed_logins.clear()
        self._dirty = True
        self._persist()

    def body_limit(self) -> int:
        return 10 * 1024 * 1024

    def dump_state(self) -> dict[str, Any]:
        return {
            "simulator": self.name,
            "mode": self.config["mode"],
            "issues": {issue["key"]: self._state_issue(issue) for issue in self.store.issues.values()},
            "links": [dict(link) for link in self.store.links.values()],
            "config": {k: v for k, v in self.config.items() if k != "users"},
        }

    def _state_issue(self, issue: Mapping[str, Any]) -> dict[str, Any]:
        out = {k: copy.deepcopy(v) for k, v in issue.items() if not k.startswith("_")}
        out["statusCategory"] = self.catalog.status_category(issue["status"])
        for key in ("created", "updated", "resolutiondate", "statuscategorychangedate"):
            out[key] = fmt_time(issue.get(key))
        for comment in out.get("comments", []):
            comment["created"] = fmt_time(comment["created"])
            comment["updated"] = fmt_time(comment["updated"])
        out["indexed"] = self._index_view(issue, self.now()) is issue
        return out

    def _fault_effect(self, fault: Fault) -> SimResponse | None:
        """As the base, with Jira's shapes: 429 carries the rate-limit headers, other 4xx the error envelope."""
        resp = super()._fault_effect(fault)
        if resp is None or resp.drop or fault.kind != "http_status":
            return resp
        if fault.status == 429:
            retry = fault.retry_after if fault.retry_after is not None else 5.0
            reset = time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(self.now() + retry + 59))
            if not any(name == "Retry-After" for name, _v in resp.headers):
                resp.headers.append(("Retry-After", str(math.ceil(retry))))
            resp.headers += [("X-RateLimit-Reset", reset), ("RateLimit-Reason", "jira-burst-based")]
            if self.cloud:
                resp.headers += [("X-RateLimit-Limit", "100"), ("X-RateLimit-Remaining", "0"), ("X-RateLimit-NearLimit", "true")]
            if fault.body is None:
                resp.body = b""
                resp.content_type = None
        elif 400 <= fault.status < 500 and fault.body is None:
            headers = resp.headers
            resp = JiraError(fault.status, FAULT_MESSAGES.get(fault.status, "The request could not be processed.")).response()
            resp.headers.extend(headers)
        return resp

    # ------------------------------------------------------------------ control API additions
    def state_controls(self) -> dict[tuple[str, str], Any]:
        return {("POST", "/_sim/seed"): self._ctl_seed, ("POST", "/_sim/config"): self._ctl_config,
                ("GET", "/_sim/config"): self._ctl_config_get}

    def _ctl_config(self, payload: Any) -> Any:
        """Change config keys until the next reset, e.g. ``{"search_lag": 5}`` or ``{"mode": "datacenter"}``."""
        if not isinstance(payload, dict):
            raise ConfigError("expected a JSON object of config keys")
        if "state_file" in payload:
            raise ConfigError("state_file is a start-up key")
        config = merge_config(self.config, payload)
        self.catalog = Catalog.build(config)  # raises before anything changes
        self.config = config
        return self._ctl_config_get(None)

    def _ctl_config_get(self, _payload: Any) -> Any:
        return {"config": self.config}

    def _ctl_seed(self, payload: Any) -> Any:
        """``{"issues": [...]}`` or ``{"table": "issues", "rows": [...]}``: store issues as given (no screens, no lag)."""
        if isinstance(payload, dict) and "table" in payload:
            if payload["table"] != "issues":
                raise ConfigError("the Jira simulator seeds the table 'issues' only")
            payload = {"issues": payload.get("rows", [])}
        if not isinstance(payload, dict) or not isinstance(payload.get("issues"), list) or set(payload) != {"issues"}:
            raise ConfigError('expected {"issues": [{"project": "OPS", "summary": ..., "status": ..., ...}]}')
        rows = payload["issues"]
        if not all(isinstance(row, dict) for row in rows):
            raise ConfigError("issues must be objects")
        return {"result": {"issues": [self._state_issue(self._seed_issue(row)) for row in rows]}}

    def _seed_issue(self, row: Mapping[str, Any]) -> dict[str, Any]:
        known = {"project", "issuetype", "summary", "description", "status", "resolution", "resolutiondate", "labels", "components",
                 "priority", "created", "updated", "properties", "comments", "reporter", "assignee", "indexed"}
        unknown = [k for k in row if k not in known and not k.startswith("customfield_")]
        if unknown:
            raise ConfigError(f"unknown seed keys: {', '.join(sorted(unknown))}")
        cat = self.catalog
        now = self.now()
        project = cat.project(str(row.get("project", "")))
        if project is None:
            raise ConfigError(f"seed: unknown project {row.get('project')!r}")
        types = self.config["projects"][project]["issue_types"]
        issuetype = row.get("issuetype", types[0])
        if issuetype not in types:
            raise ConfigError(f"seed: issue type {issuetype!r} is not in project {project}")
        status = row.get("status", cat.initial)
        if status not in cat.statuses:
            raise ConfigError(f"seed: unknown status {status!r}")
        done = cat.statuses[status] == "done"
        resolution = row.get("resolution", self._default_resolution() if done else None)
        if resolution is not None and resolution not in cat.resolutions:
            raise ConfigError(f"seed: unknown resolution {resolution!r}")
        created = _parse_time(row.get("created"), now) or now
        updated = _parse_time(row.get("updated"), now) or created
        resolutiondate = _parse_time(row.get("resolutiondate"), now)
        if resolution is not None and resolutiondate is None:
            resolutiondate = updated
        priority = row.get("priority", self.config["default_priority"])
        if priority not in cat.priorities:
            raise ConfigError(f"seed: unknown priority {priority!r}")
        components = list(row.get("components") or [])
        if any(cat.component(project, {"name": c}) is None for c in components):
            raise ConfigError(f"seed: components {components!r} are not all in project {project}")
        labels = row.get("labels") or []
        if not isinstance(labels, list) or any(not isinstance(label, str) or not label or re.search(r"\s", label) for label in labels):
            raise ConfigError("seed: labels must be strings without whitespace")
        users = self.config["users"]
        reporter = row.get("reporter") or next(iter(users))
        for who in (reporter, row.get("assignee")):
            if who is not None and who not in users:
                raise ConfigError(f"seed: unknown user {who!r}")
        issue_id = self.store.new_issue_id()
        issue: dict[str, Any] = {
            "id": issue_id, "key": self.store.new_key(project), "project": project, "issuetype": issuetype,
            "summary": str(row.get("summary") or f"Seeded issue {issue_id}"), "description": row.get("description"),
            "priority": priority, "labels": sorted(set(labels)), "components": components, "assignee": row.get("assignee"),
            "reporter": reporter, "status": status, "resolution": resolution, "resolutiondate": resolutiondate,
            "created": created, "updated": updated, "statuscategorychangedate": resolutiondate or created,
            "custom": {k: v for k, v in row.items() if k.startswith("customfield_")}, "comments": [], "properties": {},
            "_versions": [],
        }
        props = row.get("properties") or {}
        if not isinstance(props, dict):
            raise ConfigError("seed: properties must be an object {key: value}")
        issue["properties"] = copy.deepcopy(props)
        for item in row.get("comments") or []:
            item = {"body": item} if isinstance(item, str) else dict(item)
            at = _parse_time(item.get("created"), now) or updated
            issue["comments"].append({"id": self.store.new_comment_id(), "author": item.get("author") or reporter,
                                      "body": item.get("body"), "created": at, "updated": at})
        self.store.issues[issue_id] = issue
        if row.get("indexed") is False and self.config["search_lag"]:
            issue["_versions"] = [[now, snapshot(issue)]]
        self._dirty = True
        return issue

    def _default_resolution(self) -> str | None:
        resolutions = self.catalog.resolutions
        return "Done" if "Done" in resolutions else (resolutions[0] if resolutions else None)

    # ------------------------------------------------------------------ routing
    def route(self, req: SimRequest) -> Routed:
        match = _REST.fullmatch(req.path)
        if match is None:
            if req.path.startswith("/rest/"):
                return Routed("", "", lambda: self._jersey_404(req))
            return Routed("", "", lambda: text_response("Not Found", 404))
        version, sub = match.group(1), (match.group(2) or "/").rstrip("/") or "/"
        resource, handler, args = self._dispatch(req.method, sub)
        if handler is None:
            return Routed("", "", lambda: self._jersey_404(req))
        return Routed(f"{req.method} {resource}", resource, functools.partial(self._run, req, version, resource, handler, args))

    def _jersey_404(self, req: SimRequest) -> SimResponse:
        return json_response({"message": f"null for uri: {self._base(req)}{req.path}", "status-code": 404}, 404)

    def _dispatch(self, method: str, sub: str) -> tuple[str, Handler | None, tuple[str, ...]]:
        parts = [urllib.parse.unquote(p) for p in sub.strip("/").split("/")] if sub != "/" else []
        n = len(parts)
        table: list[tuple[bool, str, dict[str, Handler]]] = [
            (parts == ["issue"], "issue", {"POST": self.op_create}),
            (n == 2 and parts[0] == "issue", "issue", {"GET": self.op_get, "PUT": self.op_edit, "DELETE": self.op_delete}),
            (n == 3 and parts[0] == "issue" and parts[2] == "transitions", "transitions",
             {"GET": self.op_transitions, "POST": self.op_transition}),
            (n == 3 and parts[0] == "issue" and parts[2] == "comment", "comment", {"GET": self.op_comments, "POST": self.op_comment_add}),
            (n == 4 and parts[0] == "issue" and parts[2] == "comment", "comment",
             {"GET": self.op_comment_get, "PUT": self.op_comment_edit, "DELETE": self.op_comment_delete}),
            (n == 3 and parts[0] == "issue" and parts[2] == "properties", "properties", {"GET": self.op_property_keys}),
            (n == 4 and parts[0] == "issue" and parts[2] == "properties", "properties",
             {"GET": self.op_property_get, "PUT": self.op_property_put, "DELETE": self.op_property_delete}),
            (parts == ["search", "jql"], "search", {"GET": self.op_search_jql, "POST": self.op_search_jql}),
            (parts == ["search", "approximate-count"], "approximateCount", {"POST": self.op_approximate_count}),
            (parts == ["search"], "search", {"GET": self.op_search_legacy, "POST": self.op_search_legacy}),
            (parts == ["search", "id"], "search", {"POST": self.op_search_id}),
            (parts == ["myself"], "myself", {"GET": self.op_myself}),
            (parts == ["serverInfo"], "serverInfo", {"GET": self.op_server_info}),
            (parts == ["priority"], "priority", {"GET": self.op_priorities}),
            (n == 2 and parts[0] == "priority", "priority", {"GET": self.op_priority}),
            (parts == ["resolution"], "resolution", {"GET": self.op_resolutions}),
            (n == 2 and parts[0] == "resolution", "resolution", {"GET": self.op_resolution}),
            (parts == ["field"], "field", {"GET": self.op_fields}),
            (parts == ["project"], "project", {"GET": self.op_projects}),
            (n == 2 and parts[0] == "project", "project", {"GET": self.op_project}),
            (parts == ["issueLinkType"], "issueLinkType", {"GET": self.op_link_types}),
            (n == 2 and parts[0] == "issueLinkType", "issueLinkType", {"GET": self.op_link_type}),
            (parts == ["issueLink"], "issueLink", {"POST": self.op_link_create}),
            (n == 2 and parts[0] == "issueLink", "issueLink", {"GET": self.op_link_get, "DELETE": self.op_link_delete}),
        ]
        for matched, resource, methods in table:
            if not matched:
                continue
            handler = methods.get(method)
            if handler is None:
                return resource, self.op_method_not_allowed, ()
            ids = parts[1:2] + parts[3:4] if parts[0] == "issue" else (parts[1:2] if resource not in ("search", "approximateCount") else [])
            return resource, handler, tuple(ids)
        return "", None, ()

    def _run(self, req: SimRequest, version: str, resource: str, handler: Handler, args: tuple[str, ...]) -> SimResponse:
        with self.lock:
            rate_headers: list[tuple[str, str]] = []
            try:
                if version == "3" and not self.cloud:
                    return self._jersey_404(req)
                if resource == "search" and req.path.rstrip("/").endswith("/search/jql") and not self.cloud:
                    return self._jersey_404(req)
                principal = self._authenticate(req, resource)
                rate_headers = self._rate_limit(principal, f"{req.method} {resource}")
                ctx = Ctx(req, version, principal, self._base(req), dict(urllib.parse.parse_qsl(req.query, keep_blank_values=True)))
                result: SimResponse = handler(ctx, *args)
            except JiraError as exc:
                exc.headers.extend(rate_headers)
                result = exc.response()
            else:
                result.headers.extend(rate_headers)
                result.headers.extend(self._identity_headers(principal))
            self._persist()
        return result

    def _identity_headers(self, principal: Principal) -> list[tuple[str, str]]:
        """Who the request ran as: ``X-AACCOUNTID`` (Cloud), ``X-AUSERNAME`` (Data Center, ``anonymous`` without auth)."""
        if self.cloud:
            return [("X-AACCOUNTID", str(principal.spec["account_id"]))] if not principal.anonymous else []
        return [("X-AUSERNAME", "anonymous" if principal.anonymous else str(principal.spec["name"]))]

    def _base(self, req: SimRequest) -> str:
        return str(self.config.get("base_url") or f"http://{req.headers.get('Host') or '127.0.0.1'}").rstrip("/")

    def op_method_not_allowed(self, _ctx: Ctx, *_args: str) -> SimResponse:
        return SimResponse(405, b"", None, [("Allow", "GET, POST, PUT, DELETE")])

    # ------------------------------------------------------------------ authentication and rate limits
    def _authenticate(self, req: SimRequest, resource: str) -> Principal:
        header = (req.headers.get("Authorization") or "").strip()
        users = self.config["users"]
        if not header:
            if resource == "serverInfo" or (self.config["anonymous_read"] and req.method == "GET" and resource != "myself"):
                return Principal("", {})
            if req.method == "POST" and resource == "search" and self.config["anonymous_read"]:
                return Principal("", {})
            raise self._unauthorized()
        scheme, _sep, credentials = header.partition(" ")
        if scheme.lower() == "basic":
            try:
                user, _colon, secret = base64.b64decode(credentials.strip(), validate=True).decode("utf-8").partition(":")
            except (ValueError, UnicodeDecodeError, binascii.Error):
                raise self._unauthorized() from None
            captcha = self.config.get("captcha_after")
            if not self.cloud and captcha and self.failed_logins.get(user, 0) >= captcha:
                raise JiraError(403, plain="CAPTCHA_CHALLENGE", headers=[
                    ("X-Seraph-LoginReason", "AUTHENTICATION_DENIED"),
                    ("X-Authentication-Denied-Reason", f"CAPTCHA_CHALLENGE; login-url={self._base(req)}/login.jsp")])
            for email, spec in users.items():
                if self.cloud and email.lower() == user.lower() and spec.get("api_token") \
                        and secrets.compare_digest(str(spec["api_token"]), secret):
                    return Principal(email, spec)
                if not self.cloud and spec.get("name") == user and spec.get("password") \
                        and secrets.compare_digest(str(spec["password"]), secret):
                    self.failed_logins.pop(user, None)
                    return Principal(email, spec)
            if not self.cloud:
                self.failed_logins[user] = self.failed_logins.get(user, 0) + 1
            raise self._unauthorized(failed=True)
        if scheme.lower() == "bearer" and not self.cloud:
            token = credentials.strip()
            for email, spec in users.items():
                if spec.get("pat") and secrets.compare_digest(str(spec["pat"]), token):
                    return Principal(email, spec)
        raise self._unauthorized(failed=True)

    def _unauthorized(self, failed: bool = False) -> JiraError:
        if self.cloud:
            return JiraError(401, plain=CLOUD_401)
        headers = [("WWW-Authenticate", 'Basic realm="protected-area"')]
        if failed:
            headers.append(("X-Seraph-LoginReason", "AUTHENTICATED_FAILED"))
        return JiraError(401, DC_401, headers=headers)

    def _rate_limit(self, principal: Principal, operation: str) -> list[tuple[str, str]]:
        """Count the request against ``rate_limit``; 429 (plain, with Retry-After and the rate-limit headers) when over it."""
        rule = self.config.get("rate_limit")
        if not rule or principal.anonymous:
            return []
        if rule.get("users") is not None and principal.email not in rule["users"]:
            return []
        if rule.get("operations") is not None and operation not in rule["operations"]:
            return []
        window = int(rule.get("window", 60))
        now = self.now()
        start = int(now // window * window)
        key = (principal.email, start)
        self.rate_counts[key] = self.rate_counts.get(key, 0) + 1
        limit = int(rule["limit"])
        remaining = max(0, limit - self.rate_counts[key])
        if self.cloud:
            headers = [("X-RateLimit-Limit", str(limit)), ("X-RateLimit-Remaining", str(remaining)),
                       ("X-RateLimit-NearLimit", "true" if remaining < max(1, limit // 5) else "false")]
        else:
            headers = [("X-RateLimit-Limit", str(limit)), ("X-RateLimit-Remaining", str(remaining)),
                       ("X-RateLimit-Interval-Seconds", str(window)), ("X-RateLimit-FillRate", str(limit))]
        if self.rate_counts[key] > limit:
            retry = max(1, math.ceil(start + window - now))
            reset = time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(start + window + 59))
            headers.append(("Retry-After", str(retry)))
            if self.cloud:
                headers += [("X-RateLimit-Reset", reset), ("RateLimit-Reason", str(rule.get("reason") or "jira-burst-based"))]
            raise JiraError(429, plain="Rate limit exceeded.", headers=headers)
        return headers

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _body(ctx: Ctx, required: bool = True) -> Any:
        req = ctx.req
        if not req.body.strip():
            if required:
                raise JiraError(400, "No content to map to Object due to end of input")
            return {}
        content_type = (req.headers.get("Content-Type") or "").lower()
        xsrf_exempt = (req.headers.get("X-Atlassian-Token") or "").lower() == "no-check"
        if ("form" in content_type or content_type.startswith("text/plain")) and not xsrf_exempt:
            raise JiraError(403, plain="XSRF check failed")
        if "json" not in content_type:
            raise JiraError(415, plain="Unsupported Media Type")
        try:
            return json.loads(req.body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise JiraError(400, f"Unexpected character in the request body: {exc}") from exc

    def _issue(self, ref: str) -> dict[str, Any]:
        issue = self.store.by_ref(ref)
        if issue is None:
            raise JiraError(404, NOT_FOUND_ISSUE)
        return issue

    def _visible_issue(self, ctx: Ctx, ref: str) -> dict[str, Any]:
        if ctx.principal.anonymous:
            raise JiraError(404, NOT_FOUND_ISSUE)
        return self._issue(ref)

    def _before_write(self, issue: dict[str, Any]) -> None:
        """With a search lag, remember what the index holds before the first unindexed write."""
        if self.config["search_lag"] and not issue.get("_versions"):
            issue["_versions"] = [[0.0, snapshot(issue)]]

    def _after_write(self, issue: dict[str, Any], bump: bool = True) -> None:
        now = self.now()
        if bump:
            issue["updated"] = now
        lag = float(self.config["search_lag"])
        versions = issue.setdefault("_versions", [])
        if not lag:
            versions.clear()
        else:
            versions.append([now, snapshot(issue)])
            cutoff = now - lag
            indexed = [i for i, (at, _snap) in enumerate(versions) if at <= cutoff]
            if indexed:
                del versions[:indexed[-1]]
        self._dirty = True

    def _index_view(self, issue: Mapping[str, Any], now: float) -> Mapping[str, Any] | None:
        """The issue as the (lagging) search index sees it: None while a new issue is not indexed yet (read-only)."""
        versions = issue.get("_versions") or []
        if not versions:
            return issue
        lag = float(self.config["search_lag"])
        seen = None
        for at, snap in versions:
            if at <= now - lag:
                seen = snap
        if seen is versions[-1][1]:
            return issue
        return seen

    # ------------------------------------------------------------------ rendering
    def _user(self, ctx: Ctx, email: str | None) -> dict[str, Any] | None:
        if not email:
            return None
        spec = self.config["users"].get(email) or {}
        if self.cloud:
            return {"self": f"{ctx.api_path}/user?accountId={spec.get('account_id', '')}", "accountId": spec.get("account_id", ""),
                    "emailAddress": email, "displayName": spec.get("display_name", email), "active": True, "timeZone": "UTC",
                    "accountType": "atlassian", "avatarUrls": {}}
        name = spec.get("name", email)
        return {"self": f"{ctx.api_path}/user?username={name}", "name": name, "key": f"JIRAUSER{10000 + list(self.config['users']).index(email)}",
                "emailAddress": email, "displayName": spec.get("display_name", name), "active": True, "timeZone": "UTC", "avatarUrls": {}}

    def _rich_out(self, ctx: Ctx, value: Any) -> Any:
        if value is None:
            return None
        if ctx.adf:
            if isinstance(value, dict):
                return copy.deepcopy(value)
            return jira_adf.from_text(str(value)) if str(value) else None
        return jira_adf.to_text(value) if isinstance(value, dict) else str(value)

    def _status(self, ctx: Ctx, name: str) -> dict[str, Any]:
        category = self.catalog.status_category(name)
        status_id = self.catalog.status_ids.get(name, "1")
        return {"self": f"{ctx.api_path}/status/{status_id}", "description": "", "iconUrl": f"{ctx.base}/images/icons/statuses/generic.png",
                "name": name, "id": status_id,
                "statusCategory": dict(CATEGORIES[category], self=f"{ctx.api_path}/statuscategory/{CATEGORIES[category]['id']}")}

    def _priority(self, ctx: Ctx, name: str) -> dict[str, Any]:
        pid = self.catalog.priority_id(name)
        return {"self": f"{ctx.api_path}/priority/{pid}", "iconUrl": f"{ctx.base}/images/icons/priorities/{name.lower()}.svg",
                "name": name, "id": pid}

    def _resolution(self, ctx: Ctx, name: str | None) -> dict[str, Any] | None:
        if name is None:
            return None
        rid = self.catalog.resolution_id(name)
        return {"self": f"{ctx.api_path}/resolution/{rid}", "id": rid, "description": "", "name": name}

    def _issuetype(self, ctx: Ctx, name: str) -> dict[str, Any]:
        tid = self.catalog.issuetype_ids.get(name, "10000")
        return {"self": f"{ctx.api_path}/issuetype/{tid}", "id": tid, "description": "", "iconUrl": "", "name": name,
                "subtask": False, "hierarchyLevel": 0}

    def _project(self, ctx: Ctx, key: str, full: bool = False) -> dict[str, Any]:
        spec = self.config["projects"][key]
        out: dict[str, Any] = {"self": f"{ctx.api_path}/project/{spec['id']}", "id": str(spec["id"]), "key": key,
                               "name": spec.get("name", key), "projectTypeKey": spec.get("type", "software"), "simplified": False,
                               "avatarUrls": {}}
        if full:
            out["issueTypes"] = [self._issuetype(ctx, name) for name in spec["issue_types"]]
            out["components"] = [self._component(ctx, key, name) for name in spec.get("components") or []]
            out["description"] = spec.get("description", "")
            out["lead"] = self._user(ctx, next(iter(self.config["users"])))
        return out

    def _component(self, ctx: Ctx, project: str, name: str) -> dict[str, str]:
        cid = self.catalog.component_ids.get((project, name), "")
        return {"self": f"{ctx.api_path}/component/{cid}", "id": cid, "name": name}

    def _comment(self, ctx: Ctx, issue: Mapping[str, Any], comment: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"self": f"{ctx.api_path}/issue/{issue['id']}/comment/{comment['id']}", "id": comment["id"],
                               "author": self._user(ctx, comment["author"]), "body": self._rich_out(ctx, comment["body"]),
                               "updateAuthor": self._user(ctx, comment.get("update_author") or comment["author"]),
                               "created": fmt_time(comment["created"]), "updated": fmt_time(comment["updated"])}
        if self.cloud:
            out["jsdPublic"] = True
        if comment.get("visibility"):
            out["visibility"] = copy.deepcopy(comment["visibility"])
        return out

    def _links_of(self, ctx: Ctx, issue_id: str) -> list[dict[str, Any]]:
        out = []
        for link in self.store.links.values():
            ltype = next((t for t in self.catalog.link_types if t["id"] == link["type"]), None)
            if ltype is None:
                continue
            if link["inward"] == issue_id:
                other, side = link["outward"], "outwardIssue"
            elif link["outward"] == issue_id:
                other, side = link["inward"], "inwardIssue"
            else:
                continue
            target = self.store.issues.get(other)
            if target is None:
                continue
            out.append({"id": link["id"], "self": f"{ctx.api_path}/issueLink/{link['id']}",
                        "type": dict(ltype, self=f"{ctx.api_path}/issueLinkType/{ltype['id']}"),
                        side: {"id": target["id"], "key": target["key"], "self": f"{ctx.api_path}/issue/{target['id']}",
                               "fields": {"summary": target["summary"], "status": self._status(ctx, target["status"]),
                                          "priority": self._priority(ctx, target["priority"]),
                                          "issuetype": self._issuetype(ctx, target["issuetype"])}}})
        return out

    def _field_value(self, ctx: Ctx, issue: Mapping[str, Any], name: str) -> Any:
        if name.startswith("customfield_"):
            spec = self.config["custom_fields"][name]
            value = (issue.get("custom") or {}).get(name)
            if value is None:
                return None
            if spec["type"] == "textarea":
                return self._rich_out(ctx, value)
            if spec["type"] == "select":
                return {"self": f"{ctx.api_path}/customFieldOption/{self._option_id(name, value)}", "value": value,
                        "id": self._option_id(name, value)}
            if spec["type"] == "multiselect":
                return [{"self": f"{ctx.api_path}/customFieldOption/{self._option_id(name, v)}", "value": v,
                         "id": self._option_id(name, v)} for v in value]
            return copy.deepcopy(value)
        renderers: dict[str, Callable[[], Any]] = {
            "summary": lambda: issue["summary"],
            "description": lambda: self._rich_out(ctx, issue.get("description")),
            "status": lambda: self._status(ctx, issue["status"]),
            "resolution": lambda: self._resolution(ctx, issue.get("resolution")),
            "resolutiondate": lambda: fmt_time(issue.get("resolutiondate")),
            "labels": lambda: list(issue.get("labels") or []),
            "priority": lambda: self._priority(ctx, issue["priority"]),
            "components": lambda: [self._component(ctx, issue["project"], c) for c in issue.get("components") or []],
            "issuetype": lambda: self._issuetype(ctx, issue["issuetype"]),
            "project": lambda: self._project(ctx, issue["project"]),
            "created": lambda: fmt_time(issue["created"]),
            "updated": lambda: fmt_time(issue["updated"]),
            "statuscategorychangedate": lambda: fmt_time(issue.get("statuscategorychangedate")),
            "reporter": lambda: self._user(ctx, issue.get("reporter")),
            "assignee": lambda: self._user(ctx, issue.get("assignee")),
            "issuelinks": lambda: self._links_of(ctx, issue["id"]),
            "comment": lambda: {"comments": [self._comment(ctx, issue, c) for c in issue.get("comments") or []],
                                "self": f"{ctx.api_path}/issue/{issue['id']}/comment", "maxResults": len(issue.get("comments") or []),
                                "total": len(issue.get("comments") or []), "startAt": 0},
        }
        return renderers[name]()

    def _option_id(self, field_id: str, value: str) -> str:
        options = list(self.config["custom_fields"][field_id].get("options") or [])
        return str(10100 + options.index(value)) if value in options else ""

    def _field_names(self, wanted: list[str] | None, default: str) -> list[str]:
        """Resolve a ``fields`` list (``*all``, ``*navigable``, ``-name``, names) to field ids, in a stable order."""
        every = list(SYSTEM_FIELDS) + list(self.config["custom_fields"])
        navigable = [f for f in every if f != "comment"]
        items = [w.strip() for w in (wanted if wanted is not None else [default]) if w and w.strip()]
        chosen: list[str] = []
        for item in items:
            if item in ("*all", "*navigable"):
                chosen += every if item == "*all" else navigable
            elif not item.startswith("-") and item in every:
                chosen.append(item)
        excluded = {item[1:] for item in items if item.startswith("-")}
        seen: set[str] = set()
        return [f for f in chosen if not (f in seen or seen.add(f)) and f not in excluded]  # type: ignore[func-returns-value]

    def _render_issue(self, ctx: Ctx, issue: Mapping[str, Any], fields: list[str] | None, default: str,
                      properties: list[str] | None) -> dict[str, Any]:
        names = self._field_names(fields, default)
        out: dict[str, Any] = {"expand": "renderedFields,names,schema,operations,editmeta,changelog,versionedRepresentations",
                               "id": issue["id"], "self": f"{ctx.api_path}/issue/{issue['id']}", "key": issue["key"],
                               "fields": {name: self._field_value(ctx, issue, name) for name in names}}
        if properties:
            props = issue.get("properties") or {}
            keys = list(props) if "*all" in properties else properties
            out["properties"] = {k: copy.deepcopy(props[k]) for k in keys if k in props}
        return out

    @staticmethod
    def _list_param(value: Any) -> list[str] | None:
        if value is None:
            return None
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return [v.strip() for v in value if v.strip()]
        raise JiraError(400, "The fields and properties parameters must be lists of strings.")

    # ------------------------------------------------------------------ field validation
    def _rich_in(self, ctx: Ctx, name: str, value: Any, errors: dict[str, str]) -> Any:
        if value is None:
            return None
        if ctx.adf:
            if not isinstance(value, dict):
                errors[name] = "Operation value must be an Atlassian Document (see the Atlassian Document Format)"
                return None
            try:
                jira_adf.validate(value)
            except jira_adf.AdfError as exc:
                errors[name] = f"Operation value must be a valid Atlassian Document: {exc}"
                return None
            if len(json.dumps(value, ensure_ascii=False, separators=(",", ":"))) > MAX_TEXT:
                errors[name] = f"The entered text is too long. It exceeds the allowed limit of {MAX_TEXT:,} characters."
                return None
            return copy.deepcopy(value) if value.get("content") else None
        if not isinstance(value, str):
            errors[name] = "Operation value must be a string"
            return None
        if len(value) > MAX_TEXT:
            errors[name] = f"The entered text is too long. It exceeds the allowed limit of {MAX_TEXT:,} characters."
            return None
        return value or None

    def _user_in(self, name: str, value: Any, errors: dict[str, str]) -> tuple[bool, str | None]:
        if value is None:
            if name == "reporter":
                errors[name] = "Reporter is required."
                return False, None
            return True, None
        if not isinstance(value, dict):
            errors[name] = f"expected Object for '{name}'"
            return False, None
        users = self.config["users"]
        if self.cloud:
            if "accountId" not in value:
                errors[name] = ("The query parameter 'username' or 'name' is not supported in Jira Cloud. "
                                "Use 'accountId' to identify the user.") if "name" in value else f"Specify a valid accountId for {name}"
                return False, None
            found = next((e for e, s in users.items() if s.get("account_id") == value["accountId"]), None)
        else:
            found = next((e for e, s in users.items() if s.get("name") == value.get("name")), None) if "name" in value else None
        if found is None:
            errors[name] = f"User '{value.get('accountId') or value.get('name')}' does not exist."
            return False, None
        return True, found

    def _labels_in(self, value: Any, errors: dict[str, str], name: str = "labels") -> list[str] | None:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            errors[name] = "The labels must be a list of strings."
            return None
        for label in value:
            problem = self._label_problem(label)
            if problem:
                errors[name] = problem
                return None
        return sorted(set(value))

    @staticmethod
    def _label_problem(label: Any) -> str | None:
        if not isinstance(label, str):
            return "A label must be a string."
        if not label:
            return "A label cannot be empty."
        if re.search(r"\s", label):
            return f"The label '{label}' contains spaces which is invalid."
        if len(label) > 255:
            return f"The label '{label}' exceeds the maximum length for a single label of 255 characters."
        return None

    def _components_in(self, project: str, value: Any, errors: dict[str, str]) -> list[str] | None:
        if not isinstance(value, list):
            errors["components"] = "data was not an array"
            return None
        names = []
        for item in value:
            if not isinstance(item, dict):
                errors["components"] = "expected Object containing a 'name' or 'id' property"
                return None
            found = self.catalog.component(project, item)
            if found is None:
                errors["components"] = f"Component name '{item.get('name', item.get('id'))}' is not valid"
                return None
            if found not in names:
                names.append(found)
        return names

    def _custom_in(self, ctx: Ctx, name: str, value: Any, errors: dict[str, str]) -> tuple[bool, Any]:
        spec = self.config["custom_fields"][name]
        kind = spec["type"]
        if value is None:
            return True, None
        if kind == "text":
            if not isinstance(value, str):
                errors[name] = "Operation value must be a string"
                return False, None
            if len(value) > 255:
                errors[name] = f"{spec.get('name', name)}: the text must be 255 characters or less."
                return False, None
            if "\n" in value or "\r" in value:
                errors[name] = f"{spec.get('name', name)}: a single-line text field cannot contain line breaks."
                return False, None
            return True, value or None
        if kind == "textarea":
            stored = self._rich_in(ctx, name, value, errors)
            return name not in errors, stored
        options = list(spec.get("options") or [])
        if kind == "select":
            if not isinstance(value, dict) or ("value" not in value and "id" not in value):
                errors[name] = "Could not find valid 'id' or 'value' in the Parent Option object."
                return False, None
            found = value.get("value") if value.get("value") in options else \
                next((o for o in options if self._option_id(name, o) == str(value.get("id"))), None)
            if found is None:
                errors[name] = f"Option value '{value.get('value', value.get('id'))}' is not valid"
                return False, None
            return True, found
        if kind == "multiselect":
            if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
                errors[name] = "data was not an array of Option objects"
                return False, None
            chosen = []
            for item in value:
                if item.get("value") not in options:
                    errors[name] = f"Option value '{item.get('value')}' is not valid"
                    return False, None
                chosen.append(item["value"])
            return True, chosen
        if kind == "number":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                errors[name] = f"{spec.get('name', name)} must be a number."
                return False, None
            return True, float(value)
        stored = self._labels_in(value, errors, name)
        return stored is not None, stored

    def _set_field(self, ctx: Ctx, draft: dict[str, Any], name: str, value: Any, errors: dict[str, str], creating: bool) -> None:
        """Validate one ``fields`` entry and write it into ``draft`` (an error goes to ``errors[name]``)."""
        project = draft["project"]
        if name == "summary":
            if not isinstance(value, str) or not value.strip():
                errors[name] = "You must specify a summary of the issue."
            elif len(value) > 255:
                errors[name] = "Summary must be less than 255 characters."
            elif "\n" in value or "\r" in value:
                errors[name] = "The summary is invalid because it contains newline characters."
            else:
                draft[name] = value
        elif name == "description":
            stored = self._rich_in(ctx, name, value, errors)
            if name not in errors:
                draft[name] = stored
        elif name == "priority":
            found = self.catalog.priority(value)
            if found is None:
                errors[name] = "The priority selected is invalid." if isinstance(value, dict) else \
                    "Could not find valid 'id' or 'name' in priority object."
            else:
                draft[name] = found
        elif name == "labels":
            labels = self._labels_in(value, errors)
            if labels is not None:
                draft[name] = labels
        elif name == "components":
            comps = self._components_in(project, value, errors)
            if comps is not None:
                draft[name] = comps
        elif name in ("assignee", "reporter"):
            ok, who = self._user_in(name, value, errors)
            if ok:
                draft[name] = who
        elif name.startswith("customfield_") and name in self.config["custom_fields"]:
            ok, stored = self._custom_in(ctx, name, value, errors)
            if ok:
                if stored is None:
                    draft["custom"].pop(name, None)
                else:
                    draft["custom"][name] = stored
        elif name == "issuetype" and not creating:
            found = self.catalog.issuetype(project, value)
            if found is None:
                errors[name] = "The issue type selected is invalid."
            else:
                draft[name] = found
        else:
            errors[name] = cannot_set(name)

    def _apply_update(self, ctx: Ctx, draft: dict[str, Any], name: str, ops: Any, errors: dict[str, str],
                      comments: list[Any], screen: set[str] | None) -> None:
        """One ``update`` entry: a list of ``{"set"|"add"|"remove"|"edit": value}`` operations."""
        if not isinstance(ops, list) or not all(isinstance(op, dict) and len(op) == 1 for op in ops):
            errors[name] = f"Field '{name}': an update is a list of single-operation objects."
            return
        if name == "comment":
            for op in ops:
                verb, value = next(iter(op.items()))
                if verb != "add" or not isinstance(value, dict):
                    errors[name] = "Comment update supports only the 'add' operation with an object holding 'body'."
                    return
                body = value.get("body")
                if ctx.adf and not isinstance(body, dict):
                    errors[name] = "Comment body is not valid!"
                    return
                stored = self._rich_in(ctx, name, body, errors)
                if name in errors:
                    return
                if stored is None:
                    errors[name] = "Comment body can not be empty!"
                    return
                comments.append({"body": stored, "visibility": value.get("visibility")})
            return
        if screen is not None and name not in screen:
            errors[name] = cannot_set(name)
            return
        for op in ops:
            verb, value = next(iter(op.items()))
            if name == "labels" and verb in ("add", "remove"):
                problem = self._label_problem(value)
                if problem:
                    errors[name] = problem
                    return
                labels = set(draft.get("labels") or [])
                labels = labels | {value} if verb == "add" else labels - {value}
                draft["labels"] = sorted(labels)
            elif name == "components" and verb in ("add", "remove"):
                found = self._components_in(draft["project"], [value], errors)
                if found is None:
                    return
                comps = [c for c in draft.get("components") or [] if c != found[0]]
                draft["components"] = comps + found if verb == "add" else comps
            elif verb == "set":
                self._set_field(ctx, draft, name, value, errors, False)
            else:
                errors[name] = f"Field '{name}' does not support the operation '{verb}'." if name in EDITABLE or \
                    name in self.config["custom_fields"] else cannot_set(name)
            if name in errors:
                return

    def _properties_in(self, value: Any) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, list) or not all(isinstance(p, dict) and isinstance(p.get("key"), str) and "value" in p for p in value):
            raise JiraError(400, "Properties must be a list of objects with 'key' and 'value'.")
        out = {}
        for prop in value:
            self._check_property(prop["key"], prop["value"])
            out[prop["key"]] = copy.deepcopy(prop["value"])
        return out

    @staticmethod
    def _check_property(key: str, value: Any) -> None:
        if not key or len(key) > 255:
            raise JiraError(400, "The property key must be between 1 and 255 characters long.")
        if len(json.dumps(value, separators=(",", ":")).encode("utf-8")) > 32768:
            raise JiraError(400, "The property value cannot be longer than 32768 bytes.")

    def _edit_body(self, ctx: Ctx, draft: dict[str, Any], body: Mapping[str, Any], creating: bool,
                   screen: set[str] | None = None) -> tuple[dict[str, str], list[Any]]:
        """Apply ``fields`` and ``update`` of a create/edit/transition body to ``draft``; returns (errors, new comments)."""
        fields = body.get("fields") or {}
        update = body.get("update") or {}
        if not isinstance(fields, dict) or not isinstance(update, dict):
            raise JiraError(400, "'fields' and 'update' must be objects.")
        errors: dict[str, str] = {}
        comments: list[Any] = []
        for name in sorted(set(fields) & set(update)):
            errors[name] = f"Field '{name}' cannot be set in both 'fields' and 'update'."
        for name, value in fields.items():
            if name in errors or (creating and name in ("project", "issuetype")):
                continue
            if screen is not None:
                if name not in screen:
                    errors[name] = cannot_set(name)
                    continue
                if name == "resolution":
                    found = self.catalog.resolution(value)
                    if found is None:
                        errors[name] = f"Resolution '{value.get('name', value.get('id')) if isinstance(value, dict) else value}' is not valid."
                    else:
                        draft["resolution"] = found
                    continue
            self._set_field(ctx, draft, name, value, errors, creating)
        for name, ops in update.items():
            if name not in errors:
                self._apply_update(ctx, draft, name, ops, errors, comments, screen)
        return errors, comments

    def _add_comment(self, issue: dict[str, Any], principal: Principal, body: Any, visibility: Any) -> dict[str, Any]:
        limit = self.config.get("max_comments")
        if limit is not None and len(issue["comments"]) >= limit:
            raise JiraError(413, f"The issue has reached the maximum number of comments ({limit}). No more comments can be added.")
        now = self.now()
        comment = {"id": self.store.new_comment_id(), "author": principal.email, "body": body, "created": now, "updated": now}
        if visibility:
            comment["visibility"] = copy.deepcopy(visibility)
        issue["comments"].append(comment)
        return comment

    # ------------------------------------------------------------------ issues
    def op_create(self, ctx: Ctx) -> SimResponse:
        body = self._body(ctx)
        if not isinstance(body, dict):
            raise JiraError(400, "Can not deserialize the request body: expected an object with 'fields'.")
        fields = body.get("fields")
        if not isinstance(fields, dict):
            raise JiraError(400, errors={"project": "valid project is required", "summary": "You must specify a summary of the issue.",
                                         "issuetype": "Specify an issue type"})
        errors: dict[str, str] = {}
        project = None
        if fields.get("project") is None:
            errors["project"] = "valid project is required"
        else:
            project = self.catalog.project(fields["project"]) if isinstance(fields["project"], dict) else None
            if project is None:
                errors["project"] = "Specify a valid project ID or key"
        issuetype = None
        if fields.get("issuetype") is None:
            errors["issuetype"] = "Specify an issue type"
        elif project is not None:
            issuetype = self.catalog.issuetype(project, fields["issuetype"])
            if issuetype is None:
                errors["issuetype"] = "The issue type selected is invalid."
        if "summary" not in fields and "summary" not in (body.get("update") or {}):
            errors["summary"] = "You must specify a summary of the issue."
        if project is None or issuetype is None:
            raise JiraError(400, errors=errors)
        now = self.now()
        draft: dict[str, Any] = {
            "id": "", "key": "", "project": project, "issuetype": issuetype, "summary": "", "description": None,
            "priority": self.config["default_priority"], "labels": [], "components": [], "assignee": None,
            "reporter": ctx.principal.email, "status": self.catalog.initial, "resolution": None, "resolutiondate": None,
            "created": now, "updated": now, "statuscategorychangedate": now, "custom": {}, "comments": [], "properties": {},
        }
        more, comments = self._edit_body(ctx, draft, body, creating=True)
        errors.update(more)
        if errors:
            raise JiraError(400, errors=errors)
        draft["properties"] = self._properties_in(body.get("properties"))
        draft["id"] = self.store.new_issue_id()
        draft["key"] = self.store.new_key(project)
        self.store.issues[draft["id"]] = draft
        for item in comments:
            self._add_comment(draft, ctx.principal, item["body"], item["visibility"])
        self._after_write(draft, bump=False)
        return json_response({"id": draft["id"], "key": draft["key"], "self": f"{ctx.api_path}/issue/{draft['id']}"}, 201)

    def op_get(self, ctx: Ctx, ref: str) -> SimResponse:
        issue = self._visible_issue(ctx, ref)
        fields = self._list_param(ctx.params.get("fields"))
        props = self._list_param(ctx.params.get("properties"))
        out = self._render_issue(ctx, issue, fields, "*all", props)
        expand = set(self._list_param(ctx.params.get("expand")) or [])
        if "transitions" in expand:
            out["transitions"] = [self._transition_json(ctx, t, False) for t in self.catalog.available(issue["status"])]
        if "names" in expand:
            out["names"] = {name: self._field_label(name) for name in out["fields"]}
        return json_response(out)

    def _field_label(self, name: str) -> str:
        if name in SYSTEM_FIELDS:
            return SYSTEM_FIELDS[name][0]
        return str(self.config["custom_fields"].get(name, {}).get("name", name))

    def op_edit(self, ctx: Ctx, ref: str) -> SimResponse:
        issue = self._visible_issue(ctx, ref)
        body = self._body(ctx, required=False)
        if not isinstance(body, dict):
            raise JiraError(400, "Can not deserialize the request body: expected an object.")
        draft = copy.deepcopy({k: v for k, v in issue.items() if k != "_versions"})
        errors, comments = self._edit_body(ctx, draft, body, creating=False)
        if errors:
            raise JiraError(400, errors=errors)
        props = self._properties_in(body.get("properties"))
        changed = any(draft[k] != issue.get(k) for k in draft) or bool(comments)
        if changed or props:
            self._before_write(issue)
            issue.update(draft)
            issue["properties"].update(props)
            for item in comments:
                self._add_comment(issue, ctx.principal, item["body"], item["visibility"])
            self._after_write(issue, bump=changed)
        if ctx.params.get("returnIssue", "").lower() == "true":
            return json_response(self._render_issue(ctx, issue, None, "*all", None))
        return SimResponse(204)

    def op_delete(self, ctx: Ctx, ref: str) -> SimResponse:
        issue = self._visible_issue(ctx, ref)
        del self.store.issues[issue["id"]]
        for link_id in [lid for lid, link in self.store.links.items() if issue["id"] in (link["inward"], link["outward"])]:
            del self.store.links[link_id]
        self._dirty = True
        return SimResponse(204)

    # ------------------------------------------------------------------ transitions
    def _transition_json(self, ctx: Ctx, item: Any, with_fields: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"id": item.id, "name": item.name, "to": self._status(ctx, item.to), "hasScreen": bool(item.screen),
                               "isGlobal": item.sources is None, "isInitial": False, "isAvailable": True, "isConditional": False,
                               "isLooped": False}
        if with_fields:
            fields: dict[str, Any] = {}
            for name in item.screen:
                if name == "resolution":
                    fields[name] = {"required": False, "schema": {"type": "resolution", "system": "resolution"}, "name": "Resolution",
                                    "key": "resolution", "operations": ["set"],
                                    "allowedValues": [self._resolution(ctx, r) for r in self.catalog.resolutions]}
                else:
                    fields[name] = {"required": False, "name": self._field_label(name), "key": name, "operations": ["set"]}
            out["fields"] = fields
        return out

    def op_transitions(self, ctx: Ctx, ref: str) -> SimResponse:
        issue = self._visible_issue(ctx, ref)
        expand = ctx.params.get("expand", "")
        wanted = ctx.params.get("transitionId")
        items = [t for t in self.catalog.available(issue["status"]) if wanted is None or t.id == wanted]
        return json_response({"expand": "transitions",
                              "transitions": [self._transition_json(ctx, t, "transitions.fields" in expand) for t in items]})

    def op_transition(self, ctx: Ctx, ref: str) -> SimResponse:
        issue = self._visible_issue(ctx, ref)
        body = self._body(ctx)
        if not isinstance(body, dict):
            raise JiraError(400, "Can not deserialize the request body: expected an object.")
        ident = body.get("transition")
        if not isinstance(ident, dict) or ident.get("id") in (None, ""):
            raise JiraError(400, "Missing 'transition' identifier")
        tid = str(ident["id"])
        item = next((t for t in self.catalog.available(issue["status"]) if t.id == tid), None)
        if item is None:
            raise JiraError(400, f"Transition id '{tid}' is not valid for this issue.")
        draft = copy.deepcopy({k: v for k, v in issue.items() if k != "_versions"})
        draft["resolution"] = None
        errors, comments = self._edit_body(ctx, draft, body, creating=False, screen=set(item.screen))
        if errors:
            raise JiraError(400, errors=errors)
        props = self._properties_in(body.get("properties"))
        given = draft["resolution"]
        now = self.now()
        old_category = self.catalog.status_category(issue["status"])
        new_category = self.catalog.status_category(item.to)
        if new_category == "done":
            if given is not None:
                draft["resolution"] = given
            elif issue.get("resolution") is not None and old_category == "done":
                draft["resolution"] = issue["resolution"]
            else:
                draft["resolution"] = self._default_resolution()
            if draft["resolution"] is not None and (old_category != "done" or issue.get("resolutiondate") is None):
                draft["resolutiondate"] = now
        else:
            draft["resolution"] = None
            draft["resolutiondate"] = None
        draft["status"] = item.to
        if new_category != old_category:
            draft["statuscategorychangedate"] = now
        self._before_write(issue)
        issue.update(draft)
        issue["properties"].update(props)
        for entry in comments:
            self._add_comment(issue, ctx.principal, entry["body"], entry["visibility"])
        self._after_write(issue)
        return SimResponse(204)

    # ------------------------------------------------------------------ comments
    def _comment_body(self, ctx: Ctx) -> tuple[Any, Any]:
        body = self._body(ctx)
        if not isinstance(body, dict):
            raise JiraError(400, "Can not deserialize the request body: expected an object.")
        value = body.get("body")
        if value is None or value == "" or (ctx.adf and not isinstance(value, dict)) or (not ctx.adf and not isinstance(value, str)):
            if value is None or value == "":
                raise JiraError(400, errors={"comment": "Comment body can not be empty!"})
            raise JiraError(400, errors={"comment": "Comment body is not valid!"})
        errors: dict[str, str] = {}
        stored = self._rich_in(ctx, "comment", value, errors)
        if errors and "too long" in errors["comment"]:
            raise JiraError(400, errors=errors)
        if errors:  # malformed ADF: the field message of Jira, the detail in errorMessages
            raise JiraError(400, [errors["comment"]], {"comment": "Comment body is not valid!"})
        if stored is None or jira_adf.is_blank(stored):
            raise JiraError(400, errors={"comment": "Comment body can not be empty!"})
        return stored, body.get("visibility")

    def op_comment_add(self, ctx: Ctx, ref: str) -> SimResponse:
        issue = self._visible_issue(ctx, ref)
        stored, visibility = self._comment_body(ctx)
        self._before_write(issue)
        comment = self._add_comment(issue, ctx.principal, stored, visibility)
        self._after_write(issue)
        return json_response(self._comment(ctx, issue, comment), 201)

    def op_comments(self, ctx: Ctx, ref: str) -> SimResponse:
        issue = self._visible_issue(ctx, ref)
        comments = list(issue["comments"])
        if ctx.params.get("orderBy", "").lstrip("+") == "-created":
            comments.reverse()
        start = _int_param(ctx.params, "startAt", 0)
        limit = min(_int_param(ctx.params, "maxResults", 5000), 5000)
        page = comments[start:start + limit]
        return json_response({"startAt": start, "maxResults": limit, "total": len(comments),
                              "comments": [self._comment(ctx, issue, c) for c in page]})

    def _find_comment(self, issue: Mapping[str, Any], comment_id: str) -> dict[str, Any]:
        comment = next((c for c in issue["comments"] if c["id"] == comment_id), None)
        if comment is None:
            raise JiraError(404, f"Can not find a comment for the id: {comment_id}.")
        return comment

    def op_comment_get(self, ctx: Ctx, ref: str, comment_id: str) -> SimResponse:
        issue = self._visible_issue(ctx, ref)
        return json_response(self._comment(ctx, issue, self._find_comment(issue, comment_id)))

    def op_comment_edit(self, ctx: Ctx, ref: str, comment_id: str) -> SimResponse:
        issue = self._visible_issue(ctx, ref)
        comment = self._find_comment(issue, comment_id)
        stored, visibility = self._comment_body(ctx)
        self._before_write(issue)
        comment.update(body=stored, updated=self.now(), update_author=ctx.principal.email)
        if visibility is not None:
            comment["visibility"] = copy.deepcopy(visibility)
        self._after_write(issue)
        return json_response(self._comment(ctx, issue, comment))

    def op_comment_delete(self, ctx: Ctx, ref: str, comment_id: str) -> SimResponse:
        issue = self._visible_issue(ctx, ref)
        comment = self._find_comment(issue, comment_id)
        self._before_write(issue)
        issue["comments"].remove(comment)
        self._after_write(issue)
        return SimResponse(204)

    # ------------------------------------------------------------------ issue properties
    def op_property_keys(self, ctx: Ctx, ref: str) -> SimResponse:
        issue = self._visible_issue(ctx, ref)
        return json_response({"keys": [{"self": f"{ctx.api_path}/issue/{issue['id']}/properties/{urllib.parse.quote(k)}", "key": k}
                                       for k in issue["properties"]]})

    def _property_missing(self, key: str) -> JiraError:
        return JiraError(404, f"The property with key '{key}' does not exist.")

    def op_property_get(self, ctx: Ctx, ref: str, key: str) -> SimResponse:
        issue = self._visible_issue(ctx, ref)
        if key not in issue["properties"]:
            raise self._property_missing(key)
        return json_response({"key": key, "value": copy.deepcopy(issue["properties"][key])})

    def op_property_put(self, ctx: Ctx, ref: str, key: str) -> SimResponse:
        issue = self._visible_issue(ctx, ref)
        try:
            value = json.loads(ctx.req.body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise JiraError(400, "The property value must be a valid JSON value.") from None
        self._check_property(key, value)
        existed = key in issue["properties"]
        self._before_write(issue)
        issue["properties"][key] = value
        self._after_write(issue, bump=False)
        return SimResponse(200 if existed else 201)

    def op_property_delete(self, ctx: Ctx, ref: str, key: str) -> SimResponse:
        issue = self._visible_issue(ctx, ref)
        if key not in issue["properties"]:
            raise self._property_missing(key)
        self._before_write(issue)
        del issue["properties"][key]
        self._after_write(issue, bump=False)
        return SimResponse(204)

    # ------------------------------------------------------------------ search
    def _jql_catalog(self) -> JqlCatalog:
        cfg = self.config
        cat = self.catalog
        projects = {}
        for key, spec in cfg["projects"].items():
            for alias in (key, str(spec["id"]), str(spec.get("name", key))):
                projects[alias.lower()] = key
        statuses = {name.lower(): name for name in cat.statuses}
        statuses.update({sid: name for name, sid in cat.status_ids.items()})
        categories: dict[str, str] = {}
        for key, spec in CATEGORIES.items():
            for alias in (key, str(spec["name"]), str(spec["id"])):
                categories[alias.lower()] = key
        keys: dict[str, str] = {}
        for issue in self.store.issues.values():
            keys[issue["key"].lower()] = issue["key"]
            keys[issue["id"]] = issue["key"]
        return JqlCatalog(
            projects=projects, statuses=statuses, categories=categories,
            resolutions={r.lower(): r for r in cat.resolutions},
            issuetypes={t.lower(): t for t in cat.issuetype_ids} | {tid: t for t, tid in cat.issuetype_ids.items()},
            components={name.lower(): name for (_p, name) in cat.component_ids},
            priorities={p.lower(): p for p in cat.priorities} | {cat.priority_id(p): p for p in cat.priorities},
            keys=keys, category_of=cat.status_category)

    def _rank(self, name: str, value: Any) -> Any:
        if name == "status":
            return list(self.catalog.statuses).index(value) if value in self.catalog.statuses else 99
        if name == "priority":
            return -self.catalog.priorities.index(value) if value in self.catalog.priorities else -99  # Highest first when DESC
        if name == "key":
            project, _dash, number = str(value).rpartition("-")
            return (project, int(number) if number.isdigit() else 0)
        if isinstance(value, str):
            return value.lower()
        return value

    def _search_params(self, ctx: Ctx) -> dict[str, Any]:
        if ctx.req.method == "POST":
            body = self._body(ctx, required=False)
            if not isinstance(body, dict):
                raise JiraError(400, "Can not deserialize the request body: expected an object.")
            return body
        params: dict[str, Any] = dict(ctx.params)
        for key in ("maxResults", "startAt"):
            if key in params:
                try:
                    params[key] = int(params[key])
                except ValueError:
                    raise JiraError(400, f"The value of '{key}' must be an integer.") from None
        if "reconcileIssues" in params:
            params["reconcileIssues"] = [p for p in str(params["reconcileIssues"]).split(",") if p]
        return params

    def _matching(self, ctx: Ctx, jql: str, reconcile: set[str], lagging: bool) -> list[dict[str, Any]]:
        try:
            query = parse(jql)
            predicate = compile_query(query, self._jql_catalog(), self.now())
        except JqlError as exc:
            raise JiraError(400, str(exc)) from None
        if ctx.principal.anonymous:
            return []
        now = self.now()
        views: list[Mapping[str, Any]] = []
        for issue in self.store.issues.values():
            view = issue if (not lagging or issue["id"] in reconcile) else self._index_view(issue, now)
            if view is not None and predicate(view):
                views.append(view)
        return [dict(v) for v in order_issues(list(views), query.order, self._rank)]

    def _max_results(self, params: Mapping[str, Any]) -> int:
        value = params.get("maxResults", 50)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise JiraError(400, "The maxResults parameter must be a non-negative integer.")
        return min(value, int(self.config["max_results_cap"]))

    def _properties_param(self, params: Mapping[str, Any]) -> list[str] | None:
        props = self._list_param(params.get("properties"))
        if props is not None and len(props) > 5:
            raise JiraError(400, "A maximum of 5 issue property keys can be requested.")
        return props

    def op_search_jql(self, ctx: Ctx) -> SimResponse:
        params = self._search_params(ctx)
        jql = params.get("jql") or ""
        if not isinstance(jql, str):
            raise JiraError(400, "The JQL query must be a string.")
        try:
            bounded = parse(jql).where is not None
        except JqlError as exc:
            raise JiraError(400, str(exc)) from None
        if not bounded:
            raise JiraError(400, UNBOUNDED)
        reconcile_raw = params.get("reconcileIssues") or []
        if not isinstance(reconcile_raw, list) or len(reconcile_raw) > 50:
            raise JiraError(400, "reconcileIssues must be a list of at most 50 issue ids.")
        reconcile = set()
        for item in reconcile_raw:
            if isinstance(item, bool) or not str(item).isdigit():
                raise JiraError(400, f"reconcileIssues: '{item}' is not an issue id.")
            reconcile.add(str(int(item)))
        fields = self._list_param(params.get("fields"))
        props = self._properties_param(params)
        limit = self._max_results(params)
        fingerprint = hashlib.sha256(json.dumps([jql, fields, props, limit], sort_keys=True).encode()).hexdigest()[:16]
        offset = 0
        token = params.get("nextPageToken")
        if token:
            offset = self._read_token(str(token), fingerprint)
        issues = self._matching(ctx, jql, reconcile, lagging=self.cloud)
        page = issues[offset:offset + limit] if limit else []
        rendered = []
        for view in page:
            if fields is None:
                bare: dict[str, Any] = {"id": view["id"]}
                if props:
                    bare["properties"] = {k: copy.deepcopy(view["properties"][k]) for k in props if k in view.get("properties", {})}
                rendered.append(bare)
            else:
                rendered.append(self._render_issue(ctx, view, fields, "*navigable", props))
        out: dict[str, Any] = {"issues": rendered}
        if offset + len(page) < len(issues) and limit:
            out["nextPageToken"] = self._make_token(offset + len(page), fingerprint)
            out["isLast"] = False
        else:
            out["isLast"] = True
        return json_response(out)

    def _make_token(self, offset: int, fingerprint: str) -> str:
        raw = json.dumps({"o": offset, "f": fingerprint, "t": int(self.now())}, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def _read_token(self, token: str, fingerprint: str) -> int:
        try:
            data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            offset, issued, bound = int(data["o"]), float(data["t"]), str(data["f"])
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise JiraError(400, "The provided next page token is invalid or expired.") from None
        if bound != fingerprint or self.now() - issued > TOKEN_LIFETIME or offset < 0:
            raise JiraError(400, "The provided next page token is invalid or expired.")
        return offset

    def op_search_legacy(self, ctx: Ctx) -> SimResponse:
        if self.cloud:
            raise JiraError(410, GONE)
        params = self._search_params(ctx)
        jql = params.get("jql") or ""
        if not isinstance(jql, str):
            raise JiraError(400, "The JQL query must be a string.")
        start = params.get("startAt", 0)
        if isinstance(start, bool) or not isinstance(start, int) or start < 0:
            raise JiraError(400, "The startAt parameter must be a non-negative integer.")
        limit = self._max_results(params)
        fields = self._list_param(params.get("fields"))
        props = self._properties_param(params)
        issues = self._matching(ctx, jql, set(), lagging=False)
        page = issues[start:start + limit]
        return json_response({"expand": "schema,names", "startAt": start, "maxResults": limit, "total": len(issues),
                              "issues": [self._render_issue(ctx, v, fields, "*navigable", props) for v in page]})

    def op_search_id(self, ctx: Ctx) -> SimResponse:
        if self.cloud:
            raise JiraError(410, GONE)
        return self._jersey_404(ctx.req)

    def op_approximate_count(self, ctx: Ctx) -> SimResponse:
        if not self.cloud:
            return self._jersey_404(ctx.req)
        body = self._body(ctx)
        jql = body.get("jql") if isinstance(body, dict) else None
        if not isinstance(jql, str) or not jql.strip():
            raise JiraError(400, UNBOUNDED)
        return json_response({"count": len(self._matching(ctx, jql, set(), lagging=True))})

    # ------------------------------------------------------------------ reference data
    def op_myself(self, ctx: Ctx) -> SimResponse:
        user = self._user(ctx, ctx.principal.email) or {}
        user["locale"] = "en_US"
        user["groups"] = {"size": 2 if ctx.principal.admin else 1, "items": []}
        return json_response(user)

    def op_server_info(self, ctx: Ctx) -> SimResponse:
        now = self.now()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000+0000", time.gmtime(now))
        if self.cloud:
            info = {"baseUrl": ctx.base, "displayUrl": ctx.base, "version": "1001.0.0-SNAPSHOT", "versionNumbers": [1001, 0, 0],
                    "deploymentType": "Cloud", "buildNumber": 100289, "buildDate": "2026-11-30T00:00:00.000+0000",
                    "serverTime": stamp, "scmInfo": "labops-simulator", "serverTitle": "Jira", "defaultLocale": {"locale": "en_US"},
                    "serverTimeZone": "Etc/UTC"}
        else:
            info = {"baseUrl": ctx.base, "version": "9.12.15", "versionNumbers": [9, 12, 15], "deploymentType": self.config["dc_deployment_type"],
                    "buildNumber": 9120015, "buildDate": "2024-10-01T00:00:00.000+0000", "serverTime": stamp,
                    "scmInfo": "labops-simulator", "serverTitle": "Jira"}
        return json_response(info)

    def op_priorities(self, ctx: Ctx) -> SimResponse:
        return json_response([dict(self._priority(ctx, p), statusColor="#cccccc", description=p) for p in self.catalog.priorities])

    def op_priority(self, ctx: Ctx, pid: str) -> SimResponse:
        name = next((p for p in self.catalog.priorities if self.catalog.priority_id(p) == pid), None)
        if name is None:
            raise JiraError(404, f"The priority with ID '{pid}' does not exist.")
        return json_response(dict(self._priority(ctx, name), statusColor="#cccccc", description=name))

    def op_resolutions(self, ctx: Ctx) -> SimResponse:
        return json_response([self._resolution(ctx, r) for r in self.catalog.resolutions])

    def op_resolution(self, ctx: Ctx, rid: str) -> SimResponse:
        name = next((r for r in self.catalog.resolutions if self.catalog.resolution_id(r) == rid), None)
        if name is None:
            raise JiraError(404, f"The resolution with ID '{rid}' does not exist.")
        return json_response(self._resolution(ctx, name))

    def op_fields(self, ctx: Ctx) -> SimResponse:
        out: list[dict[str, Any]] = []
        for fid, (label, schema_type, orderable) in SYSTEM_FIELDS.items():
            out.append({"id": fid, "key": fid, "name": label, "custom": False, "orderable": orderable, "navigable": fid != "comment",
                        "searchable": True, "clauseNames": [fid], "schema": {"type": schema_type, "system": fid}})
        for fid, spec in self.config["custom_fields"].items():
            schema_type, custom = CUSTOM_TYPES[spec["type"]]
            number = int(fid[len("customfield_"):])
            schema: dict[str, Any] = {"type": schema_type, "custom": custom, "customId": number}
            if spec["type"] in ("multiselect", "labels"):
                schema["items"] = "option" if spec["type"] == "multiselect" else "string"
            out.append({"id": fid, "key": fid, "name": spec.get("name", fid), "untranslatedName": spec.get("name", fid), "custom": True,
                        "orderable": True, "navigable": True, "searchable": True,
                        "clauseNames": [f"cf[{number}]", spec.get("name", fid)], "schema": schema})
        del ctx
        return json_response(out)

    def op_projects(self, ctx: Ctx) -> SimResponse:
        if ctx.principal.anonymous:
            return json_response([])
        return json_response([self._project(ctx, key) for key in self.config["projects"]])

    def op_project(self, ctx: Ctx, ref: str) -> SimResponse:
        key = self.catalog.project({"key": ref}) or self.catalog.project({"id": ref})
        if key is None or ctx.principal.anonymous:
            raise JiraError(404, f"No project could be found with key '{ref}'.")
        return json_response(self._project(ctx, key, full=True))

    # ------------------------------------------------------------------ issue links
    def _link_type_json(self, ctx: Ctx, ltype: Mapping[str, str]) -> dict[str, str]:
        return dict(ltype, self=f"{ctx.api_path}/issueLinkType/{ltype['id']}")

    def op_link_types(self, ctx: Ctx) -> SimResponse:
        return json_response({"issueLinkTypes": [self._link_type_json(ctx, t) for t in self.catalog.link_types]})

    def op_link_type(self, ctx: Ctx, type_id: str) -> SimResponse:
        ltype = self.catalog.link_type({"id": type_id})
        if ltype is None:
            raise JiraError(404, f"No issue link type with id '{type_id}' exists.")
        return json_response(self._link_type_json(ctx, ltype))

    def op_link_create(self, ctx: Ctx) -> SimResponse:
        body = self._body(ctx)
        if not isinstance(body, dict):
            raise JiraError(400, "Can not deserialize the request body: expected an object.")
        ltype = self.catalog.link_type(body.get("type"))
        if ltype is None:
            ref = body["type"] if isinstance(body.get("type"), dict) else {}
            raise JiraError(404, f"No issue link type with name '{ref.get('name', ref.get('id'))}' found.")
        ends = []
        for side in ("inwardIssue", "outwardIssue"):
            ref = body.get(side)
            if not isinstance(ref, dict) or not (ref.get("key") or ref.get("id")):
                raise JiraError(400, f"'{side}' must name an issue by 'key' or 'id'.")
            issue = self.store.by_ref(str(ref.get("key") or ref.get("id")))
            if issue is None:
                raise JiraError(404, f"Issue Does Not Exist: {ref.get('key') or ref.get('id')}")
            ends.append(issue)
        inward, outward = ends
        if inward["id"] == outward["id"]:
            raise JiraError(400, "You cannot link an issue to itself.")
        exists = any(link["type"] == ltype["id"] and link["inward"] == inward["id"] and link["outward"] == outward["id"]
                     for link in self.store.links.values())
        comments = []
        if body.get("comment") is not None:
            comment = body["comment"]
            errors: dict[str, str] = {}
            stored = self._rich_in(ctx, "comment", comment.get("body") if isinstance(comment, dict) else None, errors)
            if errors or stored is None:
                raise JiraError(400, errors={"comment": "Comment body is not valid!"})
            comments.append(stored)
        for issue in ends:
            self._before_write(issue)
        if not exists:
            link_id = self.store.new_link_id()
            self.store.links[link_id] = {"id": link_id, "type": ltype["id"], "inward": inward["id"], "outward": outward["id"]}
        for stored in comments:
            self._add_comment(inward, ctx.principal, stored, None)
        for issue in ends:
            self._after_write(issue)
        return SimResponse(201)

    def _link(self, link_id: str) -> dict[str, str]:
        link = self.store.links.get(link_id)
        if link is None:
            raise JiraError(404, f"No issue link with id '{link_id}' exists.")
        return link

    def op_link_get(self, ctx: Ctx, link_id: str) -> SimResponse:
        link = self._link(link_id)
        ltype = next(t for t in self.catalog.link_types if t["id"] == link["type"])

        def side(issue_id: str) -> dict[str, Any]:
            issue = self.store.issues[issue_id]
            return {"id": issue["id"], "key": issue["key"], "self": f"{ctx.api_path}/issue/{issue['id']}",
                    "fields": {"summary": issue["summary"], "status": self._status(ctx, issue["status"])}}
        return json_response({"id": link["id"], "self": f"{ctx.api_path}/issueLink/{link['id']}", "type": self._link_type_json(ctx, ltype),
                              "inwardIssue": side(link["inward"]), "outwardIssue": side(link["outward"])})

    def op_link_delete(self, ctx: Ctx, link_id: str) -> SimResponse:
        link = self._link(link_id)
        del ctx
        ends = [self.store.issues[i] for i in (link["inward"], link["outward"]) if i in self.store.issues]
        for issue in ends:
            self._before_write(issue)
        del self.store.links[link_id]
        for issue in ends:
            self._after_write(issue)
        return SimResponse(204)


def _logged_body(raw: bytes) -> Any:
    """A request body for the request log: the decoded JSON, else the text (cut at 64 KiB), None when empty."""
    if not raw.strip():
        return None
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return raw[:65536].decode("utf-8", "replace")


def _int_param(params: Mapping[str, str], name: str, default: int) -> int:
    try:
        value = int(params.get(name, ""))
    except ValueError:
        return default
    return value if value >= 0 else default


def build_app(overrides: Mapping[str, Any] | None = None) -> JiraSimulator:
    """A Jira simulator with ``overrides`` applied to :data:`DEFAULT_CONFIG` (for in-process use)."""
    return JiraSimulator(merge_config(DEFAULT_CONFIG, overrides))


EPILOG = """\
examples:
  python -m simulators.jira --port 8082
  python -m simulators.jira --config dc.json            # {"mode": "datacenter"}
  curl -s -u bot@example.com:jira-api-token http://127.0.0.1:PORT/rest/api/3/myself
  curl -s -u bot@example.com:jira-api-token -H 'Content-Type: application/json' \\
       -d '{"jql": "project = OPS AND statusCategory != Done", "fields": ["summary", "status"]}' \\
       http://127.0.0.1:PORT/rest/api/3/search/jql

control API (not under /rest):
  GET /_sim/health | GET /_sim/state | POST /_sim/reset | POST /_sim/clock {"advance": seconds}
  GET|DELETE /_sim/requests   the request log (operation, method, status) / clear it and the counters
  GET|POST|DELETE /_sim/faults   e.g. {"kind":"drop","operations":["POST issue"],"after_apply":true,"count":1}
  POST /_sim/seed {"issues": [{"project": "OPS", "summary": "old", "status": "Done", "resolutiondate": "-3d"}]}
  GET|POST /_sim/config {"search_lag": 5}   change config keys until the next reset
  Operation names: "<METHOD> <resource>", resource one of issue, transitions, comment, properties, search,
  approximateCount, myself, serverInfo, priority, resolution, field, project, issueLink, issueLinkType.
  See docs/simulators.md.
"""


def main(argv: list[str] | None = None) -> int:
    parser = build_parser("python -m simulators.jira",
                          "Stateful Jira REST simulator (contracts/jira.md): Cloud v3/v2 or Data Center v2, workflow, JQL, "
                          "eventual consistency, fault injection.", EPILOG)
    return run_cli(JiraSimulator, DEFAULT_CONFIG, parser, argv)


if __name__ == "__main__":
    sys.exit(main())
