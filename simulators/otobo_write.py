"""TicketCreate / TicketUpdate validation (in the observed check order) and their side effects.

Validators raise :class:`OtoboError` (HTTP 200 + Error) or :class:`OtoboFault` (HTTP 500) on the
first failure, exactly like the Perl operations return on their first failed check.
"""
from __future__ import annotations

import base64
import binascii
import codecs
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from simulators.otobo_model import (
    API_CHANNELS,
    AUTO_RESPONSE_TYPES,
    CHANNELS,
    HISTORY_TYPES,
    LOCKS,
    PRIORITIES,
    ROOT_USER_ID,
    SENDER_TYPES,
    Agent,
    Catalog,
    OtoboError,
    OtoboFault,
    fmt_time,
    to_int,
    valid_pending_time,
)

_MIME_RE = re.compile(r"[\w.+-]+/[\w.+-]+")
_NOTIFY_LISTS = ("ForceNotificationToUserID", "ExcludeNotificationToUserID", "ExcludeMuteNotificationToUserID")


def perl_true(value: Any) -> bool:
    """Perl truthiness of a decoded JSON value: undef, '', '0' and 0 are false."""
    return value not in (None, "", "0", 0, False)


def string_with_data(value: Any) -> bool:
    return not isinstance(value, (bool, list, dict)) and value is not None and str(value) != ""


def hash_with_data(value: Any) -> bool:
    return isinstance(value, dict) and bool(value)


@dataclass
class Principal:
    """The authenticated caller; customers write as the customer panel user (root@localhost)."""

    user_type: str
    login: str
    user_id: int
    customer_id: str = ""
    agent: Agent | None = None

    @property
    def is_customer(self) -> bool:
        return self.user_type == "Customer"

    @property
    def writer_id(self) -> int:
        return ROOT_USER_ID if self.is_customer else self.user_id


@dataclass
class TicketInput:
    """Resolved ``Ticket`` values; None means "not given"."""

    title: str | None = None
    customer_user: str | None = None
    customer_id: str | None = None
    queue_id: int | None = None
    queue_exact: bool = True
    lock_id: int | None = None
    type_id: int | None = None
    state_id: int | None = None
    priority_id: int | None = None
    owner_id: int | None = None
    responsible_id: int | None = None
    pending: dict[str, Any] | None = None
    state_given: bool = False


@dataclass
class ArticleInput:
    fields: dict[str, Any]
    history_type: str
    history_comment: str
    attachments: list[dict[str, Any]] = field(default_factory=list)


def _err(op: str, kind: str, message: str) -> OtoboError:
    return OtoboError(f"{op}.{kind}", f"{op}: {message}")


# --------------------------------------------------------------------------- Ticket part


def _resolve(op: str, ticket: Mapping[str, Any], pair: tuple[str, str], lookup: Any, valid_id: Any, required: bool) -> int | None:
    """Resolve an ``XID``/``X`` pair (the ID wins); message names the pair like OTOBO does."""
    id_key, name_key = pair
    raw_id, raw_name = ticket.get(id_key), ticket.get(name_key)
    if not perl_true(raw_id) and not perl_true(raw_name):
        if required:
            raise _err(op, "MissingParameter", f"Ticket->{id_key} or Ticket->{name_key} parameter is required!")
        return None
    if perl_true(raw_id):
        number = to_int(raw_id)
        resolved = number if number is not None and valid_id(number) else None
    else:
        resolved = lookup(str(raw_name).strip()) if string_with_data(raw_name) else None
    if resolved is None:
        raise _err(op, "InvalidParameter", f"Ticket->{id_key} or Ticket->{name_key} parameter is invalid!")
    return resolved


def _exact(table: Mapping[int, str]) -> Any:
    return lambda name: next((key for key, value in table.items() if value == name), None)


def check_ticket(op: str, ticket: Mapping[str, Any], catalog: Catalog, create: bool, type_required: bool = False) -> TicketInput:
    """Ticket checks in the observed order: Title, CustomerUser, Queue, Lock, Type, Service, SLA, State, Priority, Owner, Responsible, PendingTime."""
    result = TicketInput()
    _check_title_customer(op, ticket, catalog, create, result)
    queue_exact = {"exact": True}

    def queue_lookup(name: str) -> int | None:
        queue_id, queue_exact["exact"] = catalog.queue_by_name(name)
        return queue_id

    result.queue_id = _resolve(op, ticket, ("QueueID", "Queue"), queue_lookup, lambda i: i in catalog.queues, create)
    result.queue_exact = queue_exact["exact"]
    result.lock_id = _resolve(op, ticket, ("LockID", "Lock"), _exact(LOCKS), lambda i: i in LOCKS, False)
    if create and type_required and not perl_true(ticket.get("TypeID")) and not perl_true(ticket.get("Type")):
        # SysConfig Ticket::Type on: TicketCreate needs a type (the message ends without the option name).
        raise _err(op, "MissingParameter", "Ticket->TypeID or Ticket->Type parameter is required by sysconfig option!")
    # Validated even though the ticket-type feature is off: an unknown type is InvalidParameter.
    result.type_id = _resolve(op, ticket, ("TypeID", "Type"), catalog.type_by_name, lambda i: i in catalog.types, False)
    for pair in (("ServiceID", "Service"), ("SLAID", "SLA")):
        # The fresh install has no services or SLAs, so any value is unknown.
        _resolve(op, ticket, pair, lambda _name: None, lambda _id: False, False)
    result.state_id = _resolve(op, ticket, ("StateID", "State"), catalog.state_by_name, lambda i: i in range(1, 10), create)
    result.state_given = result.state_id is not None
    result.priority_id = _resolve(op, ticket, ("PriorityID", "Priority"), catalog.priority_by_name, lambda i: i in PRIORITIES, create)

    def agent_lookup(login: str) -> int | None:
        agent = catalog.agent_by_login(login)
        return agent.user_id if agent else None

    result.owner_id = _resolve(op, ticket, ("OwnerID", "Owner"), agent_lookup, lambda i: i in catalog.agents, False)
    result.responsible_id = _resolve(op, ticket, ("ResponsibleID", "Responsible"), agent_lookup, lambda i: i in catalog.agents, False)
    if perl_true(ticket.get("PendingTime")):
        if not valid_pending_time(ticket["PendingTime"]):
            raise _err(op, "InvalidParameter", "Ticket->PendingTime parameter is invalid!")
        result.pending = dict(ticket["PendingTime"])
    return result


def _check_title_customer(op: str, ticket: Mapping[str, Any], catalog: Catalog, create: bool, result: TicketInput) -> None:
    title, customer = ticket.get("Title"), ticket.get("CustomerUser")
    if create and not perl_true(title):
        raise _err(op, "MissingParameter", "Ticket->Title parameter is missing!")
    if create and not perl_true(customer):
        raise _err(op, "MissingParameter", "Ticket->CustomerUser parameter is missing!")
    if string_with_data(title) and str(title).strip():
        result.title = str(title).strip()
    if perl_true(customer):
        value = str(customer).strip() if string_with_data(customer) else ""
        if not value or not catalog.valid_customer_user(value):
            raise _err(op, "InvalidParameter", "Ticket->CustomerUser parameter is invalid!")
        result.customer_user = value
    if string_with_data(ticket.get("CustomerID")):
        result.customer_id = str(ticket["CustomerID"]).strip()


# --------------------------------------------------------------------------- Article part


def check_article(op: str, article: Mapping[str, Any], principal: Principal, catalog: Catalog, create: bool) -> ArticleInput:
    """Article checks: Subject/Body, AutoResponseType, channel, sender, From, content type, HistoryType, TimeUnit, NoAgentNotify, lists."""
    for needed in ("Subject", "Body"):
        if not string_with_data(article.get(needed)):
            raise _err(op, "MissingParameter", f"Article->{needed} parameter is missing!")
    auto = article.get("AutoResponseType", "auto reply" if create else "auto follow up")
    if auto not in AUTO_RESPONSE_TYPES:
        raise _err(op, "InvalidParameter", "Article->AutoResponseType is invalid!")
    channel_id = _channel(op, article)
    sender_id = _sender(op, article, principal)
    if perl_true(article.get("From")) and not re.search(r"[^@\s<>\"]+@[^@\s<>\"]+", str(article["From"])):
        raise _err(op, "InvalidParameter", "Article->From parameter is invalid!")
    mime, charset, content_type = _content_type(op, article)
    history_type = str(article.get("HistoryType") or ("NewTicket" if create else "AddNote"))
    if history_type not in HISTORY_TYPES:
        raise _err(op, "InvalidParameter", "Article->HistoryType is invalid!")
    time_unit = article.get("TimeUnit", 0)
    if time_unit not in (None, "") and not re.fullmatch(r"-?\d+(\.\d+)?", str(time_unit)):
        raise _err(op, "InvalidParameter", "Article->TimeUnit should be a number!")
    if article.get("NoAgentNotify") not in (None, "") and str(article["NoAgentNotify"]) != "1":
        raise _err(op, "InvalidParameter", "Article->NoAgentNotify is invalid!")
    for key in _NOTIFY_LISTS:
        value = article.get(key)
        if value is not None and (not isinstance(value, list) or any(to_int(i) not in catalog.agents for i in value)):
            raise _err(op, "InvalidParameter", f"Article->{key} is invalid!")
    visible = article.get("IsVisibleForCustomer", 1)
    fields = {
        "SenderTypeID": sender_id, "CommunicationChannelID": channel_id, "IsVisibleForCustomer": 0 if str(visible) in ("0", "") else 1,
        "Subject": str(article["Subject"]).strip(), "Body": str(article["Body"]), "ContentType": content_type,
        "MimeType": mime, "Charset": charset, "From": str(article.get("From") or "").strip(),
        "TimeUnit": float(time_unit) if time_unit not in (None, "") and "." in str(time_unit) else int(time_unit or 0),
    }
    comment = str(article.get("HistoryComment") or ("%%GenericInterface Create" if create else "%%GenericInterface Note"))
    return ArticleInput(fields, history_type, comment)


def _channel(op: str, article: Mapping[str, Any]) -> int:
    if perl_true(article.get("CommunicationChannelID")):
        channel_id = to_int(article["CommunicationChannelID"])
        name = CHANNELS.get(channel_id or 0)
    else:
        name = str(article.get("CommunicationChannel") or "Internal")
        channel_id = next((key for key, value in CHANNELS.items() if value == name), None)
    if name not in API_CHANNELS or channel_id is None:
        raise _err(op, "InvalidParameter", "Article->CommunicationChannel or Article->CommunicationChannelID parameter is invalid or not supported!")
    return channel_id


def _sender(op: str, article: Mapping[str, Any], principal: Principal) -> int:
    if perl_true(article.get("SenderTypeID")):
        sender_id = to_int(article["SenderTypeID"])
        valid = sender_id in SENDER_TYPES
    else:
        name = str(article.get("SenderType") or ("customer" if principal.is_customer else "agent"))
        sender_id = next((key for key, value in SENDER_TYPES.items() if value == name), None)
        valid = sender_id is not None
    if not valid or sender_id is None:
        raise _err(op, "InvalidParameter", "Article->SenderTypeID or Ticket->SenderType parameter is invalid!")
    return sender_id


def _charset_ok(charset: str) -> bool:
    try:
        codecs.lookup(charset)
    except LookupError:
        return False
    return True


def _content_type(op: str, article: Mapping[str, Any]) -> tuple[str, str, str]:
    """(MimeType, Charset, ContentType) from ContentType or MimeType+Charset."""
    if perl_true(article.get("ContentType")):
        text = str(article["ContentType"])
        match = re.fullmatch(r"\s*([^;\s]+)\s*;\s*charset\s*=\s*\"?([^\";\s]+)\"?\s*(;.*)?", text, re.IGNORECASE)
        if not match or not _MIME_RE.fullmatch(match.group(1)) or not _charset_ok(match.group(2)):
            raise _err(op, "InvalidParameter", "Article->ContentType is invalid!")
        return match.group(1), match.group(2), text
    if not perl_true(article.get("MimeType")) or not perl_true(article.get("Charset")):
        raise _err(op, "MissingParameter", "Article->ContentType or Ticket->MimeType and Article->Charset parameters are required!")
    mime, charset = str(article["MimeType"]), str(article["Charset"])
    if not _MIME_RE.fullmatch(mime):
        raise _err(op, "InvalidParameter", "Article->MimeType is invalid!")
    if not _charset_ok(charset):
        raise _err(op, "InvalidParameter", "Article->Charset is invalid!")
    return mime, charset, f"{mime}; charset={charset}"


# --------------------------------------------------------------------------- DynamicField / Attachment parts


def check_dynamic_fields(op: str, value: Any, catalog: Catalog) -> list[tuple[str, str]]:
    """(Name, Value) pairs; a list item that is not an object is an internal fault (HTTP 500)."""
    if value is None:
        return []
    result = []
    for item in value if isinstance(value, list) else [value]:
        if not isinstance(item, dict):
            raise OtoboFault(f"{op}: Ticket->DynamicField parameter is invalid!")
        if not string_with_data(item.get("Name")):
            raise _err(op, "MissingParameter", "DynamicField->Name  parameter is missing!")
        if item.get("Value") is None:
            raise _err(op, "MissingParameter", "DynamicField->Value  parameter is missing!")
        definition = catalog.dynamic_fields.get(str(item["Name"]))
        if definition is None:
            raise _err(op, "InvalidParameter", "DynamicField->Name parameter is invalid!")
        normalized = _df_value(definition.field_type, definition, item["Value"])
        if normalized is None:
            raise _err(op, "InvalidParameter", "DynamicField->Value parameter is invalid!")
        result.append((definition.name, normalized))
    return result


def _df_value(field_type: str, definition: Any, value: Any) -> str | None:
    """The stored form of a value, or None when the field's validator rejects it."""
    if isinstance(value, (list, dict, bool)):
        return None
    text = str(value)
    if field_type == "Checkbox":
        return text if text in ("0", "1") else None
    if field_type == "Dropdown":
        return text if text == "" or text in definition.possible_values else None
    if definition.regex and text and not re.search(definition.regex, text):
        return None
    return text


def check_attachments(op: str, value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    result = []
    for item in value if isinstance(value, list) else [value]:
        if not isinstance(item, dict):
            raise OtoboFault(f"{op}: Ticket->Attachment parameter is invalid!")
        for needed in ("Content", "ContentType", "Filename"):
            if not string_with_data(item.get(needed)):
                raise _err(op, "MissingParameter", f"Attachment->{needed}  parameter is missing!")
        if not re.fullmatch(r"[\w.+-]+/[\w.+-]+(\s*;.*)?", str(item["ContentType"])):
            raise _err(op, "InvalidParameter", "Attachment->ContentType is invalid!")
        try:
            size = len(base64.b64decode(str(item["Content"]), validate=False))
        except (binascii.Error, ValueError) as exc:
            raise _err(op, "InvalidParameter", "Attachment->Content is invalid!") from exc
        result.append({"Filename": str(item["Filename"]), "ContentType": str(item["ContentType"]), "Content": str(item["Content"]),
                       "Size": size, "Disposition": str(item.get("Disposition") or "attachment")})
    return result


def structure_ok(value: Any) -> bool:
    """``DynamicField``/``Attachment`` must be absent, a non-empty object or a non-empty list."""
    return value is None or hash_with_data(value) or (isinstance(value, list) and bool(value))


def pending_history_name(epoch: int) -> str:
    return "%%" + fmt_time(epoch)[:16]
