# -*- coding: utf-8 -*-
# Copyright: (c) 2025, labops.itsm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""OTOBO / Znuny GenericTicketConnectorREST adapter on top of ``_http.HttpClient``.

Plain values in, plain (normalized) dicts out. Implements the contract in
``contracts/otobo.md``: HTTP 200 + ``Error`` is a failure, ids are coerced to int,
an empty search is ``{}``, credentials for GET operations go in the query string,
DynamicField criteria are never sent on the GET search route.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import os
import re
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional
from urllib.parse import quote

from ansible.module_utils.basic import env_fallback

from ansible_collections.labops.itsm.plugins.module_utils import _secrets
from ansible_collections.labops.itsm.plugins.module_utils._errors import (
    AmbiguousWriteError,
    AuthError,
    LabopsError,
    NotFoundError,
    PermissionDenied,
    UnexpectedResponseError,
    ValidationError,
)
from ansible_collections.labops.itsm.plugins.module_utils._http import AMBIGUOUS_SUFFIX, EMPTY_BODY, HttpClient
from ansible_collections.labops.itsm.plugins.module_utils._platform import validate_correlation_key
from ansible_collections.labops.itsm.plugins.module_utils._secrets import SessionCache

PLATFORM = "otobo"
DEFAULT_WEBSERVICE = "GenericTicketConnectorREST"
DEFAULT_PATH_PREFIX = "/otobo"
# One SessionID per (server, web service, agent) shared by the task runs of a controller user: OTOBO's web
# service cannot remove a session, so a session per run would pile up until its 2-hour idle timeout.
DEFAULT_SESSION_CACHE = "~/.cache/labops.itsm/otobo-sessions"
MARKER_FORMAT = " [ck:{0}]"
# OTOBO stores Title in varchar(191) and cuts longer titles without an error (observed on 11.0).
TITLE_MAX_LENGTH = 191
ELLIPSIS = "\u2026"
# more verified hits than this means the search criteria were ignored by the server
MAX_VERIFY = 25
# Tickets per TicketGet when reading search results: 25 URLs stay short (IDs up to 10 digits)
# and a chunk that hits one unreadable ticket costs at most 25 single reads.
GET_CHUNK = 25

# Connection options shared by every OTOBO module (documented in doc_fragments/otobo.py).
OTOBO_CONNECTION_ARGSPEC = dict(
    url=dict(type="str", required=True, fallback=(env_fallback, ["OTOBO_URL"])),
    webservice=dict(type="str", default=DEFAULT_WEBSERVICE),
    path_prefix=dict(type="str", default=DEFAULT_PATH_PREFIX),
    username=dict(type="str", required=True, fallback=(env_fallback, ["OTOBO_USERNAME"])),
    # One of password / password_file (OTOBO_CONNECTION_MUTUALLY_EXCLUSIVE, OTOBO_CONNECTION_REQUIRED_ONE_OF).
    password=dict(type="str", no_log=True, fallback=(env_fallback, ["OTOBO_PASSWORD"])),
    password_file=dict(type="path", no_log=False, fallback=(env_fallback, ["OTOBO_PASSWORD_FILE"])),
    use_session=dict(type="bool", default=True),
    session_cache=dict(type="path", default=DEFAULT_SESSION_CACHE, fallback=(env_fallback, ["LABOPS_OTOBO_SESSION_CACHE"])),
    validate_certs=dict(type="bool", default=True, fallback=(env_fallback, ["OTOBO_VALIDATE_CERTS"])),
    ca_path=dict(type="path"),
    timeout=dict(type="int", default=30),
    search_route=dict(
        type="dict",
        options=dict(
            method=dict(type="str", default="POST", choices=["POST", "PATCH", "PUT"]),
            path=dict(type="str", required=True),
        ),
    ),
    correlation_field=dict(type="str"),
)
# Module-level constraints of OTOBO_CONNECTION_ARGSPEC (AnsibleModule / ArgumentSpecValidator arguments);
# client_from_params checks the same, with the environment variables named.
OTOBO_CONNECTION_MUTUALLY_EXCLUSIVE = [["password", "password_file"]]
OTOBO_CONNECTION_REQUIRED_ONE_OF = [["password", "password_file"]]

# -- state types ---------------------------------------------------------------------------

DEFAULT_STATE_TYPES = {
    "new": "new",
    "open": "open",
    "closed successful": "closed",
    "closed unsuccessful": "closed",
    "removed": "removed",
    "pending reminder": "pending reminder",
    "pending auto close+": "pending auto",
    "pending auto close-": "pending auto",
    "merged": "merged",
}
OPEN_STATE_TYPES = ("new", "open", "pending reminder", "pending auto")
CLOSED_STATE_TYPES = ("closed",)
OPEN_STATES = ("new", "open", "pending reminder", "pending auto close+", "pending auto close-")


def state_type(name: Optional[str], known: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """State name -> state type (``closed``, ``new``, ``open``, ``pending reminder``...).

    Unknown names are classified by their prefix (``closed ...`` → closed), else None.
    """
    if not name:
        return None
    lowered = name.strip().lower()
    table = dict(DEFAULT_STATE_TYPES)
    if known:
        table.update((k.lower(), v) for k, v in known.items())
    if lowered in table:
        return table[lowered]
    for prefix, kind in (("closed", "closed"), ("pending auto", "pending auto"), ("pending", "pending reminder")):
        if lowered.startswith(prefix):
            return kind
    return None


def is_closed_state(name: Optional[str], known: Optional[Mapping[str, str]] = None) -> bool:
    return state_type(name, known) in CLOSED_STATE_TYPES


def is_open_state_type(kind: Optional[str]) -> bool:
    return kind in OPEN_STATE_TYPES


# -- value helpers --------------------------------------------------------------------------


def to_int(value: Any) -> Optional[int]:
    """OTOBO ids come as numbers or numeric strings; '' / None mean unset."""
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise UnexpectedResponseError(f"otobo: expected a numeric id, got {value!r}")


def marker(key: str) -> str:
    return MARKER_FORMAT.format(key)


def fit_title(title: str, suffix: str = "", limit: int = TITLE_MAX_LENGTH) -> str:
    """``title + suffix`` in at most ``limit`` characters: the title part is shortened (ending in an
    ellipsis) so that the suffix survives OTOBO's silent cut at 191 characters."""
    title = title.strip()
    if len(title) + len(suffix) <= limit:
        return title + suffix
    room = max(limit - len(suffix) - len(ELLIPSIS), 0)
    return title[:room].rstrip() + ELLIPSIS + suffix


def title_with_marker(title: str, key: Optional[str]) -> str:
    """``<title> [ck:<key>]`` within OTOBO's 191 characters, so the desired title equals the stored one.

    An existing marker for the same key is not repeated; an over-long title is shortened, never the marker.
    """
    title = title.strip()
    if not key:
        return fit_title(title)
    suffix = marker(key)
    if title.endswith(suffix.strip()):
        title = title[:-len(suffix.strip())].rstrip()
    return fit_title(title, suffix)


TICKET_FIELDS = {
    "title": "Title",
    "queue": "Queue",
    "priority": "Priority",
    "state": "State",
    "type": "Type",
    "customer_user": "CustomerUser",
    "customer_id": "CustomerID",
    "owner": "Owner",
    "responsible": "Responsible",
    "lock": "Lock",
    "service": "Service",
    "sla": "SLA",
    "pending_time": "PendingTime",
}
ARTICLE_FIELDS = {
    "subject": "Subject",
    "body": "Body",
    "content_type": "ContentType",
    "communication_channel": "CommunicationChannel",
    "sender_type": "SenderType",
    "is_visible_for_customer": "IsVisibleForCustomer",
    "from": "From",
    "time_unit": "TimeUnit",
}


def _map_keys(values: Optional[Mapping[str, Any]], table: Mapping[str, str], what: str) -> dict:
    result = {}
    for key, value in (values or {}).items():
        if value is None:
            continue
        if key not in table:
            raise ValidationError("unknown {0} field {1!r}; known: {2}".format(what, key, ", ".join(sorted(table))))
        if isinstance(value, bool):
            value = int(value)
        result[table[key]] = value
    return result


def dynamic_field_list(dynamic_fields: Optional[Mapping[str, Any]]) -> list:
    return [{"Name": name, "Value": value} for name, value in sorted((dynamic_fields or {}).items())]


def build_ticket_payload(ticket: Optional[Mapping[str, Any]] = None, article: Optional[Mapping[str, Any]] = None,
                         dynamic_fields: Optional[Mapping[str, Any]] = None) -> dict:
    """The JSON body (without credentials) of TicketCreate/TicketUpdate."""
    payload = {}  # type: dict[str, Any]
    ticket_part = _map_keys(ticket, TICKET_FIELDS, "ticket")
    article_part = _map_keys(article, ARTICLE_FIELDS, "article")
    if ticket_part:
        payload["Ticket"] = ticket_part
    if article_part:
        payload["Article"] = article_part
    if dynamic_fields:
        payload["DynamicField"] = dynamic_field_list(dynamic_fields)
    return payload


def normalize_article(raw: Mapping[str, Any]) -> dict:
    return {
        "article_id": to_int(raw.get("ArticleID")),
        "article_number": to_int(raw.get("ArticleNumber")),
        "subject": raw.get("Subject"),
        "body": raw.get("Body"),
        "content_type": raw.get("ContentType"),
        "sender_type": raw.get("SenderType"),
        "communication_channel_id": to_int(raw.get("CommunicationChannelID")),
        "is_visible_for_customer": bool(to_int(raw.get("IsVisibleForCustomer"))),
        "from": raw.get("From"),
        "created": raw.get("CreateTime"),
    }


def _ticket_list(data: Mapping[str, Any]) -> list:
    """TicketGet's ``Ticket``: a list, a single object, or missing."""
    tickets = data.get("Ticket") or []
    return [tickets] if isinstance(tickets, dict) else list(tickets)


def normalize_ticket(raw: Mapping[str, Any]) -> dict:
    """TicketGet's ticket object → the collection's record (ids int, DFs as a dict)."""
    dynamic = {}
    for item in raw.get("DynamicField") or []:
        if isinstance(item, dict) and item.get("Name"):
            dynamic[item["Name"]] = item.get("Value")
    articles = raw.get("Article") or []
    if isinstance(articles, dict):
        articles = [articles]
    state_name = raw.get("State")
    return {
        "ticket_id": to_int(raw.get("TicketID")),
        "ticket_number": None if raw.get("TicketNumber") is None else str(raw.get("TicketNumber")),
        "title": raw.get("Title"),
        "state": state_name,
        "state_type": raw.get("StateType") or state_type(state_name),
        "priority": raw.get("Priority"),
        "queue": raw.get("Queue"),
        "type": raw.get("Type"),
        "owner": raw.get("Owner"),
        "responsible": raw.get("Responsible"),
        "lock": raw.get("Lock"),
        "customer_user": raw.get("CustomerUserID"),
        "customer_id": raw.get("CustomerID"),
        "created": raw.get("Created"),
        "changed": raw.get("Changed"),
        "dynamic_fields": dynamic,
        "articles": [normalize_article(a) for a in articles if isinstance(a, dict)],
    }


def _error_class(code: str) -> type:
    suffix = code.rsplit(".", 1)[-1]
    if suffix in ("AuthFail", "SessionInvalid"):
        return AuthError
    if suffix == "AccessDenied":
        return PermissionDenied
    if suffix in ("MissingParameter", "InvalidParameter", "WrongStructure"):
        return ValidationError
    if suffix in ("NotValidTicketID", "NotTicketData"):
        return NotFoundError
    return UnexpectedResponseError


# (text in OTOBO's error message, what to tell the user)
_ERROR_HINTS = (
    ("Type parameter is required by sysconfig option",
     ("this OTOBO requires a ticket type (SysConfig Ticket::Type is on): set the ticket type, e.g. otobo_ticket's "
      "type, or ticket_types in ims_sop's platform_options / the inventory's itsm_platform_options")),
    ("Type parameter is invalid",
     ("the ticket type does not exist in OTOBO (names match exactly): create it under Admin > Types or map the "
      "entity to an existing type with ticket_types in platform_options")),
    ("Queue parameter is invalid", "no queue of that name exists in OTOBO: check the queue name (it must match exactly)"),
)


def _error_hint(text: str) -> Optional[str]:
    return next((hint for needle, hint in _ERROR_HINTS if needle in text), None)


# HTTP 500 bodies of the OTOBO transport layer: the operation never ran, nothing was written.
_TRANSPORT_REJECTIONS = (
    "Error while determine Operation",
    "Error while decoding request content",
    "Unsupported request content structure",
)
_NO_ROUTE = "Error while determine Operation"
# OTOBO's own 500 fault when the ticket write failed before anything was stored (e.g. a Queue name in the
# wrong case passes validation and then fails): a definite refusal, never an ambiguous write.
_WRITE_REFUSED = ("Ticket could not be created", "Ticket could not be updated")
# server_error_text() of an Error envelope: "<Operation>.<Code>: <message>"
_ENVELOPE_TEXT = re.compile(r"^[A-Za-z]+\.[A-Za-z]+: ")


class OtoboClient:
    """GenericTicketConnectorREST client. Not thread safe (one session id)."""

    def __init__(
        self,
        http: HttpClient,
        *,
        username: str,
        password: str,
        webservice: str = DEFAULT_WEBSERVICE,
        use_session: bool = True,
        session_cache: Optional[str] = None,
        search_route: Optional[Mapping[str, str]] = None,
        correlation_field: Optional[str] = None,
        path_prefix: str = DEFAULT_PATH_PREFIX,
        warn: Optional[Callable[[str], None]] = None,
    ) -> None:
        if not username or not password:
            raise ValidationError("otobo: username and password are required")
        self.http = http
        self.username = username
        self._password = password
        self.use_session = use_session
        self.correlation_field = correlation_field or None
        self.search_route = self._check_search_route(search_route)
        prefix = "/" + (path_prefix or DEFAULT_PATH_PREFIX).strip("/")
        self.path_prefix = prefix
        self.base_path = "{0}/nph-genericinterface.pl/Webservice/{1}".format(prefix, quote(webservice, safe=""))
        self.session_id = None  # type: Optional[str]
        # Warnings go straight to the caller (a module passes module.warn); nothing to drain afterwards.
        self.warn = warn or _ignore_warning
        self.webservice = webservice
        http.register_secret(password)
        self.session_cache = None  # type: Optional[SessionCache]
        if use_session and session_cache:
            password_hash = hashlib.sha256(password.encode("utf-8")).hexdigest()
            self.session_cache = SessionCache(session_cache, http.base_url, self.base_path, username, password_hash)
        if "/nph-genericinterface.pl" in http.base_url:
            raise ValidationError(
                "otobo: url must name only scheme, host and port (e.g. https://otobo.example), not the web service "
                "path; the path is built from path_prefix and webservice")

    # -- plumbing -----------------------------------------------------------------------

    @staticmethod
    def _check_search_route(route: Optional[Mapping[str, str]]) -> Optional[dict]:
        if not route:
            return None
        method = str(route.get("method") or "POST").upper()
        path = str(route.get("path") or "")
        if method == "GET":
            raise ValidationError("otobo: search_route must use a method with a body (POST); GET drops DynamicField criteria")
        if not path.startswith("/"):
            raise ValidationError(f"otobo: search_route.path must start with '/', got {path!r}")
        return {"method": method, "path": path}

    def _credentials(self) -> dict:
        if self.use_session:
            if not self.session_id:
                self._reuse_cached_session() or self.login()
            return {"SessionID": self.session_id}
        return {"UserLogin": self.username, "Password": self._password}

    def _reuse_cached_session(self) -> Optional[str]:
        cached = self.session_cache.load() if self.session_cache else None
        if cached:
            self.session_id = cached
            self.http.register_secret(cached)
        return cached

    def login(self) -> str:
        """SessionCreate; the SessionID is kept and reused."""
        body = {"UserLogin": self.username, "Password": self._password}
        data = self._send("SessionCreate", "POST", "/Session", body=body, retry_unsafe=True)
        session_id = data.get("SessionID")
        if not session_id:
            raise UnexpectedResponseError("otobo SessionCreate: reply has no SessionID", platform=PLATFORM)
        self.session_id = str(session_id)
        self.http.register_secret(self.session_id)
        if self.session_cache:
            self.session_cache.store(self.session_id)
        return self.session_id

    def _call(self, operation: str, method: str, route: str, *, params: Optional[dict] = None,
              body: Optional[dict] = None, retry_unsafe: bool = False) -> dict:
        """One operation with credentials; one re-login when a session was rejected."""
        try:
            return self._call_once(operation, method, route, params, body, retry_unsafe)
        except AuthError:
            if not self.use_session or self.session_id is None:
                raise
            if self.session_cache:
                self.session_cache.forget(self.session_id)
            self.session_id = None
            return self._call_once(operation, method, route, params, body, retry_unsafe)

    def _call_once(self, operation: str, method: str, route: str, params: Optional[dict],
                   body: Optional[dict], retry_unsafe: bool) -> dict:
        credentials = self._credentials()
        params = dict(params or {})
        if method == "GET":
            params.update(credentials)
            body = None
        else:
            body = dict(body or {})
            body.update(credentials)
        return self._send(operation, method, route, params=params or None, body=body, retry_unsafe=retry_unsafe)

    def _send(self, operation: str, method: str, route: str, *, params: Optional[dict] = None,
              body: Optional[dict] = None, retry_unsafe: bool = False) -> dict:
        path = self.base_path + route
        try:
            response = self.http.request(method, path, operation=operation, params=params, json=body,
                                         retry_unsafe=retry_unsafe, status_retry_caps={500: 1})
        except (AmbiguousWriteError, NotFoundError) as exc:
            raise self._not_applied(exc) or exc
        data = response.json()
        if not isinstance(data, dict):
            raise UnexpectedResponseError(f"{response.context}: expected a JSON object, got {type(data).__name__}",
                                          platform=PLATFORM, status=response.status)
        if "Error" in data:
            raise self._envelope_error(data["Error"], response.context)
        return data

    def _not_applied(self, exc: LabopsError) -> Optional[LabopsError]:
        """HTTP replies that prove the operation never ran → UnexpectedResponseError (not ambiguous, not 'not found').

        OTOBO itself never answers 404; an empty HTTP 500 means an unknown web service and the transport's
        own 500 texts (no route, bad JSON, bad structure) come before any operation runs (contract §1, §3).
        """
        status = exc.details.get("status")
        text = str(exc)
        if text.endswith(AMBIGUOUS_SUFFIX):
            text = text[:-len(AMBIGUOUS_SUFFIX)]
        server_text = exc.details.get("server_text") or ""
        if status == 404:
            hint = "no OTOBO web service answers at this URL: check url and path_prefix"
        elif status == 500 and server_text == EMPTY_BODY:
            hint = f"OTOBO answers an empty HTTP 500 for an unknown or invalid web service: check webservice {self.webservice!r}"
        elif status == 500 and _NO_ROUTE in server_text:
            hint = "the web service has no such route for this method: check webservice, path_prefix and search_route"
        elif status == 500 and any(marker_text in server_text for marker_text in _TRANSPORT_REJECTIONS):
            hint = "rejected by the OTOBO transport before the operation ran"
        elif status and status >= 500 and _ENVELOPE_TEXT.match(server_text):
            # An OTOBO Error envelope is the operation's own answer, whatever status a proxy put around it.
            code = server_text.split(":", 1)[0]
            return _error_class(code)(f"{text} (OTOBO refused the operation; nothing was written)",
                                      error_code=code, **exc.details)
        elif status == 500 and any(marker_text in server_text for marker_text in _WRITE_REFUSED):
            return ValidationError(
                f"{text} (OTOBO refused the write; nothing was written. Names must match OTOBO exactly: a Queue name in "
                "the wrong case, e.g. 'raw' for 'Raw', passes OTOBO's checks and then fails like this)",
                **exc.details)
        else:
            return None
        return UnexpectedResponseError(f"{text} ({hint}; nothing was written)", **exc.details)

    def _envelope_error(self, error: Any, context: str) -> Exception:
        error = error if isinstance(error, dict) else {"ErrorMessage": error}
        code = str(error.get("ErrorCode") or "UnknownError")
        text = self.http.scrub(error.get("ErrorMessage") or "")
        message = f"{context}: {code}: {text}"
        hint = _error_hint(text)
        if hint:
            message = f"{message} ({hint})"
        return _error_class(code)(message, platform=PLATFORM, error_code=code)

    # -- tickets ------------------------------------------------------------------------

    def create_ticket(self, ticket: Mapping[str, Any], article: Mapping[str, Any],
                      dynamic_fields: Optional[Mapping[str, Any]] = None) -> dict:
        """TicketCreate. Never retried after it may have reached the server (AmbiguousWriteError)."""
        payload = build_ticket_payload(ticket, article, dynamic_fields)
        if "Ticket" not in payload or "Article" not in payload:
            raise ValidationError("otobo TicketCreate needs ticket and article values")
        data = self._call("TicketCreate", "POST", "/Ticket", body=payload)
        return self._write_result(data)

    def update_ticket(self, ticket_id: Any, ticket: Optional[Mapping[str, Any]] = None,
                      article: Optional[Mapping[str, Any]] = None,
                      dynamic_fields: Optional[Mapping[str, Any]] = None) -> dict:
        """TicketUpdate (PATCH). Field-only updates are idempotent and retried; adding an article is not."""
        ticket_id = self._ticket_id(ticket_id)
        payload = build_ticket_payload(ticket, article, dynamic_fields)
        data = self._call("TicketUpdate", "PATCH", f"/Ticket/{ticket_id}", body=payload,
                          retry_unsafe="Article" not in payload)
        return self._write_result(data)

    @staticmethod
    def _write_result(data: Mapping[str, Any]) -> dict:
        return {
            "ticket_id": to_int(data.get("TicketID")),
            "ticket_number": None if data.get("TicketNumber") is None else str(data.get("TicketNumber")),
            "article_id": to_int(data.get("ArticleID")),
        }

    @staticmethod
    def _ticket_id(ticket_id: Any) -> int:
        try:
            value = int(ticket_id)
        except (TypeError, ValueError):
            raise ValidationError(f"otobo: ticket id must be an integer, got {ticket_id!r}")
        if value <= 0:
            raise ValidationError(f"otobo: ticket id must be positive, got {value}")
        return value

    def get_ticket(self, ticket_id: Any, *, dynamic_fields: bool = True, articles: bool = False) -> Optional[dict]:
        """TicketGet → normalized record, or None when the ticket does not exist (AccessDenied)."""
        ticket_id = self._ticket_id(ticket_id)
        params = {}
        if dynamic_fields:
            params["DynamicFields"] = 1
        if articles:
            params["AllArticles"] = 1
        try:
            data = self._call("TicketGet", "GET", f"/Ticket/{ticket_id}", params=params)
        except (PermissionDenied, NotFoundError) as exc:
            if not exc.details.get("error_code"):
                raise  # an HTTP-level 403/404 (proxy, wrong URL) is no answer about the ticket
            return None
        tickets = _ticket_list(data)
        return normalize_ticket(tickets[0]) if tickets else None

    def get_tickets(self, ticket_ids: Iterable[Any], *, dynamic_fields: bool = True, chunk: int = GET_CHUNK,
                    articles: bool = False) -> Iterator[dict]:
        """Normalized tickets for ``ticket_ids``, in order, read ``chunk`` at a time; unreadable ones are skipped.

        One TicketGet on the stock route with ``/Ticket/1,2,3`` per chunk instead of one call per ticket.
        OTOBO fails the whole list with TicketGet.AccessDenied when any one ticket is unreadable;
        that chunk is then read ticket by ticket. A generator: a caller that stops early reads no more.
        """
        ids = [self._ticket_id(ticket_id) for ticket_id in ticket_ids]
        params = {"DynamicFields": 1} if dynamic_fields else {}
        if articles:
            params["AllArticles"] = 1
        chunk = max(1, chunk)
        for start in range(0, len(ids), chunk):
            part = ids[start:start + chunk]
            if len(part) > 1:
                try:
                    data = self._call("TicketGet", "GET", "/Ticket/{0}".format(",".join(str(i) for i in part)), params=params)
                except (PermissionDenied, NotFoundError) as exc:
                    if not exc.details.get("error_code"):
                        raise
                else:
                    for ticket in _ticket_list(data):
                        yield normalize_ticket(ticket)
                    continue
            # A single ticket, or a list OTOBO refused because one of them is unreadable.
            for ticket_id in part:
                ticket = self.get_ticket(ticket_id, dynamic_fields=dynamic_fields, articles=articles)
                if ticket is not None:
                    yield ticket

    def search_ticket_ids(self, **criteria: Any) -> list:
        """TicketSearch on the stock GET route; criteria use OTOBO names (Title, Queues, States, Limit...)."""
        bad = [name for name in criteria if name.lower().startswith("dynamicfield")]
        if bad:
            raise ValidationError(
                "otobo: DynamicField criteria ({0}) cannot be sent on the GET search route: OTOBO drops them and "
                "matches every ticket; configure search_route and use search_by_dynamic_field".format(", ".join(bad)))
        params = {}
        for name, value in criteria.items():
            if value is None:
                continue
            params[name] = [str(v) for v in value] if isinstance(value, (list, tuple)) else str(value)
        data = self._call("TicketSearch", "GET", "/Ticket", params=params)
        return self._ids(data)

    def search_by_dynamic_field(self, name: str, value: Any, states: Optional[Iterable[str]] = None,
                                limit: Optional[int] = None) -> list:
        """TicketSearch with a DynamicField ``Equals`` criterion on the configured body route."""
        if not self.search_route:
            raise ValidationError("otobo: searching by dynamic field needs search_route (a POST route for TicketSearch)")
        body = {f"DynamicField_{name}": {"Equals": value}}  # type: dict[str, Any]
        if states:
            body["States"] = list(states)
        if limit:
            body["Limit"] = int(limit)
        data = self._call("TicketSearch", self.search_route["method"], self.search_route["path"], body=body,
                          retry_unsafe=True)
        return self._ids(data)

    @staticmethod
    def _ids(data: Mapping[str, Any]) -> list:
        ids = data.get("TicketID") or []
        if not isinstance(ids, list):
            ids = [ids]
        return [to_int(i) for i in ids if to_int(i) is not None]

    def find_ticket_by_number(self, ticket_number: str, *, articles: bool = False) -> Optional[dict]:
        number = str(ticket_number).strip()
        if not number.isdigit():
            raise ValidationError(f"otobo: ticket_number must be digits, got {ticket_number!r}")
        for ticket_id in self.search_ticket_ids(TicketNumber=number):
            ticket = self.get_ticket(ticket_id, articles=articles)
            if ticket and ticket["ticket_number"] == number:
                return ticket
        return None

    def find_by_correlation_key(self, key: str, open_only: bool = False, *, articles: bool = False) -> Optional[dict]:
        """The ticket carrying ``key`` (title marker or correlation DF), verified by reading it."""
        key = validate_correlation_key(key)
        states = list(OPEN_STATES) if open_only else None
        ids = self._correlation_candidates(key, states)
        matches = []
        for ticket_id in ids:
            ticket = self.get_ticket(ticket_id, articles=articles)
            if ticket and self._carries_key(ticket, key) and (not open_only or is_open_state_type(ticket["state_type"])):
                matches.append(ticket)
        return self._pick(matches, key)

    def _correlation_candidates(self, key: str, states: Optional[list]) -> list:
        if self.search_route and self.correlation_field:
            ids = self.search_by_dynamic_field(self.correlation_field, key, states=states)
            if 0 < len(ids) <= MAX_VERIFY:
                return ids
            # Nothing found: a ticket opened before the field was configured (or by a writer that does
            # not fill it) still carries the title marker, so look for that before anyone creates a duplicate.
            if ids:
                self.warn(
                    f"otobo: the dynamic field search for {self.correlation_field} returned {len(ids)} tickets, so the server ignored the criterion "
                    "(check correlation_field and search_route); fell back to the title search")
        ids = self.search_ticket_ids(Title=f"*{key}*", States=states)
        if len(ids) > MAX_VERIFY:
            raise UnexpectedResponseError(
                f"otobo TicketSearch: {len(ids)} tickets match the correlation key {key}; refusing to guess",
                platform=PLATFORM)
        return ids

    def _carries_key(self, ticket: Mapping[str, Any], key: str) -> bool:
        if marker(key).strip() in (ticket.get("title") or ""):
            return True
        if self.correlation_field:
            return (ticket.get("dynamic_fields") or {}).get(self.correlation_field) == key
        return False

    def _pick(self, matches: list, key: str) -> Optional[dict]:
        if not matches:
            return None

        def rank(ticket: Mapping[str, Any]) -> tuple:
            return (is_open_state_type(ticket.get("state_type")), ticket.get("ticket_id") or 0)

        ordered = sorted(matches, key=rank, reverse=True)
        chosen = ordered[0]
        if len(ordered) > 1:
            others = ", ".join(str(t["ticket_number"]) for t in ordered[1:])
            self.warn(
                "otobo: {0} tickets carry correlation key {1}; using {2} (newest open), duplicates: {3}".format(
                    len(ordered), key, chosen["ticket_number"], others))
        return chosen

    def history(self, ticket_id: Any) -> list:
        """TicketHistoryGet → list of entries (ids int)."""
        ticket_id = self._ticket_id(ticket_id)
        data = self._call("TicketHistoryGet", "GET", f"/TicketHistory/{ticket_id}")
        entries = []
        for block in data.get("TicketHistory") or []:
            for item in block.get("History") or []:
                entry = dict(item)
                for name in ("TicketID", "ArticleID", "HistoryTypeID", "CreateBy", "QueueID", "OwnerID",
                             "PriorityID", "StateID", "TypeID"):
                    if name in entry:
                        entry[name] = to_int(entry[name])
                entries.append(entry)
        return entries

    def ticket_url(self, ticket_id: Any) -> str:
        """Agent zoom link of a ticket."""
        return f"{self.http.base_url}{self.path_prefix}/index.pl?Action=AgentTicketZoom;TicketID={self._ticket_id(ticket_id)}"


def _ignore_warning(message: str) -> None:
    """Default warning sink for library use without a module."""


def read_secret_file(path: str, option: str, warn: Optional[Callable[[str], None]] = None) -> str:
    """``_secrets.read_secret_file`` for OTOBO's options (messages start with ``otobo:``)."""
    return _secrets.read_secret_file(path, option, warn, platform=PLATFORM)


def connection_password(params: Mapping[str, Any], warn: Optional[Callable[[str], None]] = None) -> str:
    """The agent password: O(password) (E(OTOBO_PASSWORD)) or the content of O(password_file) (E(OTOBO_PASSWORD_FILE))."""
    password = params.get("password")
    password_file = params.get("password_file")
    if password and password_file:
        raise ValidationError("otobo: password and password_file are mutually exclusive (set as options or through "
                              "OTOBO_PASSWORD and OTOBO_PASSWORD_FILE); keep one")
    if password_file:
        return read_secret_file(password_file, "password_file", warn)
    if not password:
        raise ValidationError("otobo: one of password or password_file is required "
                              "(or the environment variable OTOBO_PASSWORD or OTOBO_PASSWORD_FILE)")
    return password


def client_from_params(params: Mapping[str, Any], http: Optional[HttpClient] = None,
                       warn: Optional[Callable[[str], None]] = None,
                       register_secret: Optional[Callable[[str], None]] = None) -> OtoboClient:
    """Build the OTOBO client from the module's connection options.

    ``register_secret`` (a module passes ``module.no_log_values.add``) receives a password read from
    O(password_file), so that nothing the module returns can echo it.
    """
    password = connection_password(params, warn)
    if register_secret is not None:
        register_secret(password)
    if http is None:
        http = HttpClient(PLATFORM, params["url"], validate_certs=params.get("validate_certs", True),
                          ca_path=params.get("ca_path"), timeout=params.get("timeout") or 30)
    return OtoboClient(
        http,
        username=params["username"],
        password=password,
        webservice=params.get("webservice") or DEFAULT_WEBSERVICE,
        use_session=params.get("use_session", True),
        session_cache=params.get("session_cache", os.environ.get("LABOPS_OTOBO_SESSION_CACHE", DEFAULT_SESSION_CACHE)),
        search_route=params.get("search_route"),
        correlation_field=params.get("correlation_field"),
        path_prefix=params.get("path_prefix") or DEFAULT_PATH_PREFIX,
        warn=warn,
    )
