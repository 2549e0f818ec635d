# -*- coding: utf-8 -*-
# Copyright: (c) 2026, labops.itsm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Jira REST client (Cloud v3 with ADF, Data Center v2 with wiki markup) on top of ``_http.HttpClient``.

Flavour (``deployment``): ``cloud`` uses ``/rest/api/3`` (rich text as ADF, the enhanced search
``/search/jql`` with ``nextPageToken`` and ``reconcileIssues``), ``datacenter`` uses ``/rest/api/2`` (wiki
markup strings, ``/search`` with ``startAt``/``total``). ``auto``: ``*.atlassian.net`` and ``api.atlassian.com``
are Cloud; any other host is asked once (``GET /rest/api/2/serverInfo``, ``deploymentType``) and the answer
is kept in ``cache_dir`` (0600 file in a 0700 directory) for later tasks and processes.

Authentication, sent pre-emptively with every request (anonymous reads answer 200 with nothing in them):
``token`` / ``token_file`` (a Data Center personal access token) -> ``Authorization: Bearer``; else Basic with
``username`` and ``password`` / ``password_file`` (Cloud: e-mail address and API token).

Retries are ``_http``'s policy (1 s / 2 s / 4 s on 5xx and timeouts, 429 after ``Retry-After``); a create, a
comment or a transition whose reply is lost raises ``AmbiguousWriteError`` and is never re-sent here. Error replies
(``{"errorMessages": [...], "errors": {field: message}}``, or plain text such as Cloud's 401) become ``_errors``
classes whose message carries the server's text, scrubbed of every secret; 410 (an API Atlassian removed) names
the migration.

``CreationIndex`` remembers the issues this controller created (or changed) per correlation label, on disk, so the
next lookup names them in ``reconcileIssues`` and Cloud's lagging search sees them; its ``lock`` serialises
"find, else create" of one label across processes (two AlertManager peers delivering the same group at once).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import hashlib
import json
import os
import re
import time
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

from ansible.module_utils.basic import env_fallback

from ansible_collections.labops.itsm.plugins.module_utils import _jira_markup as markup
from ansible_collections.labops.itsm.plugins.module_utils._errors import (
    AuthError,
    CommunicationError,
    LabopsError,
    NotFoundError,
    PermissionDenied,
    UnexpectedResponseError,
    ValidationError,
)
from ansible_collections.labops.itsm.plugins.module_utils._http import HttpClient, HttpResponse, truncate
from ansible_collections.labops.itsm.plugins.module_utils._secrets import SessionCache, read_secret_file

try:
    import fcntl
    HAS_FCNTL = True
except ImportError:  # pragma: no cover - non-POSIX controllers are not supported by Ansible anyway
    HAS_FCNTL = False

PLATFORM = "jira"
DEFAULT_CACHE_DIR = "~/.cache/labops/jira"
CLOUD_HOST_RE = re.compile(r"(?i)^https?://(?:[^/]+\.atlassian\.net|api\.atlassian\.com)(?::\d+)?(?:/|$)")
ISSUE_REF_RE = re.compile(r"^(?:[A-Za-z][A-Za-z0-9_]*-[0-9]+|[0-9]+)$")
PROPERTY_KEY_RE = re.compile(r"^[A-Za-z0-9_.-]{1,255}$")
DEFAULT_PAGE_SIZE = 50
MAX_RECONCILE = 50
MAX_SEARCH_PROPERTIES = 5
COMMENT_PAGE = 100
# statuses the client reads and maps itself (the rest, 5xx and 429, are _http's: retried, then its error)
HANDLED_STATUSES = (400, 401, 403, 404, 409, 410, 413, 422)
SEARCH_MIGRATION = ("Atlassian removed this search API from Jira Cloud; the enhanced search /rest/api/3/search/jql replaces it "
                    "(set deployment: cloud, or leave it on auto, so that labops.itsm uses it)")

JIRA_CONNECTION_ARGSPEC = dict(
    url=dict(type="str", required=True, aliases=["server"], fallback=(env_fallback, ["JIRA_URL"])),
    deployment=dict(type="str", default="auto", choices=["auto", "cloud", "datacenter"], fallback=(env_fallback, ["JIRA_DEPLOYMENT"])),
    username=dict(type="str", aliases=["email"], fallback=(env_fallback, ["JIRA_USERNAME", "JIRA_EMAIL"])),
    password=dict(type="str", no_log=True, aliases=["api_token"], fallback=(env_fallback, ["JIRA_API_TOKEN", "JIRA_PASSWORD"])),
    password_file=dict(type="path", no_log=False, aliases=["api_token_file"],
                       fallback=(env_fallback, ["JIRA_API_TOKEN_FILE", "JIRA_PASSWORD_FILE"])),
    token=dict(type="str", no_log=True, aliases=["pat"], fallback=(env_fallback, ["JIRA_PAT"])),
    token_file=dict(type="path", no_log=False, fallback=(env_fallback, ["JIRA_PAT_FILE"])),
    cache_dir=dict(type="path", default=DEFAULT_CACHE_DIR, fallback=(env_fallback, ["LABOPS_JIRA_CACHE"])),
    validate_certs=dict(type="bool", default=True, fallback=(env_fallback, ["JIRA_VALIDATE_CERTS"])),
    ca_path=dict(type="path"),
    timeout=dict(type="int", default=30),
)
JIRA_CONNECTION_MUTUALLY_EXCLUSIVE = [["password", "password_file"], ["token", "token_file"]]


def _ignore(message: str) -> None:
    """Default warning sink."""


def jira_time(value: Any) -> Optional[str]:
    """A Jira timestamp (``2026-05-04T10:15:30.000+0000``) as ISO-8601 text with a colon in the offset (None for empty),
    which every Python's ``fromisoformat`` reads."""
    if not value:
        return None
    text = str(value).strip()
    match = re.match(r"^(.*[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)([+-])(\d{2})(\d{2})$", text)
    if match:
        return "{0}{1}{2}:{3}".format(*match.groups())
    return text


def jql_string(value: Any) -> str:
    """``value`` as a quoted JQL string (``"`` and ``\\`` escaped); an empty value is refused."""
    text = str(value if value is not None else "")
    if not text.strip():
        raise ValidationError("jira: an empty value is never searched (it would match nothing or everything)")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def issue_ref(key: Any) -> str:
    """An issue key (``OPS-17``) or id (``10042``), checked, for a URL path."""
    text = str(key or "").strip()
    if not ISSUE_REF_RE.match(text):
        raise ValidationError(f"jira: {key!r} is not an issue key (PROJECT-123) or id")
    return text


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _names(items: Any) -> str:
    return ", ".join(items) if items else "none"


class JiraClient:
    """Jira REST client for one site and account. Not thread safe (transition cache)."""

    def __init__(self, http: HttpClient, *, deployment: str = "auto", username: Optional[str] = None,
                 password: Optional[str] = None, token: Optional[str] = None, cache_dir: Optional[str] = DEFAULT_CACHE_DIR,
                 warn: Optional[Callable[[str], None]] = None) -> None:
        self.http = http
        self.base_url = http.base_url
        self.warn = warn or _ignore
        self.cache_dir = cache_dir
        self.username = username
        for secret in (password, token):
            self.register_secret(secret)
        if token:
            self.auth = "bearer"
            http.session.headers["Authorization"] = "Bearer " + token
        elif username and password:
            self.auth = "basic"
            http.session.auth = (username, password)
        elif username:
            raise ValidationError("jira: one of password (api_token) or password_file is required with username "
                                  "(or JIRA_API_TOKEN / JIRA_API_TOKEN_FILE)")
        else:
            raise ValidationError("jira: no credentials: set username (the e-mail address on Cloud) and password (api_token), "
                                  "or token (a Data Center personal access token)")
        self._transitions = {}  # type: dict[Any, list]
        self.cloud = self._detect(deployment)
        self.api = 3 if self.cloud else 2

    # -- plumbing -------------------------------------------------------------------------

    @property
    def request_count(self) -> int:
        """HTTP requests sent by this client (retries and the deployment check included)."""
        return self.http.sent

    def register_secret(self, value: Optional[str]) -> None:
        self.http.register_secret(value)

    def close(self) -> None:
        self.http.close()

    def browse_url(self, key: str) -> str:
        return f"{self.base_url}/browse/{key}"

    def rich_text(self, text: Any) -> Any:
        """``text`` (Markdown-ish) as the flavour's rich text: ADF on Cloud v3, wiki markup on v2."""
        return markup.rich_text(str(text), self.api)

    def _path(self, tail: str) -> str:
        return f"/rest/api/{self.api}/{tail}"

    def _detect(self, deployment: Optional[str]) -> bool:
        choice = str(deployment or "auto").strip().lower()
        if choice in ("cloud", "datacenter"):
            return choice == "cloud"
        if choice != "auto":
            raise ValidationError(f"jira: deployment must be auto, cloud or datacenter, got {deployment!r}")
        if CLOUD_HOST_RE.match(self.base_url):
            return True
        cache = SessionCache(self.cache_dir, "jira-deployment", self.base_url) if self.cache_dir else None
        known = (cache.load_entry() or {}).get("deployment") if cache else None
        if known in ("cloud", "datacenter"):
            return known == "cloud"
        info = self.server_info(api=2)
        kind = str(info.get("deploymentType") or "").strip().lower()
        cloud = kind == "cloud"
        if cache is not None and kind:
            cache.store_entry({"deployment": "cloud" if cloud else "datacenter"})
        return cloud

    # -- errors ---------------------------------------------------------------------------

    def _envelope(self, response: HttpResponse) -> tuple:
        """(text, field errors) of an error reply: the JSON envelope, else the plain-text body."""
        try:
            data = json.loads(response.body.decode("utf-8")) if response.body else None
        except (ValueError, UnicodeDecodeError):
            data = None
        if not isinstance(data, dict) or not ({"errorMessages", "errors", "message"} & set(data)):
            return truncate(self.http.scrub(response.text)), {}
        messages = [str(m) for m in (data.get("errorMessages") or []) if m]
        if data.get("message") and not messages:
            messages.append(str(data["message"]))
        errors = data["errors"] if isinstance(data.get("errors"), dict) else {}
        field_errors = {str(k): truncate(self.http.scrub(v)) for k, v in errors.items()}
        parts = messages + [f"{k}: {v}" for k, v in sorted(field_errors.items())]
        return truncate(self.http.scrub("; ".join(parts))), field_errors

    def _error(self, response: HttpResponse) -> LabopsError:
        status = response.status
        text, field_errors = self._envelope(response)
        text = text or "(empty body)"
        message = f"{response.context}: HTTP {status}: {text}"
        details = dict(platform=PLATFORM, status=status, server_text=text, errors=field_errors or None)
        if status == 401:
            hint = ("check username and api_token (Cloud: the account's e-mail address and an API token; a scoped token "
                    "works only through https://api.atlassian.com/ex/jira/<cloudId>)" if self.auth == "basic"
                    else "check the personal access token (token); it may be expired or revoked")
            return AuthError(f"{message} ({hint})", **details)
        if status == 403:
            reason = response.headers.get("X-Authentication-Denied-Reason") if response.headers else None
            hint = ("Jira asks for a CAPTCHA after failed logins: log in once in a browser or use a personal access token"
                    if reason and "captcha" in str(reason).lower() else "the account lacks the project permission for this operation")
            return PermissionDenied(f"{message} ({hint})", **details)
        if status == 404:
            return NotFoundError(message, **details)
        if status in (400, 422):
            return ValidationError(message, **details)
        if status == 410:
            return ValidationError(f"{message} ({SEARCH_MIGRATION})", **details)
        if status == 413:
            return UnexpectedResponseError(f"{message} (a per-issue limit is reached: comments, links or attachments)", **details)
        return UnexpectedResponseError(message, **details)

    def _call(self, method: str, path: str, *, operation: str, params: Optional[Mapping[str, Any]] = None, body: Any = None,
              expected: Sequence[int] = (200,), retry_unsafe: bool = False) -> HttpResponse:
        accepted = tuple(expected) + tuple(s for s in HANDLED_STATUSES if s not in expected)
        response = self.http.request(method, path, operation=operation, params=dict(params or {}) or None, json=body,
                                     expected=accepted, retry_unsafe=retry_unsafe)
        if response.status in expected:
            return response
        raise self._error(response)

    @staticmethod
    def _object(response: HttpResponse, what: str) -> dict:
        data = response.json()
        if not isinstance(data, dict):
            raise UnexpectedResponseError(f"{response.context}: HTTP {response.status}: {what} is not a JSON object",
                                          platform=PLATFORM, status=response.status)
        return data

    # -- reads ----------------------------------------------------------------------------

    def server_info(self, api: Optional[int] = None) -> dict:
        version = api or getattr(self, "api", 2)
        response = self._call("GET", f"/rest/api/{version}/serverInfo", operation="server info")
        return self._object(response, "serverInfo")

    def myself(self) -> dict:
        return self._object(self._call("GET", self._path("myself"), operation="myself"), "myself")

    def get_issue(self, key: str, *, fields: Any = None, properties: Any = None) -> Optional[dict]:
        """The issue (``fields`` and ``properties`` as lists or comma-separated text), or None when it does not exist
        or is not visible to the account (Jira answers 404 to both)."""
        params = {}
        if fields:
            params["fields"] = fields if isinstance(fields, str) else ",".join(fields)
        if properties:
            params["properties"] = properties if isinstance(properties, str) else ",".join(properties)
        response = self._call("GET", self._path("issue/" + issue_ref(key)), operation="get issue", params=params, expected=(200, 404))
        if response.status == 404:
            return None
        return self._object(response, "the issue")

    def transitions(self, key: str) -> list:
        """The transitions available from the issue's current status, with their screen fields."""
        response = self._call("GET", self._path(f"issue/{issue_ref(key)}/transitions"), operation="get transitions",
                              params={"expand": "transitions.fields"})
        return list(_list(self._object(response, "the transitions").get("transitions")))

    def find_transition(self, key: str, *, name: Optional[str] = None, to_status: Optional[str] = None, cache_key: Any = None,
                        current_status: Optional[str] = None) -> dict:
        """The transition of issue ``key`` named ``name`` (or with that id), or leading to status ``to_status``
        (names compared case-insensitively). The list is fetched once per ``cache_key`` (project, issue type and
        current status) within this client. ValidationError naming the issue, its status and the available
        transitions when none matches."""
        if not name and not to_status:
            raise ValidationError("jira: find_transition needs a transition name or a target status")
        cached = cache_key is not None and cache_key in self._transitions
        available = self._transitions[cache_key] if cached else self.transitions(key)
        if cache_key is not None:
            self._transitions[cache_key] = available
        wanted = str(name or to_status).strip().casefold()
        for transition in available:
            if name and (str(transition.get("name", "")).casefold() == wanted or str(transition.get("id")) == str(name).strip()):
                return dict(transition)
            if not name and str((transition.get("to") or {}).get("name", "")).casefold() == wanted:
                return dict(transition)
        if current_status is None:
            issue = self.get_issue(key, fields=["status"]) or {}
            current_status = ((issue.get("fields") or {}).get("status") or {}).get("name") or "unknown"
        offered = ["{0} ({1}) -> {2}".format(t.get("name"), t.get("id"), (t.get("to") or {}).get("name")) for t in available]
        what = f"a transition named {name!r}" if name else f"a transition to status {to_status!r}"
        raise ValidationError(f"jira: issue {key} in status {current_status!r} has no {what} (the workflow offers from there: "
                              f"{_names(offered)}); add the transition to the workflow or map the status to one it can reach",
                              platform=PLATFORM, issue=key, status=current_status, transition=name, to_status=to_status)

    def has_transitions(self, cache_key: Any) -> bool:
        """Whether the transitions of ``cache_key`` are cached (a transition found there may be stale)."""
        return cache_key is not None and cache_key in self._transitions

    def forget_transitions(self, cache_key: Any = None) -> None:
        """Drop the cached transitions of ``cache_key`` (every one when None)."""
        if cache_key is None:
            self._transitions.clear()
        else:
            self._transitions.pop(cache_key, None)

    def comments(self, key: str) -> list:
        """Every comment of the issue, oldest first (paged by ``startAt``)."""
        found = []  # type: list[Any]
        while True:
            response = self._call("GET", self._path(f"issue/{issue_ref(key)}/comment"), operation="get comments",
                                  params={"startAt": len(found), "maxResults": COMMENT_PAGE})
            data = self._object(response, "the comments")
            page = _list(data.get("comments"))
            found.extend(page)
            total = data.get("total")
            if not page or (isinstance(total, int) and len(found) >= total):
                return found

    def iter_search(self, jql: str, *, fields: Any = None, properties: Any = None, page_size: int = DEFAULT_PAGE_SIZE,
                    reconcile: Sequence[Any] = ()) -> Iterator[dict]:
        """The issues of ``jql``, page by page, lazily (stop iterating to stop paging)."""
        if not jql or not str(jql).strip():
            raise ValidationError("jira: an empty JQL query is never sent (Jira refuses unbounded searches)")
        body = {"jql": str(jql), "maxResults": int(page_size)}  # type: dict[str, Any]
        body["fields"] = list(fields) if fields else ["id"]
        if properties:
            keys = list(properties)
            if len(keys) > MAX_SEARCH_PROPERTIES:
                raise ValidationError(f"jira: a search returns at most {MAX_SEARCH_PROPERTIES} issue properties, got {len(keys)}")
            body["properties"] = keys
        if self.cloud:
            ids = []  # type: list[int]
            for value in reconcile:
                if str(value).isdigit() and int(value) not in ids:
                    ids.append(int(value))
            if ids:
                body["reconcileIssues"] = ids[-MAX_RECONCILE:]
            path = self._path("search/jql")
        else:
            path = self._path("search")
            body["startAt"] = 0
        seen = 0
        while True:
            response = self._call("POST", path, operation="search", body=body, retry_unsafe=True)
            data = self._object(response, "the search result")
            page = _list(data.get("issues"))
            yield from page
            seen += len(page)
            if self.cloud:
                token = data.get("nextPageToken")
                if data.get("isLast", not token) or not token or not page:
                    return
                body["nextPageToken"] = token
            else:
                total = data.get("total")
                if not page or (isinstance(total, int) and seen >= total):
                    return
                body["startAt"] = seen

    def search(self, jql: str, *, fields: Any = None, properties: Any = None, limit: Optional[int] = None,
               page_size: int = DEFAULT_PAGE_SIZE, reconcile: Sequence[Any] = ()) -> list:
        """The issues of ``jql`` (every page, at most ``limit``). Cloud: ``POST /rest/api/3/search/jql`` with
        ``nextPageToken`` and ``reconcileIssues`` (the ids, at most 50, whose latest state must be seen despite
        the search's lag); Data Center: ``POST /rest/api/2/search`` with ``startAt``."""
        if limit is not None and limit <= 0:
            return []
        size = min(int(page_size), int(limit)) if limit else int(page_size)
        found = []  # type: list[dict]
        for issue in self.iter_search(jql, fields=fields, properties=properties, page_size=size, reconcile=reconcile):
            found.append(issue)
            if limit and len(found) >= limit:
                break
        return found

    # -- writes ---------------------------------------------------------------------------

    @staticmethod
    def _properties(properties: Any) -> Optional[list]:
        """``{key: value}`` or ``[{key, value}]`` -> the ``properties`` list of a create, edit or transition body."""
        if not properties:
            return None
        pairs = properties.items() if isinstance(properties, Mapping) else ((p["key"], p["value"]) for p in properties)
        result = []
        for key, value in pairs:
            if not PROPERTY_KEY_RE.match(str(key)):
                raise ValidationError(f"jira: invalid issue property key {key!r}")
            result.append({"key": str(key), "value": value})
        return result

    def _body(self, fields: Any, update: Any, properties: Any) -> dict:
        body = {}  # type: dict[str, Any]
        if fields:
            body["fields"] = dict(fields)
        if update:
            body["update"] = dict(update)
        clash = sorted(set(body.get("fields", {})) & set(body.get("update", {})))
        if clash:
            raise ValidationError("jira: {0} is set in both fields and update; Jira refuses that".format(", ".join(clash)))
        props = self._properties(properties)
        if props:
            body["properties"] = props
        return body

    def create_issue(self, fields: Mapping[str, Any], *, properties: Any = None, update: Any = None) -> dict:
        """POST -> ``{id, key, self}``. A lost reply raises AmbiguousWriteError: it is never re-sent here."""
        response = self._call("POST", self._path("issue"), operation="create issue", body=self._body(fields, update, properties),
                              expected=(201, 200))
        created = self._object(response, "the created issue")
        if not created.get("key") or not created.get("id"):
            raise UnexpectedResponseError(f"{response.context}: HTTP {response.status}: the reply names no issue key and id",
                                          platform=PLATFORM, status=response.status)
        return created

    def edit_issue(self, key: str, *, fields: Any = None, update: Any = None, properties: Any = None) -> None:
        """PUT (204). A 409 (a concurrent edit) is sent once more; 5xx and lost replies are retried (an edit is idempotent)."""
        body = self._body(fields, update, properties)
        if not body:
            return
        path = self._path("issue/" + issue_ref(key))
        for attempt in (1, 2):
            response = self._call("PUT", path, operation="edit issue", body=body, expected=(204, 200, 409))
            if response.status != 409:
                return
            if attempt == 2:
                raise self._error(response)

    def delete_issue(self, key: str) -> bool:
        """DELETE; True when deleted, False when there was no such issue (404)."""
        response = self._call("DELETE", self._path("issue/" + issue_ref(key)), operation="delete issue", expected=(204, 200, 404))
        return response.status != 404

    def transition(self, key: str, transition_id: Any, *, fields: Any = None, update: Any = None, properties: Any = None) -> None:
        """POST the transition (204); ``fields`` must be on its screen (``resolution`` on the Done screen)."""
        body = self._body(fields, update, properties)
        body["transition"] = {"id": str(transition_id)}
        self._call("POST", self._path(f"issue/{issue_ref(key)}/transitions"), operation="transition issue", body=body, expected=(204, 200))

    def add_comment(self, key: str, text: Any) -> dict:
        """A comment from Markdown-ish ``text`` (ADF on v3, wiki markup on v2); returns the stored comment."""
        response = self._call("POST", self._path(f"issue/{issue_ref(key)}/comment"), operation="add comment",
                              body={"body": self.rich_text(text)}, expected=(201, 200))
        return self._object(response, "the comment")

    def link_issues(self, type_name: str, inward_key: str, outward_key: str) -> None:
        """POST /issueLink (201): ``inward_key`` <type> ``outward_key``."""
        body = {"type": {"name": str(type_name)}, "inwardIssue": {"key": issue_ref(inward_key)}, "outwardIssue": {"key": issue_ref(outward_key)}}
        self._call("POST", self._path("issueLink"), operation="link issues", body=body, expected=(201, 200))


class CreationIndex:
    """The issues this controller created (or changed) per correlation label, on disk under ``cache_dir``.

    Jira Cloud's search lags behind writes: an issue created seconds ago may be missing from a search unless its id
    is named in ``reconcileIssues``. The index keeps, per label, the ids written within ``ttl`` seconds (at most 50),
    in a 0600 file of a 0700 directory (``_secrets.SessionCache``), so the next lookup of the label, in this process
    or another one on this controller, names them. ``lock(label)`` is an exclusive ``flock`` on
    ``<cache_dir>/locks/<sha256(base_url|label)[:32]>.lock`` held around "find, else create".
    """

    def __init__(self, cache_dir: Optional[str], base_url: str, *, ttl: float = 86400.0, lock_timeout: float = 300.0,
                 clock: Callable[[], float] = time.time, warn: Optional[Callable[[str], None]] = None) -> None:
        self.directory = os.path.expanduser(cache_dir) if cache_dir else None
        self.base_url = base_url.rstrip("/")
        self.ttl = ttl
        self.lock_timeout = lock_timeout
        self.clock = clock
        self.warn = warn or _ignore

    def _digest(self, label: str) -> str:
        return hashlib.sha256(f"{self.base_url}|{label}".encode()).hexdigest()[:32]

    def _store(self, label: str) -> Optional[SessionCache]:
        if not self.directory:
            return None
        return SessionCache(os.path.join(self.directory, "index"), "jira-creation-index", self.base_url, label)

    def _entries(self, store: SessionCache) -> list:
        data = store.load_entry() or {}
        cutoff = self.clock() - self.ttl
        entries = _list(data.get("issues"))
        return [e for e in entries if isinstance(e, dict) and str(e.get("id", "")).isdigit() and float(e.get("at") or 0) >= cutoff]

    def ids(self, label: str) -> list:
        """The ids remembered for ``label`` (oldest first)."""
        store = self._store(label)
        return [str(entry["id"]) for entry in self._entries(store)] if store else []

    def remember(self, label: str, issue_id: Any) -> None:
        store = self._store(label)
        if store is None or not str(issue_id).isdigit():
            return
        with store.locked():
            entries = [e for e in self._entries(store) if str(e["id"]) != str(issue_id)]
            entries.append({"id": str(issue_id), "at": self.clock()})
            store.store_entry({"label": label, "issues": entries[-MAX_RECONCILE:]})

    def lock_path(self, label: str) -> Optional[str]:
        if not self.directory:
            return None
        return os.path.join(self.directory, "locks", self._digest(label) + ".lock")

    @contextlib.contextmanager
    def lock(self, label: str) -> Iterator[None]:
        """Exclusive lock of ``label`` across processes on this controller (no lock without a cache directory)."""
        path = self.lock_path(label)
        descriptor = None  # type: Optional[int]
        if path and HAS_FCNTL:
            try:
                os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
                descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:
                self.warn(f"jira: the creation lock {path} cannot be opened ({exc.strerror or exc}); two runs handling the same "
                          "alert at once may create two issues")
        if descriptor is not None:
            try:
                self._acquire(descriptor, label)
            except BaseException:
                os.close(descriptor)
                raise
        try:
            yield
        finally:
            if descriptor is not None:
                try:
                    fcntl.flock(descriptor, fcntl.LOCK_UN)
                finally:
                    os.close(descriptor)

    def _acquire(self, descriptor: int, label: str) -> None:
        deadline = self.clock() + self.lock_timeout
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except OSError:
                if self.clock() >= deadline:
                    raise CommunicationError(f"jira: another run has held the creation lock of {label!r} for more than "
                                             f"{self.lock_timeout:.0f} s", platform=PLATFORM)
                time.sleep(0.02)


def _secret_option(params: Mapping[str, Any], value_key: str, file_key: str, warn: Optional[Callable[[str], None]]) -> Optional[str]:
    value, path = params.get(value_key), params.get(file_key)
    if value and path:
        raise ValidationError(f"jira: {value_key} and {file_key} are mutually exclusive (as options or environment variables); keep one")
    if path:
        return read_secret_file(path, file_key, warn, platform=PLATFORM)
    return value or None


def connection_secrets(params: Mapping[str, Any], warn: Optional[Callable[[str], None]] = None) -> tuple:
    """(password, token) from the options or their files (``password_file``, ``token_file``)."""
    return _secret_option(params, "password", "password_file", warn), _secret_option(params, "token", "token_file", warn)


def client_from_params(params: Mapping[str, Any], http: Optional[HttpClient] = None, warn: Optional[Callable[[str], None]] = None,
                       register_secret: Optional[Callable[[str], None]] = None) -> JiraClient:
    """The client from the connection options (``JIRA_CONNECTION_ARGSPEC``).

    ``register_secret`` (a module passes ``module.no_log_values.add``) receives the secrets read from files.
    """
    password, token = connection_secrets(params, warn)
    for value, file_key in ((password, "password_file"), (token, "token_file")):
        if value and params.get(file_key) and register_secret is not None:
            register_secret(value)
    url = str(params.get("url") or "").strip().rstrip("/")
    if http is None:
        http = HttpClient(PLATFORM, url, validate_certs=params.get("validate_certs", True), ca_path=params.get("ca_path"),
                          timeout=params.get("timeout") or 30)
    for value in (password, token):
        http.register_secret(value)
    return JiraClient(http, deployment=params.get("deployment") or "auto", username=params.get("username"), password=password,
                      token=token, cache_dir=params.get("cache_dir", DEFAULT_CACHE_DIR), warn=warn)
