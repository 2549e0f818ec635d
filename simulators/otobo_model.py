"""OTOBO reference data, catalog lookups, persistent store and TicketGet-shaped views.

Everything here follows ``contracts/otobo.md`` sections 3-5: fresh-install reference data,
DateChecksum ticket numbers, the name matching observed on MariaDB and the ID types of
each response.  Nothing in this module speaks HTTP.
"""
from __future__ import annotations

import calendar
import json
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from simulators.base import ConfigError

STATES = [
    (1, "new", "new"), (2, "closed successful", "closed"), (3, "closed unsuccessful", "closed"), (4, "open", "open"),
    (5, "removed", "removed"), (6, "pending reminder", "pending reminder"), (7, "pending auto close+", "pending auto"),
    (8, "pending auto close-", "pending auto"), (9, "merged", "merged"),
]
STATE_TYPES = {"new": 1, "open": 2, "closed": 3, "pending reminder": 4, "pending auto": 5, "removed": 6, "merged": 7}
PRIORITIES = {1: "1 very low", 2: "2 low", 3: "3 normal", 4: "4 high", 5: "5 very high"}
BASE_QUEUES = ["Postmaster", "Raw", "Junk", "Misc"]
TYPES = {1: "Unclassified"}  # the stock install's only ticket type; config ``ticket_types`` adds more
LOCKS = {1: "unlock", 2: "lock", 3: "tmp_lock"}
SENDER_TYPES = {1: "agent", 2: "system", 3: "customer"}
CHANNELS = {1: "Email", 2: "Phone", 3: "Internal", 4: "Chat"}
API_CHANNELS = ("Email", "Phone", "Internal")
AUTO_RESPONSE_TYPES = ("auto reply", "auto reject", "auto follow up", "auto reply/new ticket", "auto remove")
HISTORY_TYPES = {
    name: index + 1 for index, name in enumerate((
        "NewTicket", "FollowUp", "SendAutoReject", "SendAutoReply", "SendAutoFollowUp", "Forward", "Bounce", "SendAnswer",
        "SendAgentNotification", "SendCustomerNotification", "EmailAgent", "EmailCustomer", "PhoneCallAgent",
        "PhoneCallCustomer", "AddNote", "Move", "Lock", "Unlock", "Remove", "TimeAccounting", "CustomerUpdate",
        "PriorityUpdate", "OwnerUpdate", "LoopProtection", "Misc", "SetPendingTime", "StateUpdate",
        "TicketDynamicFieldUpdate", "WebRequestCustomer", "TicketLinkAdd", "TicketLinkDelete", "SystemRequest", "Merged",
        "ResponsibleUpdate", "Subscribe", "Unsubscribe", "TypeUpdate", "ServiceUpdate", "SLAUpdate", "ArchiveFlagUpdate",
        "EscalationSolutionTimeStop", "EscalationResponseTimeStart", "EscalationUpdateTimeStart",
        "EscalationSolutionTimeStart", "EscalationResponseTimeNotifyBefore", "EscalationUpdateTimeNotifyBefore",
        "EscalationSolutionTimeNotifyBefore", "EscalationResponseTimeStop", "EscalationUpdateTimeStop", "TitleUpdate",
    ))
}
PROCESS_FIELDS = ("ProcessManagementActivityID", "ProcessManagementProcessID")
DF_TYPES = ("Text", "TextArea", "Dropdown", "Checkbox")
ROOT_USER_ID = 1
WELCOME_TN = "2015071510123456"

DEFAULT_CONFIG: dict[str, Any] = {
    "webservice": "GenericTicketConnectorREST",
    "webservice_id": 2,
    "path_prefix": "/otobo/nph-genericinterface.pl",
    "post_search_route": False,
    "post_search_operation": "TicketSearchPOST",
    "post_search_path": "/TicketSearch",
    "include_ticket_data": False,
    "max_length": 100000000,
    "session_idle_timeout": 7200,
    "session_max_time": 57600,
    "session_check_remote_ip": True,
    "owner_reset_on_unlock": True,
    "ticket_type_required": False,
    "title_max_length": 191,
    "check_mx": True,
    "mx_domains": [],
    "system_id": "10",
    "state_file": None,
    "agents": [
        {"login": "root@localhost", "password": "root", "id": 1, "first_name": "Admin", "last_name": "OTOBO", "email": "root@localhost"},
        {"login": "alertbot", "password": "s3cret", "id": 3, "first_name": "Alert", "last_name": "Bot", "email": "alertbot@corp.test",
         "deny_create_queues": ["Junk"], "deny_rw_queues": [], "deny_ro_queues": [], "create_only_queues": []},
    ],
    "customer_users": [
        {"login": "monitoring", "password": "m0nitoring", "customer_id": "monitoring-co", "first_name": "Mon", "last_name": "Itoring",
         "email": "monitoring@corp.test"},
    ],
    "queues": ["Infrastructure", "Platform", "Storage"],
    "ticket_types": [],
    "dynamic_fields": [
        {"name": "AlertFingerprint", "type": "Text"},
        {"name": "LabopsCorrelationKey", "type": "Text"},
        {"name": "IMSStatus", "type": "Text"},
        {"name": "IMSSeverity", "type": "Text"},
    ],
}


class OtoboError(Exception):
    """An operation-level error: HTTP 200 with ``{"Error": {...}}``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class OtoboFault(Exception):
    """An internal failure: HTTP 500 with a SOAP-style fault as text/plain."""


def fmt_time(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch))


def to_int(value: Any) -> int | None:
    """Coerce an ID parameter (number or numeric string) the way the Perl lookups do; None if not an ID."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*\d+\s*", value):
        return int(value)
    return None


def checksum_tn(base: str) -> str:
    """DateChecksum check digit: weights 1,2,1,2...; 10 - sum%10, with 10 mapped to 1."""
    total = sum(int(digit) * (1 if index % 2 == 0 else 2) for index, digit in enumerate(base))
    check = 10 - total % 10
    return base + str(1 if check == 10 else check)


@dataclass
class Agent:
    user_id: int
    login: str
    password: str
    first_name: str
    last_name: str
    email: str
    deny_create: frozenset[str]
    deny_rw: frozenset[str]
    deny_ro: frozenset[str]
    create_only: frozenset[str] = frozenset()


@dataclass
class CustomerUser:
    login: str
    password: str
    customer_id: str
    first_name: str
    last_name: str
    email: str


@dataclass
class DynamicFieldDef:
    name: str
    field_type: str
    possible_values: tuple[str, ...] = ()
    regex: str | None = None


class Catalog:
    """Reference data of one simulated installation (defaults + config), with OTOBO's lookup rules."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.queues = {index + 1: name for index, name in enumerate(BASE_QUEUES + [q for q in config["queues"] if q not in BASE_QUEUES])}
        self.agents = self._agents(config["agents"])
        self.customers = {item["login"]: self._customer(item) for item in config["customer_users"]}
        self.dynamic_fields = self._dynamic_fields(config["dynamic_fields"])
        self.types = self._types(config["ticket_types"])
        self.check_mx = bool(config["check_mx"])
        self.mx_domains = {str(domain).lower() for domain in config["mx_domains"]}

    @staticmethod
    def _agents(items: list[Mapping[str, Any]]) -> dict[int, Agent]:
        agents: dict[int, Agent] = {}
        next_id = 2
        for item in items:
            user_id = int(item.get("id") or 0)
            if not user_id:
                while next_id in agents or any(int(other.get("id") or 0) == next_id for other in items):
                    next_id += 1
                user_id = next_id
            agents[user_id] = Agent(
                user_id, item["login"], str(item["password"]), item.get("first_name", item["login"]), item.get("last_name", ""),
                item.get("email", f"{item['login']}@localhost"), frozenset(item.get("deny_create_queues", [])),
                frozenset(item.get("deny_rw_queues", [])), frozenset(item.get("deny_ro_queues", [])),
                frozenset(item.get("create_only_queues", [])),
            )
        if ROOT_USER_ID not in agents:
            agents[ROOT_USER_ID] = Agent(ROOT_USER_ID, "root@localhost", "root", "Admin", "OTOBO", "root@localhost", frozenset(), frozenset(), frozenset())
        return agents

    @staticmethod
    def _customer(item: Mapping[str, Any]) -> CustomerUser:
        return CustomerUser(item["login"], str(item["password"]), item.get("customer_id", item["login"]), item.get("first_name", item["login"]),
                            item.get("last_name", ""), item.get("email", f"{item['login']}@localhost"))

    @staticmethod
    def _dynamic_fields(items: list[Mapping[str, Any]]) -> dict[str, DynamicFieldDef]:
        fields = {name: DynamicFieldDef(name, "Text") for name in PROCESS_FIELDS}
        for item in items:
            field_type = item.get("type", "Text")
            if field_type not in DF_TYPES:
                raise ConfigError(f"dynamic field {item.get('name')!r}: type must be one of {', '.join(DF_TYPES)}")
            fields[item["name"]] = DynamicFieldDef(item["name"], field_type, tuple(item.get("possible_values", ())), item.get("regex"))
        return fields

    @staticmethod
    def _types(names: Any) -> dict[int, str]:
        """Unclassified (ID 1) plus the admin-created types in config order (IDs 2, 3, ...), like AdminType would number them."""
        if not isinstance(names, list):
            raise ConfigError("ticket_types must be a list of type names")
        types = dict(TYPES)
        for name in names:
            if not isinstance(name, str) or not name.strip() or name != name.strip():
                raise ConfigError(f"ticket_types: {name!r} is not a type name (non-empty, no surrounding spaces)")
            if name in types.values():
                raise ConfigError(f"ticket_types: type {name!r} already exists")
            types[len(types) + 1] = name
        return types

    # -- lookups; each returns an ID or None
    def type_by_name(self, name: str) -> int | None:
        """Types match exactly (like Priority): ``incident`` is not ``Incident``."""
        return next((type_id for type_id, type_name in self.types.items() if type_name == name), None)

    def queue_by_name(self, name: str) -> tuple[int | None, bool]:
        """(QueueID, exact): MariaDB matches case-insensitively, the later cache lookup does not."""
        for queue_id, queue in self.queues.items():
            if queue == name:
                return queue_id, True
        for queue_id, queue in self.queues.items():
            if queue.lower() == name.lower():
                return queue_id, False
        return None, False

    @staticmethod
    def state_by_name(name: str) -> int | None:
        return next((sid for sid, sname, _t in STATES if sname.lower() == name.lower()), None)

    @staticmethod
    def state(state_id: int) -> tuple[str, str]:
        for sid, name, state_type in STATES:
            if sid == state_id:
                return name, state_type
        raise KeyError(state_id)

    @staticmethod
    def priority_by_name(name: str) -> int | None:
        return next((pid for pid, pname in PRIORITIES.items() if pname == name), None)

    def agent_by_login(self, login: str) -> Agent | None:
        return next((agent for agent in self.agents.values() if agent.login == login), None)

    def valid_customer_user(self, value: str) -> bool:
        """The CustomerUser rule: existing login, else a mail address that passes the (offline) mail check."""
        if value in self.customers:
            return True
        if value in ("root@localhost", "admin@localhost"):
            return True
        match = re.fullmatch(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@((?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,})", value)
        if not match:
            return False
        domain = match.group(1).lower()
        if re.fullmatch(r"(?:.+\.)?example\.[a-z]+", domain):
            return False
        return not self.check_mx or domain in self.mx_domains

    def customer_from(self, value: str) -> str:
        customer = self.customers.get(value)
        if customer is None:
            return value
        return f'"{customer.first_name} {customer.last_name}" <{customer.email}>'

    def user_login(self, user_id: int) -> str:
        agent = self.agents.get(user_id)
        return agent.login if agent else "root@localhost"


# --------------------------------------------------------------------------- store


class Store:
    """All mutable simulated state.  Callers hold the app lock."""

    def __init__(self, catalog: Catalog, system_id: str, now: float) -> None:
        self.catalog = catalog
        self.system_id = system_id
        self.tickets: dict[int, dict[str, Any]] = {}
        self.sessions: dict[str, dict[str, Any]] = {}
        self.sessions_created = 0  # SessionCreate calls that succeeded since the last reset
        self.next_ticket_id = 1
        self.next_article_id = 1
        self.tn_date = ""
        self.tn_counter = 0
        self._seed_welcome(now)

    def _seed_welcome(self, now: float) -> None:
        ticket = self.new_ticket(WELCOME_TN, "Welcome to OTOBO!", 2, 1, 3, ROOT_USER_ID, now)
        ticket.update({"CustomerUserID": "customer@example.com", "CustomerID": "customer@example.com"})
        self.add_article(ticket, {
            "SenderTypeID": 3, "CommunicationChannelID": 1, "IsVisibleForCustomer": 1, "Subject": "Welcome to OTOBO!",
            "Body": "Welcome to OTOBO!\n\nThank you for installing OTOBO.\n", "ContentType": "text/plain; charset=utf-8",
            "MimeType": "text/plain", "Charset": "utf-8", "From": "OTOBO Feedback <marketing@otobo.de>", "To": "Raw",
        }, ROOT_USER_ID, now)
        self.add_history(ticket, "NewTicket", f"%%{WELCOME_TN}%%Raw%%3 normal%%new%%1", ROOT_USER_ID, now)

    def new_ticket(self, number: str, title: str, queue_id: int, state_id: int, priority_id: int, user_id: int, now: float) -> dict[str, Any]:
        ticket = {
            "TicketID": self.next_ticket_id, "TicketNumber": number, "Title": title, "QueueID": queue_id, "StateID": state_id,
            "PriorityID": priority_id, "TypeID": 1, "LockID": 1, "OwnerID": ROOT_USER_ID, "ResponsibleID": ROOT_USER_ID,
            "CustomerUserID": "", "CustomerID": "", "Created": now, "Changed": now, "CreateBy": user_id, "ChangeBy": user_id,
            "PendingUntil": 0, "UnlockTimeout": 0, "ArchiveFlag": "n", "DynamicField": {}, "Articles": [], "History": [],
        }
        self.tickets[ticket["TicketID"]] = ticket
        self.next_ticket_id += 1
        return ticket

    def next_ticket_number(self, now: float) -> str:
        """DateChecksum: YYYYMMDD + SystemID + 5-digit counter (reset daily) + check digit."""
        day = time.strftime("%Y%m%d", time.gmtime(now))
        if day != self.tn_date:
            self.tn_date, self.tn_counter = day, 0
        self.tn_counter += 1
        return checksum_tn(f"{day}{self.system_id}{self.tn_counter:05d}")

    def add_article(self, ticket: dict[str, Any], fields: Mapping[str, Any], user_id: int, now: float) -> dict[str, Any]:
        article = {
            "ArticleID": self.next_article_id, "ArticleNumber": len(ticket["Articles"]) + 1, "Cc": "", "Bcc": "", "ReplyTo": "",
            "MessageID": "", "InReplyTo": "", "References": "", "TimeUnit": 0, "Attachments": [],
            "IncomingTime": int(now), "Created": now, "CreateBy": user_id,
        }
        article.update(fields)
        ticket["Articles"].append(article)
        self.next_article_id += 1
        return article

    def add_history(self, ticket: dict[str, Any], history_type: str, name: str, user_id: int, now: float, article_id: int = 0) -> None:
        ticket["History"].append({
            "HistoryType": history_type, "HistoryTypeID": HISTORY_TYPES[history_type], "Name": name, "CreateTime": fmt_time(now),
            "CreateBy": user_id, "ArticleID": article_id, "QueueID": ticket["QueueID"], "OwnerID": ticket["OwnerID"],
            "PriorityID": ticket["PriorityID"], "StateID": ticket["StateID"], "TypeID": ticket["TypeID"],
        })

    def find_by_number(self, number: str) -> dict[str, Any] | None:
        return next((t for t in self.tickets.values() if t["TicketNumber"] == number), None)

    # -- persistence
    def to_json(self) -> dict[str, Any]:
        return {
            "format": 1, "tickets": list(self.tickets.values()), "sessions": self.sessions, "sessions_created": self.sessions_created,
            "next_ticket_id": self.next_ticket_id,
            "next_article_id": self.next_article_id, "tn_date": self.tn_date, "tn_counter": self.tn_counter,
        }

    def load_json(self, data: Mapping[str, Any]) -> None:
        self.tickets = {int(t["TicketID"]): t for t in data["tickets"]}
        self.sessions = dict(data.get("sessions", {}))
        self.sessions_created = int(data.get("sessions_created", len(self.sessions)))
        self.next_ticket_id = int(data["next_ticket_id"])
        self.next_article_id = int(data["next_article_id"])
        self.tn_date = str(data.get("tn_date", ""))
        self.tn_counter = int(data.get("tn_counter", 0))

    def save(self, path: str) -> None:
        """Atomic write (temp file + rename): a crash never leaves a truncated state file."""
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(self.to_json(), handle, ensure_ascii=False)
        os.replace(tmp, path)


# --------------------------------------------------------------------------- views


def pending_epoch(spec: Mapping[str, Any], now: float) -> int:
    """Absolute pending time of a validated PendingTime object ({Diff} in minutes, or Y/M/D/h/m in UTC)."""
    if "Diff" in spec:
        return int(now) + int(spec["Diff"]) * 60
    return calendar.timegm((int(spec["Year"]), int(spec["Month"]), int(spec["Day"]), int(spec["Hour"]), int(spec["Minute"]), 0, 0, 0, 0))


def valid_pending_time(spec: Any) -> bool:
    if not isinstance(spec, dict) or not spec:
        return False
    if "Diff" in spec:
        return set(spec) == {"Diff"} and to_int(spec["Diff"]) is not None
    keys = ("Year", "Month", "Day", "Hour", "Minute")
    if set(spec) != set(keys) or any(to_int(spec[key]) is None for key in keys):
        return False
    year, month, day, hour, minute = (int(spec[key]) for key in keys)
    try:
        time.strptime(f"{year:04d}-{month:02d}-{day:02d} {hour:02d}:{minute:02d}", "%Y-%m-%d %H:%M")
    except ValueError:
        return False
    return True


def ticket_view(catalog: Catalog, ticket: Mapping[str, Any], now: float) -> dict[str, Any]:
    """The TicketGet key set for a ticket without service/SLA (IDs numbers, TicketNumber string)."""
    state, state_type = catalog.state(ticket["StateID"])
    until = ticket["PendingUntil"]
    pending = state_type.startswith("pending")
    return {
        "TicketID": ticket["TicketID"], "TicketNumber": ticket["TicketNumber"], "Title": ticket["Title"],
        "State": state, "StateID": ticket["StateID"], "StateType": state_type,
        "Priority": PRIORITIES[ticket["PriorityID"]], "PriorityID": ticket["PriorityID"],
        "Queue": catalog.queues[ticket["QueueID"]], "QueueID": ticket["QueueID"],
        "Lock": LOCKS[ticket["LockID"]], "LockID": ticket["LockID"], "Type": catalog.types[ticket["TypeID"]], "TypeID": ticket["TypeID"],
        "Owner": catalog.user_login(ticket["OwnerID"]), "OwnerID": ticket["OwnerID"],
        "Responsible": catalog.user_login(ticket["ResponsibleID"]), "ResponsibleID": ticket["ResponsibleID"],
        "ServiceID": "", "SLAID": "", "GroupID": 1,
        "CustomerUserID": ticket["CustomerUserID"], "CustomerID": ticket["CustomerID"],
        "Created": fmt_time(ticket["Created"]), "CreateBy": ticket["CreateBy"],
        "Changed": fmt_time(ticket["Changed"]), "ChangeBy": ticket["ChangeBy"],
        "Age": int(now - ticket["Created"]), "ArchiveFlag": ticket["ArchiveFlag"],
        "UntilTime": max(int(until - now), 0) if pending and until else 0, "TimeUnit": sum(a.get("TimeUnit", 0) for a in ticket["Articles"]),
        "RealTillTimeNotUsed": until, "UnlockTimeout": ticket["UnlockTimeout"], "EscalationTime": 0,
        "EscalationResponseTime": 0, "EscalationUpdateTime": 0, "EscalationSolutionTime": 0,
    }


def dynamic_field_list(catalog: Catalog, ticket: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every ticket dynamic field, set or not (unset ones are null), sorted by name."""
    return [{"Name": name, "Value": ticket["DynamicField"].get(name)} for name in sorted(catalog.dynamic_fields)]


def article_view(article: Mapping[str, Any], ticket_id: int, *, with_body: bool = True) -> dict[str, Any]:
    view = {
        "ArticleID": article["ArticleID"], "ArticleNumber": article["ArticleNumber"], "TicketID": ticket_id,
        "SenderType": SENDER_TYPES[article["SenderTypeID"]], "SenderTypeID": str(article["SenderTypeID"]),
        "CommunicationChannelID": article["CommunicationChannelID"], "IsVisibleForCustomer": article["IsVisibleForCustomer"],
        "From": article["From"], "To": article["To"], "Cc": article["Cc"], "Bcc": article["Bcc"], "ReplyTo": article["ReplyTo"],
        "MessageID": article["MessageID"], "InReplyTo": article["InReplyTo"], "References": article["References"],
        "IncomingTime": article["IncomingTime"], "TimeUnit": article["TimeUnit"], "IsEdited": 0, "IsDeleted": 0,
        "CreateBy": article["CreateBy"], "ChangeBy": article["CreateBy"],
        "CreateTime": fmt_time(article["Created"]), "ChangeTime": fmt_time(article["Created"]),
    }
    if with_body:
        view.update({
            "Subject": article["Subject"], "Body": article["Body"], "ContentType": article["ContentType"],
            "MimeType": article["MimeType"], "Charset": article["Charset"], "ContentCharset": article["Charset"],
        })
    return view


def attachment_view(attachments: list[Mapping[str, Any]], with_content: bool) -> list[dict[str, Any]]:
    views = []
    for index, item in enumerate(attachments, start=1):
        view = {
            "Filename": item["Filename"], "ContentType": item["ContentType"], "FileID": str(index), "FilesizeRaw": str(item["Size"]),
            "ContentID": "", "ContentAlternative": "", "Disposition": item.get("Disposition", "attachment"),
        }
        if with_content:
            view["Content"] = item["Content"]
        views.append(view)
    return views


def history_view(ticket: Mapping[str, Any]) -> dict[str, Any]:
    """TicketHistoryGet entry for one ticket: TicketID a string outside and in every entry."""
    tid = str(ticket["TicketID"])
    return {"TicketID": tid, "History": [dict(entry, TicketID=tid) for entry in ticket["History"]]}
