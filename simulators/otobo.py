"""OTOBO GenericTicketConnectorREST simulator (``python -m simulators.otobo --help``).

Faithful to ``contracts/otobo.md``: routing and input merging of the HTTP::REST transport,
authentication and IP-bound sessions, the response envelope with its ID types, the check
order and messages of every operation, fresh-install reference data and the TicketSearch
quirks (dynamic-field criteria on the GET route silently ignored).  Fault injection and
state inspection live under ``/_sim/`` (see :mod:`simulators.base`).
"""
from __future__ import annotations

import functools
import json
import os
import re
import secrets
import string
import sys
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

from simulators.base import ConfigError, Routed, SimRequest, SimResponse, SimulatorApp, build_parser, json_response, merge_config, run_cli, text_response
from simulators.otobo_lab import lab_overrides
from simulators.otobo_model import (
    DEFAULT_CONFIG,
    LOCKS,
    PRIORITIES,
    ROOT_USER_ID,
    SENDER_TYPES,
    Catalog,
    OtoboError,
    OtoboFault,
    Store,
    article_view,
    attachment_view,
    dynamic_field_list,
    fmt_time,
    history_view,
    pending_epoch,
    ticket_view,
    to_int,
)
from simulators.otobo_search import search
from simulators.otobo_write import (
    ArticleInput,
    Principal,
    TicketInput,
    check_article,
    check_attachments,
    check_dynamic_fields,
    check_ticket,
    hash_with_data,
    pending_history_name,
    perl_true,
    structure_ok,
)

STOCK_ROUTES: dict[str, tuple[str, list[str], str]] = {
    # operation: (type, methods, route) — the sample web service's RouteOperationMapping
    "SessionCreate": ("SessionCreate", ["POST"], "/Session"),
    "SessionGet": ("SessionGet", ["GET"], "/Session/:SessionID"),
    "TicketCreate": ("TicketCreate", ["POST"], "/Ticket"),
    "TicketGet": ("TicketGet", ["GET"], "/Ticket/:TicketID"),
    "TicketGetList": ("TicketGet", ["GET"], "/TicketList"),
    "TicketHistoryGet": ("TicketHistoryGet", ["GET"], "/TicketHistory/:TicketID"),
    "TicketSearch": ("TicketSearch", ["GET"], "/Ticket"),
    "TicketUpdate": ("TicketUpdate", ["PATCH"], "/Ticket/:TicketID"),
}
BODYLESS_METHODS = ("GET", "DELETE", "HEAD")
_SID_ALPHABET = string.ascii_letters + string.digits


def parse_query(query: str) -> dict[str, Any]:
    """The transport's query parsing: ``&``/``;`` split, only the first ``=`` pair counts, ``+`` is a space,
    percent-decoding after splitting, repeated keys become lists and a false value (``0``) becomes ``''``."""
    params: dict[str, Any] = {}
    for part in re.split(r"[;&]", query):
        if not part:
            continue
        pieces = part.split("=")
        key = urllib.parse.unquote(pieces[0])
        value = urllib.parse.unquote(pieces[1].replace("+", "%20")) if len(pieces) > 1 else ""
        value = value if perl_true(value) else ""
        if key in params:
            current = params[key]
            params[key] = (current if isinstance(current, list) else [current]) + [value]
        else:
            params[key] = value
    return params


def _compile_route(route: str) -> re.Pattern[str]:
    pattern = "".join(f"(?P<{part[1:]}>[^/]+)" if part.startswith(":") else re.escape(part) for part in re.split(r"(:[A-Za-z_]\w*)", route))
    return re.compile(pattern)


class OtoboSimulator(SimulatorApp):
    """The stateful OTOBO web service; every operation runs under the app lock."""

    name = "otobo"

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__(config)
        self.catalog = Catalog(self.config)
        self.routes = self._build_routes()
        self.store = Store(self.catalog, str(self.config["system_id"]), self.now())
        self._dirty = False
        state_file = self.config.get("state_file")
        if state_file and os.path.exists(state_file):
            with open(state_file, encoding="utf-8") as handle:
                self.store.load_json(json.load(handle))
            unknown = sorted({t["TypeID"] for t in self.store.tickets.values()} - set(self.catalog.types))
            if unknown:
                # OTOBO cannot delete a ticket type, so a state file and a config must agree on them.
                raise ConfigError(f"{state_file}: tickets use TypeID {unknown} but ticket_types defines only {sorted(self.catalog.types)}")
        self._handlers: dict[str, Callable[[Any, SimRequest], Any]] = {
            "SessionCreate": self.op_session_create, "SessionGet": self.op_session_get, "TicketCreate": self.op_ticket_create,
            "TicketGet": self.op_ticket_get, "TicketHistoryGet": self.op_ticket_history_get, "TicketSearch": self.op_ticket_search,
            "TicketUpdate": self.op_ticket_update,
        }

    def _build_routes(self) -> list[tuple[str, str, list[str], re.Pattern[str]]]:
        table = dict(STOCK_ROUTES)
        if self.config["post_search_route"]:
            table[self.config["post_search_operation"]] = ("TicketSearch", ["POST"], self.config["post_search_path"])
        # Operations are tried in alphabetical order of their names; the first full match wins.
        return [(name, op_type, methods, _compile_route(route)) for name, (op_type, methods, route) in sorted(table.items())]

    # ------------------------------------------------------------------ SimulatorApp hooks
    def body_limit(self) -> int:
        return int(self.config["max_length"])

    def mask_path(self, path: str) -> str:
        return re.sub(r"(/Session/)[^/]+$", r"\1***", path)

    def expire_sessions(self) -> None:
        self.store.sessions.clear()
        self._dirty = True
        self._persist()

    def reset_state(self) -> None:
        self.store = Store(self.catalog, str(self.config["system_id"]), self.now())
        self._dirty = True
        self._persist()

    def dump_state(self) -> dict[str, Any]:
        now = self.now()
        tickets = []
        for ticket in sorted(self.store.tickets.values(), key=lambda t: t["TicketID"]):
            view = ticket_view(self.catalog, ticket, now)
            view["DynamicField"] = dict(ticket["DynamicField"])
            view["Article"] = [dict(article_view(a, ticket["TicketID"]), Attachment=attachment_view(a["Attachments"], True)) for a in ticket["Articles"]]
            view["History"] = history_view(ticket)["History"]
            tickets.append(view)
        return {"simulator": self.name, "webservice": self.config["webservice"], "tickets": tickets,
                "sessions": self._live_sessions(now), "sessions_created": self.store.sessions_created}

    def _live_sessions(self, now: float) -> int:
        """Size of OTOBO's session table: expired sessions are purged first, as OTOBO's session cleanup does."""
        expired = [sid for sid, session in self.store.sessions.items() if self._expired(session, now)]
        for sid in expired:
            del self.store.sessions[sid]
        self._dirty = self._dirty or bool(expired)
        return len(self.store.sessions)

    def _expired(self, session: Mapping[str, Any], now: float) -> bool:
        return bool(now - session["last"] > self.config["session_idle_timeout"] or now - session["created"] > self.config["session_max_time"])

    # ------------------------------------------------------------------ routing
    def route(self, req: SimRequest) -> Routed:
        prefix = self.config["path_prefix"]
        if not req.path.startswith(prefix + "/") and req.path != prefix:
            return Routed("", "", lambda: text_response("Not Found", 404))
        match = re.fullmatch(re.escape(prefix) + r"/Webservice(ID)?/([^/]+)(/.*)?", req.path)
        if not match or not self._webservice_ok(bool(match.group(1)), urllib.parse.unquote(match.group(2))):
            return Routed("", "", lambda: SimResponse(500))  # unknown/invalid web service: empty, no content type
        rest = match.group(3)
        if rest is not None:
            for name, op_type, methods, pattern in self.routes:
                hit = pattern.fullmatch(rest) if req.method in methods else None
                if hit:
                    params = {key: urllib.parse.unquote(value) for key, value in hit.groupdict().items()}
                    return Routed(name, op_type, functools.partial(self._run, op_type, req, params))
        # Like OTOBO: without a sub-path the "request URI" is the whole path.
        uri = rest if rest is not None else req.path
        return Routed("", "", lambda: text_response(f"HTTP::REST Error while determine Operation for request URI '{uri}'.", 500))

    def _webservice_ok(self, by_id: bool, value: str) -> bool:
        if by_id:
            return to_int(value) == int(self.config["webservice_id"])
        return value == self.config["webservice"]

    def _input(self, req: SimRequest, params: Mapping[str, str]) -> tuple[Any, SimResponse | None]:
        """Merge body, query and path parameters (query and path override body keys)."""
        data: Any = {}
        if req.method not in BODYLESS_METHODS and req.body:
            try:
                data = json.loads(req.body.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                return None, text_response("Error while decoding request content.", 500)
            if not data or not isinstance(data, (dict, list)):
                return None, text_response("Unsupported request content structure.", 500)
            if isinstance(data, list):
                return data, None  # passes the transport; the operations cannot handle it
        data.update(parse_query(req.query))
        data.update(params)
        return data, None

    def _run(self, op_type: str, req: SimRequest, params: Mapping[str, str]) -> SimResponse:
        data, error = self._input(req, params)
        if error is not None:
            return error
        with self.lock:
            try:
                result = self._handlers[op_type](data, req)
            except OtoboError as exc:
                result = {"Error": {"ErrorCode": exc.code, "ErrorMessage": exc.message}}
            except OtoboFault as exc:
                result = text_response(json.dumps({"faultcode": "Server", "faultstring": str(exc)}), 500)
            self._persist()
        return result if isinstance(result, SimResponse) else json_response(result)

    # ------------------------------------------------------------------ authentication
    def _authenticate(self, data: Mapping[str, Any], req: SimRequest) -> Principal | None:
        """SessionID, if present, is the only credential looked at; no fallback to a password."""
        if perl_true(data.get("SessionID")):
            return self._session_principal(str(data["SessionID"]), req.client_ip)
        return self._password_principal(data)

    def _password_principal(self, data: Mapping[str, Any]) -> Principal | None:
        password = str(data.get("Password", ""))
        if perl_true(data.get("UserLogin")):
            agent = self.catalog.agent_by_login(str(data["UserLogin"]))
            if agent and secrets.compare_digest(agent.password, password):
                return Principal("User", agent.login, agent.user_id, agent=agent)
            return None
        if perl_true(data.get("CustomerUserLogin")):
            customer = self.catalog.customers.get(str(data["CustomerUserLogin"]))
            if customer and secrets.compare_digest(customer.password, password):
                return Principal("Customer", customer.login, ROOT_USER_ID, customer.customer_id)
        return None

    def _session_principal(self, session_id: str, client_ip: str) -> Principal | None:
        session = self.store.sessions.get(session_id)
        if session is None:
            return None
        now = self.now()
        expired = self._expired(session, now)
        wrong_ip = self.config["session_check_remote_ip"] and session["ip"] != client_ip
        if expired or wrong_ip:
            del self.store.sessions[session_id]  # a session used from another IP is gone for good
            self._dirty = True
            return None
        session["last"] = now
        if session["type"] == "User":
            agent = self.catalog.agent_by_login(session["login"])
            return Principal("User", agent.login, agent.user_id, agent=agent) if agent else None
        customer = self.catalog.customers.get(session["login"])
        return Principal("Customer", customer.login, ROOT_USER_ID, customer.customer_id) if customer else None

    def _require_auth(self, op: str, data: Mapping[str, Any], req: SimRequest, fail_message: str) -> Principal:
        if not any(perl_true(data.get(key)) for key in ("UserLogin", "CustomerUserLogin", "SessionID")):
            raise OtoboError(f"{op}.MissingParameter", f"{op}: UserLogin, CustomerUserLogin or SessionID is required!")
        if (perl_true(data.get("UserLogin")) or perl_true(data.get("CustomerUserLogin"))) and not perl_true(data.get("Password")):
            raise OtoboError(f"{op}.MissingParameter", f"{op}: Password or SessionID is required!")
        principal = self._authenticate(data, req)
        if principal is None:
            raise OtoboError(f"{op}.AuthFail", f"{op}: {fail_message}")
        return principal

    # ------------------------------------------------------------------ permissions
    def _can_read(self, principal: Principal, ticket: Mapping[str, Any]) -> bool:
        if principal.is_customer:
            return ticket["CustomerID"] == principal.customer_id
        assert principal.agent is not None
        queue = self.catalog.queues[ticket["QueueID"]]
        return queue not in principal.agent.deny_ro and queue not in principal.agent.create_only

    def _can_write(self, principal: Principal, ticket: Mapping[str, Any]) -> bool:
        if principal.is_customer or not self._can_read(principal, ticket):
            return self._can_read(principal, ticket)
        assert principal.agent is not None
        return self.catalog.queues[ticket["QueueID"]] not in principal.agent.deny_rw

    @staticmethod
    def _can_create(agent: Any, queue: str) -> bool:
        """``create`` is its own group right: a create-only queue allows TicketCreate but no read of the result."""
        if queue in agent.create_only:
            return True
        return queue not in agent.deny_create and queue not in agent.deny_ro

    def _stored_title(self, title: str) -> str:
        """OTOBO keeps Title in varchar(191) and cuts longer titles without an error (observed on 11.0)."""
        return title[:int(self.config["title_max_length"])]

    def _ticket_ids(self, raw: Any) -> list[str]:
        items = raw if isinstance(raw, list) else [raw]
        return [part for item in items for part in str(item).split(",") if part != ""]

    # ------------------------------------------------------------------ Session operations
    def op_session_create(self, data: Any, req: SimRequest) -> dict[str, Any]:
        if isinstance(data, list):
            raise OtoboError("SessionCreate.MissingParameter", "SessionCreate: The request is empty!")
        if not perl_true(data.get("Password")):
            raise OtoboError("SessionCreate.MissingParameter", "SessionCreate: Password parameter is missing!")
        principal = self._password_principal(data)
        if principal is None:
            raise OtoboError("SessionCreate.AuthFail", "SessionCreate: Authorization failing!")
        session_id = "".join(secrets.choice(_SID_ALPHABET) for _position in range(32))
        now = self.now()
        self.store.sessions_created += 1
        self.store.sessions[session_id] = {
            "type": principal.user_type, "login": principal.login, "ip": req.client_ip, "created": now, "last": now,
            "agent": req.headers.get("User-Agent", ""), "token": secrets.token_hex(16),
        }
        self._dirty = True
        return {"SessionID": session_id}

    def op_session_get(self, data: Any, req: SimRequest) -> dict[str, Any]:
        del req  # SessionGet needs no credentials and does not check the client IP
        session_id = str(data.get("SessionID", "")) if isinstance(data, dict) else ""
        if not session_id:
            raise OtoboError("SessionGet.MissingParameter", "SessionGet: SessionID is missing!")
        session = self.store.sessions.get(session_id)
        now = self.now()
        if session and (now - session["last"] > self.config["session_idle_timeout"] or now - session["created"] > self.config["session_max_time"]):
            del self.store.sessions[session_id]
            self._dirty, session = True, None
        if session is None:
            raise OtoboError("SessionGet.SessionInvalid", "SessionGet: SessionID is Invalid!")
        return {"SessionData": [{"Key": key, "Value": value} for key, value in self._session_data(session)]}

    def _session_data(self, session: Mapping[str, Any]) -> list[tuple[str, str | None]]:
        common = [
            ("ChangeTime", fmt_time(session["created"])), ("CreateTime", fmt_time(session["created"])), ("SessionSource", "GenericInterface"),
            ("UserChallengeToken", session["token"]), ("UserLastRequest", str(int(session["last"]))),
            ("UserRemoteAddr", session["ip"]), ("UserRemoteUserAgent", session["agent"]), ("UserSessionStart", str(int(session["created"]))),
            ("UserType", session["type"]), ("UserLogin", session["login"]), ("UserLanguage", "en"), ("UserTimeZone", "UTC"),
            ("ValidID", "1"), ("UserTitle", None),
        ]
        if session["type"] == "Customer":
            customer = self.catalog.customers[session["login"]]
            return common + [
                ("UserID", customer.login), ("UserCustomerID", customer.customer_id), ("UserFirstname", customer.first_name),
                ("UserLastname", customer.last_name), ("UserFullname", f"{customer.first_name} {customer.last_name}"),
                ("UserEmail", customer.email), ("UserMailString", f'"{customer.first_name} {customer.last_name}" <{customer.email}>'),
            ]
        agent = self.catalog.agent_by_login(session["login"])
        assert agent is not None
        return common + [
            ("UserID", str(agent.user_id)), ("UserFirstname", agent.first_name), ("UserLastname", agent.last_name),
            ("UserFullname", f"{agent.first_name} {agent.last_name}"), ("UserEmail", agent.email), ("UserIsGroup[users]", "Yes"),
            ("UserIsGroupRo[users]", "Yes"), ("UserRefreshTime", "0"), ("UserShowTickets", "25"), ("UserSkin", "default"),
            ("UserLastLogin", str(int(session["created"]))), ("UserLastLoginTimestamp", fmt_time(session["created"])),
            ("CreateBy", "1"), ("ChangeBy", "1"), ("OutOfOffice", None),
        ]

    # ------------------------------------------------------------------ read operations
    def op_ticket_get(self, data: Any, req: SimRequest) -> Any:
        if isinstance(data, list):
            return text_response("Internal Server Error", 500)
        principal = self._require_auth("TicketGet", data, req, "Authorization failing!")
        ids = self._ticket_ids(data.get("TicketID")) if perl_true(data.get("TicketID")) or isinstance(data.get("TicketID"), list) else []
        if not ids:
            raise OtoboError("TicketGet.MissingParameter", "TicketGet: TicketID parameter is missing!")
        result = []
        for raw in ids:
            ticket = self.store.tickets.get(to_int(raw) or 0)
            if ticket is None or not self._can_read(principal, ticket):
                raise OtoboError("TicketGet.AccessDenied", "TicketGet: User does not have access to the ticket!")
            result.append(self._ticket_get_view(ticket, data, principal))
        return {"Ticket": result}

    def _ticket_get_view(self, ticket: Mapping[str, Any], options: Mapping[str, Any], principal: Principal) -> dict[str, Any]:
        view = ticket_view(self.catalog, ticket, self.now())
        if perl_true(options.get("DynamicFields")):
            view["DynamicField"] = dynamic_field_list(self.catalog, ticket)
        if perl_true(options.get("AllArticles")):
            view["Article"] = self._article_list(ticket, options, principal)
        return view

    def _article_list(self, ticket: Mapping[str, Any], options: Mapping[str, Any], principal: Principal) -> list[dict[str, Any]]:
        articles = [a for a in ticket["Articles"] if a["IsVisibleForCustomer"] or not principal.is_customer]
        senders = [s for s in (options.get("ArticleSenderType") if isinstance(options.get("ArticleSenderType"), list)
                               else [options.get("ArticleSenderType")]) if s]
        if senders:
            articles = [a for a in articles if SENDER_TYPES[a["SenderTypeID"]] in senders]
        if str(options.get("ArticleOrder", "")).upper() == "DESC":
            articles = list(reversed(articles))
        limit = to_int(options.get("ArticleLimit"))
        if limit:
            articles = articles[:limit]
        with_attachments = perl_true(options.get("Attachments"))
        with_content = perl_true(options.get("GetAttachmentContents", 1))
        views = []
        for article in articles:
            view = article_view(article, ticket["TicketID"])
            if with_attachments:
                view["Attachment"] = attachment_view(article["Attachments"], with_content)
            views.append(view)
        return views

    def op_ticket_search(self, data: Any, req: SimRequest) -> dict[str, Any]:
        principal = self._authenticate(data, req) if isinstance(data, dict) else None
        if principal is None:
            raise OtoboError("TicketSearch.AuthFail", "TicketSearch: Authorization failing!")
        visible = [t for t in self.store.tickets.values() if self._can_read(principal, t)]
        ids = search(visible, data, self.catalog, self.now())
        return {"TicketID": [str(ticket_id) for ticket_id in ids]} if ids else {}

    def op_ticket_history_get(self, data: Any, req: SimRequest) -> Any:
        if isinstance(data, list):
            return text_response("Internal Server Error", 500)
        principal = self._require_auth("TicketHistoryGet", data, req, "Authorization failing!")
        if principal.is_customer:
            raise OtoboError("TicketHistoryGet.AuthFail", "TicketHistoryGet: User needs to an Agent!")
        ids = self._ticket_ids(data.get("TicketID")) if perl_true(data.get("TicketID")) else []
        if not ids:
            raise OtoboError("TicketHistoryGet.MissingParameter", "TicketHistoryGet: TicketID parameter is missing!")
        result = []
        for raw in ids:
            ticket = self.store.tickets.get(to_int(raw) or 0)
            if ticket is None or not self._can_read(principal, ticket):
                raise OtoboError("TicketHistoryGet.AccessDenied", f"TicketHistoryGet: User does not have access to the ticket {raw}!")
            result.append(history_view(ticket))
        return {"TicketHistory": result}

    # ------------------------------------------------------------------ TicketCreate
    def op_ticket_create(self, data: Any, req: SimRequest) -> Any:
        op = "TicketCreate"
        if isinstance(data, list):
            return text_response("Internal Server Error", 500)  # unhandled in the Perl operation
        principal = self._require_auth(op, data, req, "User could not be authenticated!")
        for key in ("Ticket", "Article"):
            if not hash_with_data(data.get(key)):
                raise OtoboError(f"{op}.MissingParameter", f"{op}: {key} parameter is missing or not valid!")
        for key in ("DynamicField", "Attachment"):
            if not structure_ok(data.get(key)):
                raise OtoboError(f"{op}.MissingParameter", f"{op}: {key} parameter is missing or not valid!")
        fields = check_ticket(op, data["Ticket"], self.catalog, create=True, type_required=bool(self.config["ticket_type_required"]))
        assert fields.queue_id is not None
        if principal.agent is not None and not self._can_create(principal.agent, self.catalog.queues[fields.queue_id]):
            raise OtoboError(f"{op}.AccessDenied", f"{op}: Can not create tickets in given Queue or QueueID!")
        article = check_article(op, data["Article"], principal, self.catalog, create=True)
        dynamic_fields = check_dynamic_fields(op, data.get("DynamicField"), self.catalog)
        article.attachments = check_attachments(op, data.get("Attachment"))
        if not fields.queue_exact:
            raise OtoboFault("Ticket could not be created, please contact the system administrator")
        ticket, article_id = self._create(principal, fields, article, dynamic_fields)
        if principal.is_customer:
            result: dict[str, Any] = {"TicketID": str(ticket["TicketID"]), "TicketNumber": ticket["TicketNumber"], "ArticleID": str(article_id)}
        else:
            result = {"TicketID": str(ticket["TicketID"]), "TicketNumber": ticket["TicketNumber"], "ArticleID": article_id}
        if self.config["include_ticket_data"]:
            result["Ticket"] = self._included_ticket(ticket, article_id, with_body=True)
        return result

    def _create(self, principal: Principal, fields: TicketInput, article: ArticleInput, dfs: list[tuple[str, str]]) -> tuple[dict[str, Any], int]:
        now, writer = self.now(), principal.writer_id
        assert fields.title is not None and fields.queue_id is not None and fields.state_id and fields.priority_id
        ticket = self.store.new_ticket(self.store.next_ticket_number(now), self._stored_title(fields.title), fields.queue_id, fields.state_id,
                                       fields.priority_id, writer, now)
        ticket["TypeID"] = fields.type_id or 1
        ticket["LockID"] = fields.lock_id or 1
        ticket["ResponsibleID"] = fields.responsible_id or ROOT_USER_ID
        customer = self.catalog.customers.get(fields.customer_user or "")
        ticket["CustomerUserID"] = fields.customer_user or ""
        ticket["CustomerID"] = fields.customer_id if fields.customer_id is not None else (customer.customer_id if customer else "")
        queue = self.catalog.queues[fields.queue_id]
        state, _state_type = self.catalog.state(fields.state_id)
        self._history(ticket, "NewTicket", f"%%{ticket['TicketNumber']}%%{queue}%%{PRIORITIES[fields.priority_id]}%%{state}%%{ticket['TicketID']}", writer)
        self._history(ticket, "CustomerUpdate", f"%%CustomerID={ticket['CustomerID']};CustomerUser={ticket['CustomerUserID']};", writer)
        self._set_dynamic_fields(ticket, dfs, writer)
        article.fields["From"] = article.fields["From"] or self.catalog.customer_from(ticket["CustomerUserID"])
        article_id = self._add_article(ticket, article, writer, queue)
        owner_id = fields.owner_id or writer
        if owner_id != ticket["OwnerID"]:
            ticket["OwnerID"] = owner_id
            self._history(ticket, "OwnerUpdate", f"%%{self.catalog.user_login(owner_id)}%%{owner_id}", writer)
        if fields.owner_id and fields.lock_id is None:
            ticket["LockID"] = 2  # an explicit Owner also locks the ticket
            self._history(ticket, "Lock", "%%lock", writer)
        if fields.pending:
            ticket["PendingUntil"] = pending_epoch(fields.pending, now)
            self._history(ticket, "SetPendingTime", pending_history_name(ticket["PendingUntil"]), writer)
        self._dirty = True
        return ticket, article_id

    def _history(self, ticket: dict[str, Any], history_type: str, name: str, user_id: int, article_id: int = 0) -> None:
        self.store.add_history(ticket, history_type, name, user_id, self.now(), article_id)

    def _set_dynamic_fields(self, ticket: dict[str, Any], dfs: list[tuple[str, str]], writer: int) -> bool:
        changed = False
        for name, value in dfs:
            old = ticket["DynamicField"].get(name)
            if old == value:
                continue
            ticket["DynamicField"][name] = value
            self._history(ticket, "TicketDynamicFieldUpdate", f"%%FieldName%%{name}%%Value%%{value}%%OldValue%%{old or ''}", writer)
            changed = True
        return changed

    def _add_article(self, ticket: dict[str, Any], article: ArticleInput, writer: int, queue: str) -> int:
        fields = dict(article.fields, To=queue, Attachments=article.attachments)
        created = self.store.add_article(ticket, fields, writer, self.now())
        self._history(ticket, article.history_type, article.history_comment, writer, created["ArticleID"])
        return int(created["ArticleID"])

    def _included_ticket(self, ticket: Mapping[str, Any], article_id: int, with_body: bool) -> dict[str, Any]:
        """IncludeTicketData: one ticket object with every DF and ``Article`` as a single object."""
        view = ticket_view(self.catalog, ticket, self.now())
        view["DynamicField"] = dynamic_field_list(self.catalog, ticket)
        article = next(a for a in ticket["Articles"] if a["ArticleID"] == article_id)
        view["Article"] = article_view(article, ticket["TicketID"], with_body=with_body)
        return view

    # ------------------------------------------------------------------ TicketUpdate
    def op_ticket_update(self, data: Any, req: SimRequest) -> Any:
        op = "TicketUpdate"
        if isinstance(data, list):
            return text_response("Internal Server Error", 500)
        if not perl_true(data.get("TicketID")) and not perl_true(data.get("TicketNumber")):
            raise OtoboError(f"{op}.MissingParameter", f"{op}: TicketID or TicketNumber is required!")
        principal = self._require_auth(op, data, req, "User could not be authenticated!")
        by_number = perl_true(data.get("TicketNumber"))  # TicketNumber wins, even over the path's TicketID
        ticket = self.store.find_by_number(str(data["TicketNumber"])) if by_number else self.store.tickets.get(to_int(data.get("TicketID")) or 0)
        if ticket is None or not self._can_read(principal, ticket):
            raise OtoboError(f"{op}.AccessDenied", f"{op}: User does not have access to the ticket!")
        fields, article, dfs = self._check_update(op, data, principal)
        changes = self._update_changes(ticket, fields)
        self._check_update_rights(op, principal, ticket, changes, article is not None, bool(dfs))
        if fields.state_given and fields.state_id is not None and \
                self.catalog.state(fields.state_id)[1].startswith("pending") and fields.pending is None:
            raise OtoboError(f"{op}.MissingParameter", "Can't set a ticket on a pending state without pendig time!")
        if fields.queue_id is not None and not fields.queue_exact and "queue" in changes:
            raise OtoboFault("Ticket could not be updated, please contact the system administrator")
        article_id = self._update(ticket, principal, fields, changes, article, dfs)
        result: dict[str, Any] = {"TicketID": ticket["TicketID"] if by_number else str(ticket["TicketID"]), "TicketNumber": ticket["TicketNumber"]}
        if article_id is not None:
            result["ArticleID"] = str(article_id) if principal.is_customer else article_id
        if self.config["include_ticket_data"]:
            newest = article_id if article_id is not None else ticket["Articles"][-1]["ArticleID"]
            result["ArticleID"] = result.get("ArticleID", newest)
            result["Ticket"] = self._included_ticket(ticket, newest, with_body=article_id is not None)
        return result

    def _check_update(self, op: str, data: Mapping[str, Any], principal: Principal) -> tuple[TicketInput, ArticleInput | None, list[tuple[str, str]]]:
        for key, ok in (("Ticket", lambda v: v is None or isinstance(v, dict)), ("Article", lambda v: v is None or isinstance(v, dict)),
                        ("DynamicField", structure_ok), ("Attachment", structure_ok)):
            if not ok(data.get(key)):
                raise OtoboError(f"{op}.InvalidParameter", f"{op}: {key} parameter is not valid!")
        fields = check_ticket(op, data.get("Ticket") or {}, self.catalog, create=False)
        article = check_article(op, data["Article"], principal, self.catalog, create=False) if hash_with_data(data.get("Article")) else None
        if data.get("Attachment") is not None and article is None:
            raise OtoboError(f"{op}.MissingParameter", f"{op}: To create an attachment an article is needed!")
        dfs = check_dynamic_fields(op, data.get("DynamicField"), self.catalog)
        if article is not None:
            article.attachments = check_attachments(op, data.get("Attachment"))
        return fields, article, dfs

    def _update_changes(self, ticket: Mapping[str, Any], fields: TicketInput) -> dict[str, Any]:
        """Only values that differ from the ticket are written (and permission-checked)."""
        candidates = {
            "title": ("Title", fields.title), "queue": ("QueueID", fields.queue_id), "lock": ("LockID", fields.lock_id),
            "type": ("TypeID", fields.type_id), "state": ("StateID", fields.state_id), "priority": ("PriorityID", fields.priority_id),
            "owner": ("OwnerID", fields.owner_id), "responsible": ("ResponsibleID", fields.responsible_id),
            "customer": ("CustomerUserID", fields.customer_user),
        }
        changes = {name: value for name, (key, value) in candidates.items() if value is not None and ticket[key] != value}
        if fields.customer_id is not None and fields.customer_id != ticket["CustomerID"]:
            changes["customer"] = fields.customer_user or ticket["CustomerUserID"]
        if fields.pending is not None:
            changes["pending"] = fields.pending
        return changes

    def _check_update_rights(self, op: str, principal: Principal, ticket: Mapping[str, Any], changes: Mapping[str, Any], article: bool, dfs: bool) -> None:
        if self._can_write(principal, ticket):
            return
        wants = [name for name in ("queue", "lock", "type", "state", "priority", "owner", "responsible", "customer", "pending") if name in changes]
        labels = {"type": "ticket type", "pending": "pending time"}
        if wants:
            raise OtoboError(f"{op}.AccessDenied", f"{op}: Does not have permissions to update {labels.get(wants[0], wants[0])}!")
        if article:
            raise OtoboError(f"{op}.AccessDenied", f"{op}: Does not have permissions to create new articles!")
        if dfs:
            raise OtoboError(f"{op}.AccessDenied", f"{op}: Does not have permissions to update dynamic fields!")

    def _update(self, ticket: dict[str, Any], principal: Principal, fields: TicketInput, changes: Mapping[str, Any],
                article: ArticleInput | None, dfs: list[tuple[str, str]]) -> int | None:
        writer = principal.writer_id
        article_id = None
        if article is not None:
            if not article.fields["From"]:
                article.fields["From"] = self._author(principal)
            article_id = self._add_article(ticket, article, writer, self.catalog.queues[ticket["QueueID"]])
        self._apply_ticket_changes(ticket, fields, changes, writer)
        df_changed = self._set_dynamic_fields(ticket, dfs, writer)
        if article is not None and article.fields["SenderTypeID"] == 1:
            ticket["UnlockTimeout"] = int(self.now())  # agent articles reset the unlock timeout
            self._history(ticket, "Misc", "Reset of unlock time.", writer)
        if changes or df_changed or article is not None:
            ticket["Changed"], ticket["ChangeBy"] = self.now(), writer
            self._dirty = True
        return article_id

    def _author(self, principal: Principal) -> str:
        if principal.is_customer:
            return self.catalog.customer_from(principal.login)
        assert principal.agent is not None
        return f'"{principal.agent.first_name} {principal.agent.last_name}" <{principal.agent.email}>'

    def _apply_ticket_changes(self, ticket: dict[str, Any], fields: TicketInput, changes: Mapping[str, Any], writer: int) -> None:
        if "title" in changes:
            # Compared uncut (like OTOBO): re-sending an over-long title rewrites the cut title every time.
            title = self._stored_title(changes["title"])
            self._history(ticket, "TitleUpdate", f"%%{ticket['Title']}%%{title}", writer)
            ticket["Title"] = title
        if "queue" in changes:
            old, new = ticket["QueueID"], changes["queue"]
            ticket["QueueID"] = new
            self._history(ticket, "Move", f"%%{self.catalog.queues[new]}%%{new}%%{self.catalog.queues[old]}%%{old}", writer)
        if "lock" in changes:
            self._set_lock(ticket, changes["lock"], writer)
        if "type" in changes:
            old, new = ticket["TypeID"], changes["type"]
            ticket["TypeID"] = new
            self._history(ticket, "TypeUpdate", f"%%{self.catalog.types[new]}%%{new}%%{self.catalog.types[old]}%%{old}", writer)
        if "state" in changes:
            self._set_state(ticket, changes["state"], writer)
        if "priority" in changes:
            old, new = ticket["PriorityID"], changes["priority"]
            ticket["PriorityID"] = new
            self._history(ticket, "PriorityUpdate", f"%%{PRIORITIES[old]}%%{old}%%{PRIORITIES[new]}%%{new}", writer)
        self._apply_people(ticket, fields, changes, writer)
        if "pending" in changes:
            ticket["PendingUntil"] = pending_epoch(changes["pending"], self.now())
            self._history(ticket, "SetPendingTime", pending_history_name(ticket["PendingUntil"]), writer)

    def _apply_people(self, ticket: dict[str, Any], fields: TicketInput, changes: Mapping[str, Any], writer: int) -> None:
        for change, key, history in (("owner", "OwnerID", "OwnerUpdate"), ("responsible", "ResponsibleID", "ResponsibleUpdate")):
            if change in changes:
                ticket[key] = changes[change]
                self._history(ticket, history, f"%%{self.catalog.user_login(changes[change])}%%{changes[change]}", writer)
        if "customer" in changes:
            customer = self.catalog.customers.get(changes["customer"])
            ticket["CustomerUserID"] = changes["customer"]
            if fields.customer_id is not None:
                ticket["CustomerID"] = fields.customer_id
            elif customer is not None:
                ticket["CustomerID"] = customer.customer_id
            self._history(ticket, "CustomerUpdate", f"%%CustomerID={ticket['CustomerID']};CustomerUser={ticket['CustomerUserID']};", writer)

    def _set_state(self, ticket: dict[str, Any], state_id: int, writer: int) -> None:
        old_name, _old_type = self.catalog.state(ticket["StateID"])
        new_name, new_type = self.catalog.state(state_id)
        ticket["StateID"] = state_id
        self._history(ticket, "StateUpdate", f"%%{old_name}%%{new_name}%%", writer)
        if new_type == "closed" and ticket["LockID"] != 1:
            self._set_lock(ticket, 1, writer)  # closing unlocks

    def _set_lock(self, ticket: dict[str, Any], lock_id: int, writer: int) -> None:
        if ticket["LockID"] == lock_id:
            return
        ticket["LockID"] = lock_id
        self._history(ticket, "Lock" if lock_id != 1 else "Unlock", f"%%{LOCKS[lock_id]}", writer)
        if lock_id == 1 and self.config["owner_reset_on_unlock"] and ticket["OwnerID"] != ROOT_USER_ID:
            # Ticket::OwnerResetOnUnlock: unlocking hands the ticket back to root@localhost.
            ticket["OwnerID"] = ROOT_USER_ID
            self._history(ticket, "OwnerUpdate", "Reset owner to root@localhost.", writer)


def build_app(overrides: Mapping[str, Any] | None = None) -> OtoboSimulator:
    """An OTOBO simulator with ``overrides`` applied to :data:`DEFAULT_CONFIG` (for in-process use)."""
    return OtoboSimulator(merge_config(DEFAULT_CONFIG, overrides))


def profile_defaults(args: Any) -> dict[str, Any]:
    """The defaults a command line starts from: the stock install, or the lab profile with ``--lab``."""
    return merge_config(DEFAULT_CONFIG, lab_overrides()) if getattr(args, "lab", False) else dict(DEFAULT_CONFIG)


EPILOG = """\
examples:
  python -m simulators.otobo --lab --port 8080   # ready for the alert path (rulebook, make demo)
  python -m simulators.otobo --port 0 --port-file /tmp/otobo.port
  python -m simulators.otobo --print-config > otobo.json   # edit, then: --config otobo.json
  curl -s -XPOST "http://127.0.0.1:PORT/otobo/nph-genericinterface.pl/Webservice/GenericTicketConnectorREST/Session" \\
       -d '{"UserLogin":"alertbot","Password":"s3cret"}'

control API (not under the OTOBO path):
  GET /_sim/health | GET /_sim/state | POST /_sim/reset | POST /_sim/clock {"advance": seconds}
  GET|DELETE /_sim/requests   the request log (operation, method, status) / clear it and the counters
  GET|POST|DELETE /_sim/faults   e.g. {"kind":"http_status","status":503,"count":2,"operations":["TicketCreate"]}
  fault kinds: http_status (status, retry_after), latency (seconds), drop, auth_expiry; after_apply: true
  applies the operation first and then fails (an ambiguous write).  See docs/simulators.md.
"""


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(
        "python -m simulators.otobo",
        "Stateful OTOBO GenericTicketConnectorREST simulator (contract: OTOBO 11.0, MariaDB) with fault injection.",
        EPILOG,
    )
    parser.add_argument("--lab", action="store_true",
                        help="start from the lab profile (ticket types Incident/Problem/RfC, the IMS and alert dynamic fields) "
                             "instead of a stock install; --config still overrides it")
    return run_cli(OtoboSimulator, DEFAULT_CONFIG, parser, argv, profile=profile_defaults)


if __name__ == "__main__":
    sys.exit(main())
