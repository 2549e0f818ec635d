# -*- coding: utf-8 -*-
# Copyright: (c) 2025, labops.itsm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""ServiceNow Table API client on top of ``_http.HttpClient`` (``contracts/servicenow.md``).

Plain values in, plain dicts out: every value a string, reference fields collapsed to their sys_id
(``sysparm_exclude_reference_link=true``), ``display_value="all"`` gives ``{value, display_value}`` pairs.

Authentication, first match wins:

* ``api_key`` -> header ``x-sn-apikey``;
* ``client_id`` + ``client_secret`` -> OAuth 2.0 (``POST /oauth_token.do``, form-urlencoded). The token is cached
  on disk (``token_cache``, file 0600 in a 0700 directory, keyed by a hash of instance, client, user and their
  secrets) and reused by every later task and process until it expires, so N tasks cost one token request.
  An expired token (or one the instance answers 401 to) is renewed with the ``refresh_token`` grant, then with
  a fresh ``password`` / ``client_credentials`` grant; a rejected token is forgotten;
* else Basic with ``username`` and ``password`` / ``password_file``.

References given by name (``resolve_reference``) are cached per instance: in memory for every table, and for
``sys_user``, ``sys_user_group`` and ``cmdb_ci`` also on disk in ``token_cache`` (one 0600 file per instance in the
0700 directory, ``ReferenceCache``), so later tasks and processes (one per alert batch) neither look them up again nor
send names. A cached sys_id that turns out stale (a 404 on it, or a write whose reply shows the reference pointing
nowhere) is forgotten.

Retries are ``_http``'s policy (1 s / 2 s / 4 s, 429 ``Retry-After``); a POST whose reply is lost raises
``AmbiguousWriteError`` (never re-sent here: the governed write looks the record up first). Error replies
(``{"error": {"message", "detail"}, "status": "failure"}``) become ``_errors`` classes whose message carries the
server's message and detail, scrubbed of every secret.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import re
import time
from typing import Any, Callable, List, Mapping, Optional

from ansible.module_utils.basic import env_fallback

from ansible_collections.labops.itsm.plugins.module_utils._errors import (
    AuthError,
    LabopsError,
    NotFoundError,
    PermissionDenied,
    UnexpectedResponseError,
    ValidationError,
)
from ansible_collections.labops.itsm.plugins.module_utils._http import HttpClient, HttpResponse, truncate
from ansible_collections.labops.itsm.plugins.module_utils._secrets import SessionCache, read_secret_file

try:
    from requests.auth import AuthBase
except ImportError:  # pragma: no cover - exercised by the sanity import test
    AuthBase = object  # type: ignore[assignment,misc]

PLATFORM = "servicenow"
DEFAULT_TOKEN_CACHE = "~/.cache/labops/servicenow"
TABLE_PATH = "/api/now/table/"
TOKEN_PATH = "/oauth_token.do"
SYS_ID_RE = re.compile(r"^[0-9a-f]{32}$")
TABLE_RE = re.compile(r"^[a-z][a-z0-9_]*$")
# renew a token this many seconds before the instance would refuse it
TOKEN_SKEW = 60
DEFAULT_PAGE_SIZE = 500
# lookup order of resolve_reference: table -> fields tried in turn
REFERENCE_KEYS = {
    "sys_user": ("user_name", "email"),
    "sys_user_group": ("name",),
    "cmdb_ci": ("name",),
    "incident": ("number",),
    "problem": ("number",),
    "change_request": ("number",),
    "kb_knowledge": ("number",),
}
EMPTY_KEY = "an empty key is never searched"
# referenced tables whose name -> sys_id pairs are kept on disk (records numbers are only remembered in memory)
PERSISTED_REFERENCE_TABLES = ("sys_user", "sys_user_group", "cmdb_ci")

# Connection options shared by every ServiceNow module and the servicenow platform of ims_sop.
SERVICENOW_CONNECTION_ARGSPEC = dict(
    instance=dict(type="str", required=True, aliases=["host"], fallback=(env_fallback, ["SN_HOST", "SN_INSTANCE"])),
    username=dict(type="str", fallback=(env_fallback, ["SN_USERNAME"])),
    password=dict(type="str", no_log=True, fallback=(env_fallback, ["SN_PASSWORD"])),
    password_file=dict(type="path", no_log=False, fallback=(env_fallback, ["SN_PASSWORD_FILE"])),
    client_id=dict(type="str", fallback=(env_fallback, ["SN_CLIENT_ID"])),
    client_secret=dict(type="str", no_log=True, fallback=(env_fallback, ["SN_CLIENT_SECRET", "SN_SECRET_ID"])),
    grant_type=dict(type="str", choices=["password", "client_credentials"]),
    api_key=dict(type="str", no_log=True, fallback=(env_fallback, ["SN_API_KEY"])),
    token_cache=dict(type="path", default=DEFAULT_TOKEN_CACHE, fallback=(env_fallback, ["LABOPS_SERVICENOW_TOKEN_CACHE"])),
    validate_certs=dict(type="bool", default=True, fallback=(env_fallback, ["SN_VALIDATE_CERTS"])),
    ca_path=dict(type="path"),
    timeout=dict(type="int", default=30),
)
SERVICENOW_CONNECTION_MUTUALLY_EXCLUSIVE = [["password", "password_file"]]
SERVICENOW_CONNECTION_REQUIRED_TOGETHER = [["client_id", "client_secret"]]
SERVICENOW_CONNECTION_REQUIRED_ONE_OF = [["api_key", "client_id", "username"]]


def _ignore(message: str) -> None:
    """Default warning sink."""


def instance_url(instance: Any) -> str:
    """``acme`` -> ``https://acme.service-now.com``; ``acme.example.org`` -> ``https://acme.example.org``;
    a URL (``https://...``, ``http://`` for a simulator) is kept without its trailing slash."""
    text = str(instance or "").strip()
    if not text:
        raise ValidationError("servicenow: instance is required (a URL such as https://acme.service-now.com or a name such as acme)")
    if re.match(r"(?i)^https?://", text):
        return text.rstrip("/")
    if "/" in text or (":" in text and not re.match(r"^[A-Za-z0-9.-]+:\d+$", text)):
        raise ValidationError(f"servicenow: instance must be a URL or an instance name, got {text!r}")
    if re.match(r"^[A-Za-z0-9-]+$", text):
        return f"https://{text}.service-now.com"
    return f"https://{text}"


def query_value(value: Any) -> str:
    """A value for an encoded query: ``^`` is escaped as ``^^`` (ServiceNow's escape)."""
    return str(value).replace("^", "^^")


def eq(field: str, value: Any) -> str:
    """``field=value`` for an encoded query; an empty value is refused (it would match every empty field)."""
    if value is None or not str(value).strip():
        raise ValidationError(f"servicenow: {field} is empty: {EMPTY_KEY} (an empty {field}= matches every record whose field is empty)")
    return f"{field}={query_value(value)}"


_TERM_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_.]*)(=)(.*)$", re.DOTALL)


def check_query_keys(query: str) -> None:
    """Refuse an encoded query with an empty or blank value in a ``field=value`` term."""
    text = query.replace("^^", "\x00")
    for term in re.split(r"\^(?:OR|NQ)?", text):
        match = _TERM_RE.match(term.strip())
        if match and not match.group(3).replace("\x00", "^").strip():
            raise ValidationError(f"servicenow: the query term {term.strip()!r} has an empty value: {EMPTY_KEY} "
                                  f"(it would match every record whose {match.group(1)} is empty)", query=query)


class BearerAuth(AuthBase):
    """``Authorization: Bearer <token>`` on every request but the token endpoint's."""

    def __init__(self) -> None:
        self.token = None  # type: Optional[str]

    def __call__(self, request: Any) -> Any:
        if self.token and TOKEN_PATH not in str(request.url):
            request.headers["Authorization"] = "Bearer " + self.token
        return request


class ReferenceCache:
    """name -> sys_id of referenced records of one instance.

    Every pair is kept in memory; those of ``PERSISTED_REFERENCE_TABLES`` also on disk (``_secrets.SessionCache``: a 0600
    file in the 0700 ``directory``, ignored when it is not private to this user), merged under a lock so that parallel
    processes do not drop each other's entries. Names are not secrets; the cache only saves lookups, and a cache that
    cannot be written only costs them.
    """

    def __init__(self, directory: Optional[str], instance: str) -> None:
        self.store = SessionCache(directory, "servicenow-references", instance) if directory else None
        self.entries = {}  # type: dict
        if self.store is not None:
            self.entries.update(self._valid(self.store.load_entry()))

    @staticmethod
    def _valid(data: Any) -> dict:
        return {key: value for key, value in (data or {}).items() if isinstance(value, str) and SYS_ID_RE.match(value)}

    @staticmethod
    def key(table: str, name: Any) -> str:
        return f"{table}:{str(name).strip().lower()}"

    def get(self, table: str, name: Any) -> Optional[str]:
        return self.entries.get(self.key(table, name))

    def name_of(self, sys_id: str) -> Optional[tuple]:
        """(table, name key) of an entry holding ``sys_id``, or None."""
        for key, value in self.entries.items():
            if value == sys_id:
                table, name = key.split(":", 1)
                return table, name
        return None

    def put(self, table: str, name: Any, sys_id: str) -> None:
        if not name or not str(name).strip() or not SYS_ID_RE.match(str(sys_id or "")):
            return
        key = self.key(table, name)
        if self.entries.get(key) == sys_id:
            return
        self.entries[key] = sys_id
        if table in PERSISTED_REFERENCE_TABLES:
            self._persist({key: sys_id}, ())

    def forget_sys_id(self, sys_id: str) -> list:
        """Drop every entry that holds ``sys_id`` (it no longer exists); returns their keys."""
        keys = [key for key, value in self.entries.items() if value == sys_id]
        for key in keys:
            del self.entries[key]
        if keys:
            self._persist({}, keys)
        return keys

    def _persist(self, put: Mapping[str, str], drop: Any) -> None:
        if self.store is None:
            return
        with self.store.locked():
            data = self._valid(self.store.load_entry())
            data.update(put)
            for key in drop:
                data.pop(key, None)
            self.store.store_entry(data)


class ServiceNowClient:
    """Table API client. Not thread safe (one token, one reference cache)."""

    def __init__(self, http: HttpClient, *, username: Optional[str] = None, password: Optional[str] = None,
                 client_id: Optional[str] = None, client_secret: Optional[str] = None, grant_type: Optional[str] = None,
                 api_key: Optional[str] = None, token_cache: Optional[str] = DEFAULT_TOKEN_CACHE,
                 warn: Optional[Callable[[str], None]] = None, clock: Callable[[], float] = time.time) -> None:
        self.http = http
        self.base_url = http.base_url
        self.warn = warn or _ignore
        self.clock = clock
        self.username = username
        self._password = password
        self.client_id = client_id
        self._client_secret = client_secret
        self.references = ReferenceCache(token_cache or None, self.base_url)
        self.stale_references = []  # type: list  # (field, table, name) of the last write whose cached sys_id was stale
        self.token_cache = None  # type: Optional[SessionCache]
        self._token = None  # type: Optional[dict]
        for secret in (password, client_secret, api_key):
            self.register_secret(secret)
        if api_key:
            self.auth = "api_key"
            http.session.headers["x-sn-apikey"] = api_key
        elif client_id or client_secret:
            if not (client_id and client_secret):
                raise ValidationError("servicenow: OAuth needs both client_id and client_secret")
            self.grant_type = grant_type or ("password" if username else "client_credentials")
            if self.grant_type == "password" and not (username and password):
                raise ValidationError("servicenow: the OAuth password grant needs username and password (or password_file); "
                                      "set grant_type: client_credentials to authenticate as the OAuth client alone")
            self.auth = "oauth"
            self.bearer = BearerAuth()
            http.session.auth = self.bearer
            if token_cache:
                secrets = hashlib.sha256("\x00".join((client_secret, password or "")).encode("utf-8")).hexdigest()
                self.token_cache = SessionCache(token_cache, self.base_url, client_id, username or "", self.grant_type, secrets)
        elif username:
            if not password:
                raise ValidationError("servicenow: one of password or password_file is required with username "
                                      "(or SN_PASSWORD / SN_PASSWORD_FILE)")
            self.auth = "basic"
            http.session.auth = (username, password)
        else:
            raise ValidationError("servicenow: no credentials: set api_key, client_id and client_secret (OAuth), or username and "
                                  "password (Basic)")

    # -- plumbing -------------------------------------------------------------------------

    @property
    def request_count(self) -> int:
        """HTTP requests sent by this client (token requests and retries included)."""
        return self.http.sent

    def register_secret(self, value: Optional[str]) -> None:
        self.http.register_secret(value)

    def close(self) -> None:
        self.http.close()

    def record_link(self, table: str, sys_id: str) -> str:
        return f"{self.base_url}/nav_to.do?uri={table}.do?sys_id={sys_id}"

    @staticmethod
    def _table(table: str) -> str:
        if not isinstance(table, str) or not TABLE_RE.match(table):
            raise ValidationError(f"servicenow: invalid table name {table!r}")
        return table

    @staticmethod
    def _sys_id(sys_id: Any) -> str:
        text = str(sys_id or "").strip()
        if not SYS_ID_RE.match(text):
            raise ValidationError(f"servicenow: sys_id must be 32 lowercase hex characters, got {sys_id!r}")
        return text

    # -- OAuth ----------------------------------------------------------------------------

    def _valid(self, token: Optional[Mapping[str, Any]]) -> bool:
        return bool(token and token.get("access_token") and float(token.get("expires_at") or 0) > self.clock() + TOKEN_SKEW)

    def _use(self, token: Mapping[str, Any]) -> None:
        self._token = dict(token)
        self.register_secret(token.get("access_token"))
        self.register_secret(token.get("refresh_token"))
        self.bearer.token = token["access_token"]

    def _ensure_token(self) -> None:
        if self.auth != "oauth" or self._valid(self._token):
            return
        cached = self.token_cache.load_entry() if self.token_cache else None
        if self._valid(cached):
            self._use(cached)  # type: ignore[arg-type]
            return
        if self.token_cache is None:
            self._use(self._renew(self._token))
            return
        with self.token_cache.locked():
            cached = self.token_cache.load_entry()  # another process may have fetched one while we waited
            if self._valid(cached):
                self._use(cached)  # type: ignore[arg-type]
                return
            self._use(self._renew(cached or self._token))
            self.token_cache.store_entry(self._token or {})

    def _renew(self, old: Optional[Mapping[str, Any]]) -> dict:
        """A new token: the refresh_token grant when a refresh token is known and valid, else a fresh grant."""
        old = old or {}
        refresh = old.get("refresh_token")
        if refresh and float(old.get("refresh_expires_at") or 0) > self.clock():
            try:
                token = self._grant({"grant_type": "refresh_token", "refresh_token": refresh})
            except AuthError:
                pass  # revoked or expired refresh token: a fresh grant below
            else:
                if "refresh_token" not in token:  # the instance kept the refresh token it had issued
                    token.update(refresh_token=refresh, refresh_expires_at=old.get("refresh_expires_at"))
                return token
        if self.grant_type == "password":
            return self._grant({"grant_type": "password", "username": self.username, "password": self._password})
        return self._grant({"grant_type": "client_credentials"})

    def _grant(self, form: Mapping[str, Any]) -> dict:
        body = dict(form, client_id=self.client_id, client_secret=self._client_secret)
        response = self.http.request("POST", TOKEN_PATH, operation="token ({0} grant)".format(form["grant_type"]), form=body,
                                     expected=(200, 400, 401, 403), retry_unsafe=True)
        if response.status != 200:
            text = self._oauth_error(response)
            raise AuthError(f"{response.context}: HTTP {response.status}: {text} (check client_id, client_secret"
                            + (", username and password" if self.grant_type == "password" else "") + ")",
                            platform=PLATFORM, status=response.status, server_text=text)
        data = response.json()
        if not isinstance(data, dict) or not data.get("access_token"):
            raise UnexpectedResponseError(f"{response.context}: the reply has no access_token", platform=PLATFORM, status=response.status)
        now = self.clock()
        token = {"access_token": str(data["access_token"]), "expires_at": now + float(data.get("expires_in") or 1800)}  # type: dict[str, Any]
        if data.get("refresh_token"):
            # the reply does not say how long the refresh token lives; ServiceNow's default is 100 days
            token.update(refresh_token=str(data["refresh_token"]), refresh_expires_at=now + 100 * 86400)
        self.register_secret(token["access_token"])
        self.register_secret(token.get("refresh_token"))
        return token

    def _oauth_error(self, response: HttpResponse) -> str:
        try:
            data = response.json()
        except LabopsError:
            return truncate(self.http.scrub(response.text)) or "(empty body)"
        if isinstance(data, dict) and "error" in data and not isinstance(data["error"], dict):
            text = "{0}: {1}".format(data.get("error"), data.get("error_description") or "")
        else:
            text = self._envelope_text(data)[0]
        return truncate(self.http.scrub(text.strip(": ")))

    def _forget_token(self) -> None:
        """The instance refused the token: drop it here and in the cache (only if the cache still holds it)."""
        rejected = (self._token or {}).get("access_token")
        if self.token_cache is not None and rejected:
            self.token_cache.forget_entry(lambda entry: entry.get("access_token") == rejected)
        if self._token is not None:
            self._token = dict(self._token, access_token=None, expires_at=0)
        self.bearer.token = None

    # -- requests -------------------------------------------------------------------------

    @staticmethod
    def _envelope_text(data: Any) -> tuple:
        error = data.get("error") if isinstance(data, dict) else None
        if isinstance(error, dict):
            return str(error.get("message") or ""), str(error.get("detail") or "")
        if isinstance(error, str):
            return error, str(data.get("error_description") or "") if isinstance(data, dict) else ""
        return "", ""

    def _error(self, response: HttpResponse, operation_hint: str = "") -> LabopsError:
        status = response.status
        try:
            message, detail = self._envelope_text(response.json())
        except LabopsError:
            message, detail = truncate(response.text), ""
        message = truncate(self.http.scrub(message)) or "(empty body)"
        detail = truncate(self.http.scrub(detail))
        text = f"{response.context}: HTTP {status}: {message}" + (f": {detail}" if detail else "")
        hint = ""
        if status == 401:
            hint = {"api_key": "check api_key", "oauth": "check client_id, client_secret and the OAuth user",
                    "basic": "check username and password"}[self.auth]
        elif status == 403 and "mandatory" in detail.lower():
            hint = "the instance's data policy needs these fields in the same write"
        elif status == 403:
            hint = "the account's roles or ACLs do not allow this operation"
        if hint:
            text = f"{text} ({hint})"
        details = dict(platform=PLATFORM, status=status, error_message=message, error_detail=detail or None)
        error_class = {400: ValidationError, 401: AuthError, 403: PermissionDenied, 404: NotFoundError}.get(status, UnexpectedResponseError)
        return error_class(text + operation_hint, **details)

    def _call(self, method: str, path: str, *, operation: str, params: Optional[Mapping[str, Any]] = None, body: Any = None,
              expected: tuple = (200,), retry_unsafe: bool = False) -> HttpResponse:
        """One Table API request; with OAuth one re-authentication when the token is refused (401)."""
        accepted = tuple(expected) + tuple(s for s in (400, 401, 403, 404) if s not in expected)
        for attempt in (1, 2):
            self._ensure_token()
            response = self.http.request(method, path, operation=operation, params=dict(params or {}) or None, json=body,
                                         expected=accepted, retry_unsafe=retry_unsafe)
            if response.status == 401 and self.auth == "oauth" and attempt == 1:
                self._forget_token()
                continue
            if response.status in expected:
                return response
            raise self._error(response)
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _result(response: HttpResponse) -> Any:
        data = response.json()
        if not isinstance(data, dict) or "result" not in data:
            raise UnexpectedResponseError(f"{response.context}: HTTP {response.status}: the reply has no 'result'",
                                          platform=PLATFORM, status=response.status)
        return data["result"]

    @staticmethod
    def _read_params(fields: Any, display_value: Any) -> dict:
        params = {"sysparm_exclude_reference_link": "true"}
        if fields:
            params["sysparm_fields"] = fields if isinstance(fields, str) else ",".join(fields)
        if display_value:
            params["sysparm_display_value"] = "all" if display_value == "all" else "true"
        return params

    # -- table API ------------------------------------------------------------------------

    def list_page(self, table: str, query: str = "", *, fields: Any = None, limit: Optional[int] = None, offset: int = 0,
                  display_value: Any = False) -> tuple:
        """One page and ``X-Total-Count`` (None when the instance sent none)."""
        params = self._read_params(fields, display_value)
        if query:
            params["sysparm_query"] = query
        if limit is not None:
            params["sysparm_limit"] = str(int(limit))
        if offset:
            params["sysparm_offset"] = str(int(offset))
        table = self._table(table)
        response = self._call("GET", TABLE_PATH + table, operation=f"list {table}", params=params)
        rows = self._result(response)
        if not isinstance(rows, list):
            raise UnexpectedResponseError(f"{response.context}: 'result' is not a list", platform=PLATFORM)
        total = response.headers.get("X-Total-Count")
        return rows, (int(total) if total is not None and str(total).isdigit() else None)

    def list(self, table: str, query: str = "", *, fields: Any = None, limit: Optional[int] = None, offset: int = 0,
             display_value: Any = False) -> list:
        return self.list_page(table, query, fields=fields, limit=limit, offset=offset, display_value=display_value)[0]

    def list_all(self, table: str, query: str = "", *, fields: Any = None, page_size: int = DEFAULT_PAGE_SIZE,
                 display_value: Any = False) -> List[Any]:
        """Every matching row, paged by ``sysparm_offset`` until ``X-Total-Count`` (or a short page).

        Without an ORDERBY in ``query`` the rows are ordered by sys_id so that pages do not shift.
        """
        if "ORDERBY" not in query:
            query = f"{query}^ORDERBYsys_id" if query else "ORDERBYsys_id"
        rows = []  # type: List[Any]
        while True:
            page, total = self.list_page(table, query, fields=fields, limit=page_size, offset=len(rows), display_value=display_value)
            rows.extend(page)
            if not page or len(page) < page_size or (total is not None and len(rows) >= total):
                return rows

    def get(self, table: str, sys_id: str, *, fields: Any = None, display_value: Any = False) -> Optional[dict]:
        table, sys_id = self._table(table), self._sys_id(sys_id)
        response = self._call("GET", f"{TABLE_PATH}{table}/{sys_id}", operation=f"get {table}",
                              params=self._read_params(fields, display_value), expected=(200, 404))
        if response.status == 404:
            self._forget_stale(sys_id)
            return None
        return self._result(response)

    def create(self, table: str, values: Mapping[str, Any], *, input_display_value: bool = False, fields: Any = None,
               display_value: Any = False) -> dict:
        """POST -> the stored record (201). A lost reply raises AmbiguousWriteError: it is never re-sent here."""
        table = self._table(table)
        params = self._read_params(self._with_cached_references(fields, values, display_value), display_value)
        if input_display_value:
            params["sysparm_input_display_value"] = "true"
        response = self._call("POST", TABLE_PATH + table, operation=f"create {table}", params=params, body=_strings(values),
                              expected=(201, 200))
        return self._check_references(table, values, self._result(response), fields, display_value)

    def update(self, table: str, sys_id: str, values: Mapping[str, Any], *, input_display_value: bool = False, fields: Any = None,
               display_value: Any = False) -> dict:
        """PATCH -> the stored record. Retried after a lost reply only when it adds no journal entry (work notes, comments)."""
        table, sys_id = self._table(table), self._sys_id(sys_id)
        params = self._read_params(self._with_cached_references(fields, values, display_value), display_value)
        if input_display_value:
            params["sysparm_input_display_value"] = "true"
        body = _strings(values)
        journal = any(body.get(name) for name in ("work_notes", "comments"))
        try:
            response = self._call("PATCH", f"{TABLE_PATH}{table}/{sys_id}", operation=f"update {table}", params=params, body=body,
                                  retry_unsafe=not journal)
        except NotFoundError:
            self._forget_stale(sys_id)
            raise
        return self._check_references(table, values, self._result(response), fields, display_value)

    def delete(self, table: str, sys_id: str) -> bool:
        """True when deleted, False when there was no such record (404)."""
        table, sys_id = self._table(table), self._sys_id(sys_id)
        response = self._call("DELETE", f"{TABLE_PATH}{table}/{sys_id}", operation=f"delete {table}", expected=(204, 200, 404))
        if response.status == 404:
            self._forget_stale(sys_id)
        return response.status != 404

    def find_one(self, table: str, query: str, *, fields: Any = None, display_value: Any = False) -> Optional[dict]:
        """The first row of ``query`` (``sysparm_limit=1``), or None. An empty value in a ``field=value`` term is refused."""
        if not query or not query.strip():
            raise ValidationError(f"servicenow: find_one on {table} needs a query: {EMPTY_KEY}")
        check_query_keys(query)
        rows = self.list(table, query, fields=fields, limit=1, display_value=display_value)
        return rows[0] if rows else None

    def resolve_reference(self, table: str, value: Any) -> str:
        """The sys_id of ``value`` in ``table``: a sys_id passes through, else the reference cache, else a lookup by name."""
        text = str(value or "").strip()
        if SYS_ID_RE.match(text):
            return text
        if not text:
            raise ValidationError(f"servicenow: an empty reference to {table}: {EMPTY_KEY}")
        known = self.references.get(table, text)
        if known is not None:
            return known
        for field in REFERENCE_KEYS.get(table, ("name",)):
            row = self.find_one(table, eq(field, text), fields="sys_id")
            if row is not None:
                self.references.put(table, text, row["sys_id"])
                return row["sys_id"]
        raise NotFoundError(f"servicenow: no {table} record named {text!r} (looked up by {' then '.join(REFERENCE_KEYS.get(table, ('name',)))})",
                            platform=PLATFORM, table=table, value=text)

    def known_reference(self, table: str, name: Any) -> Optional[str]:
        """The cached sys_id of ``name`` in ``table`` (no request), or None."""
        return self.references.get(table, name)

    def remember_reference(self, table: str, name: str, sys_id: str) -> None:
        """Teach the reference cache a name -> sys_id pair already known (e.g. a record just created or read)."""
        self.references.put(table, name, sys_id)

    def _forget_stale(self, sys_id: str) -> List[Any]:
        keys = self.references.forget_sys_id(sys_id)
        if keys:
            self.warn("servicenow: the cached sys_id {0} ({1}) no longer exists; forgotten, the name is looked up again".format(
                sys_id, ", ".join(keys)))
        return keys

    def _with_cached_references(self, fields: Any, values: Mapping[str, Any], display_value: Any) -> Any:
        """``fields`` plus the fields that carry a cached sys_id, so that the reply shows whether they still point somewhere."""
        if not fields or display_value != "all":
            return fields
        names = [name.strip() for name in (fields.split(",") if isinstance(fields, str) else fields)]
        extra = [field for field, value in values.items() if isinstance(value, str) and self.references.name_of(value) and field not in names]
        return names + extra if extra else fields

    def _check_references(self, table: str, values: Mapping[str, Any], row: Any, fields: Any, display_value: Any) -> Any:
        """After a write read back with display values: a cached sys_id whose reference shows no display value points
        at no record (deleted, or deleted and re-created, since it was cached). Forget it, look the name up again and
        send those fields once more (1 lookup + 1 PATCH, only then); ``stale_references`` lists them."""
        self.stale_references = []
        if not isinstance(row, dict):
            return row
        for field, value in values.items():
            shown = row.get(field)
            if not (isinstance(value, str) and SYS_ID_RE.match(value) and isinstance(shown, dict) and "display_value" in shown):
                continue
            named = self.references.name_of(value)
            if named is not None and shown.get("value") == value and not shown.get("display_value"):
                self.references.forget_sys_id(value)
                self.stale_references.append((field, named[0], named[1]))
        if not self.stale_references:
            return row
        stale = list(self.stale_references)
        repaired = {}  # type: dict
        for field, ref_table, name in stale:
            try:
                repaired[field] = self.resolve_reference(ref_table, name)
            except NotFoundError:
                repaired[field] = ""  # the name is gone too: the reference is cleared rather than left dangling
        sys_id = row.get("sys_id")
        sys_id = sys_id.get("value") if isinstance(sys_id, dict) else sys_id
        self.warn("servicenow: {0} {1}: {2} pointed at a record that no longer exists (a stale cached sys_id); sent again".format(
            table, _raw_value(row.get("number")) or sys_id, ", ".join(sorted(repaired))))
        fixed = self.update(table, str(sys_id), repaired, fields=fields, display_value=display_value)
        self.stale_references = stale
        return fixed


def _raw_value(value: Any) -> Any:
    return value.get("value") if isinstance(value, dict) else value


def _strings(values: Mapping[str, Any]) -> dict:
    """ServiceNow stores strings: booleans as ``true``/``false``, None as ``""``."""
    result = {}
    for key, value in values.items():
        if isinstance(value, bool):
            result[key] = "true" if value else "false"
        elif value is None:
            result[key] = ""
        else:
            result[key] = value if isinstance(value, str) else str(value)
    return result


def connection_password(params: Mapping[str, Any], warn: Optional[Callable[[str], None]] = None) -> Optional[str]:
    """O(password) (E(SN_PASSWORD)) or the content of O(password_file) (E(SN_PASSWORD_FILE)); None when neither is set."""
    password, password_file = params.get("password"), params.get("password_file")
    if password and password_file:
        raise ValidationError("servicenow: password and password_file are mutually exclusive (set as options or through "
                              "SN_PASSWORD and SN_PASSWORD_FILE); keep one")
    if password_file:
        return read_secret_file(password_file, "password_file", warn, platform=PLATFORM)
    return password or None


def client_from_params(params: Mapping[str, Any], http: Optional[HttpClient] = None, warn: Optional[Callable[[str], None]] = None,
                       register_secret: Optional[Callable[[str], None]] = None) -> ServiceNowClient:
    """The client from the connection options (``SERVICENOW_CONNECTION_ARGSPEC``).

    ``register_secret`` (a module passes ``module.no_log_values.add``) receives a password read from O(password_file).
    """
    password = connection_password(params, warn)
    if password and params.get("password_file") and register_secret is not None:
        register_secret(password)
    if http is None:
        http = HttpClient(PLATFORM, instance_url(params.get("instance")), validate_certs=params.get("validate_certs", True),
                          ca_path=params.get("ca_path"), timeout=params.get("timeout") or 30)
    return ServiceNowClient(http, username=params.get("username"), password=password, client_id=params.get("client_id"),
                            client_secret=params.get("client_secret"), grant_type=params.get("grant_type"),
                            api_key=params.get("api_key"), token_cache=params.get("token_cache", DEFAULT_TOKEN_CACHE), warn=warn)
