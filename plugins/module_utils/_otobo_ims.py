# -*- coding: utf-8 -*-
# Copyright: (c) 2025, labops.itsm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""OTOBO implementation of the SOP engine's ``TicketPlatform`` (thin, over ``_otobo.OtoboClient``).

Mapping (all overridable, see ``docs/lifecycle.md``):

* an incident, problem or change request is one OTOBO ticket; its entity is kept in the
  dynamic field ``IMSEntity`` and, when ``ticket_types`` names one, in the ticket type;
* the IMS status is kept in ``IMSStatus`` and mirrored to an OTOBO state through ``state_map``
  (pending states get a ``PendingTime``, as OTOBO requires: the IMS follow-up time ``pending_until``, e.g.
  the end of the stability window of a resolved incident, which waits in ``pending auto close+``);
* the other IMS attributes live in dynamic fields (``FIELD_MAP``), lists comma separated;
* the S-level sets the OTOBO priority (``_priority.PLATFORM_PRIORITY_MAPS['otobo']``);
* the IMS id is the OTOBO ticket number; notes are internal (or customer-visible) articles.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import datetime
import math
from typing import Any, Callable, Mapping, Optional, cast

from ansible_collections.labops.itsm.plugins.module_utils import _priority as prio
from ansible_collections.labops.itsm.plugins.module_utils._errors import ValidationError
from ansible_collections.labops.itsm.plugins.module_utils._otobo import OPEN_STATES, state_type, title_with_marker
from ansible_collections.labops.itsm.plugins.module_utils._platform import DEFAULT_LOOKUP_LIMIT, FOLLOW_UP_KEY, TicketPlatform, merge_platform_state_map
from ansible_collections.labops.itsm.plugins.module_utils._time import normalise_time, parse_time, utc_now

PLATFORM = "otobo"
FIELD_MAP = {
    "entity": "IMSEntity", "status": "IMSStatus", "category": "IMSCategory", "subcategory": "IMSSubcategory",
    "priority": "IMSPriority", "severity": "IMSSeverity", "severity_level": "IMSSeverityLevel",
    "detection_source": "IMSDetectionSource", "reporter": "IMSReporter", "affected_service": "IMSAffectedService",
    "assigned_team": "IMSAssignedTeam", "change_link": "IMSChangeLink", "problem_link": "IMSProblemLink",
    "incident_links": "IMSIncidentLinks", "workaround": "IMSWorkaround", "root_cause": "IMSRootCause", "pir": "IMSPIR",
    "kb_link": "IMSKBLink", "opened_at": "IMSOpenedAt", "responded_at": "IMSRespondedAt", "resolved_at": "IMSResolvedAt",
    "resolved_by": "IMSResolvedBy", "closed_by": "IMSClosedBy", "requester": "IMSRequester", "approver": "IMSApprover",
    "vendor": "IMSVendor", "correlation_key": "IMSCorrelationKey",
}
LIST_KEYS = ("incident_links",)
DEFAULT_STATE_MAP = {
    "incident": {"open": "new", "in_progress": "open", "escalated": "open", "pending_vendor": "pending reminder",
                 "resolved": "pending auto close+", "closed": "closed successful"},
    "problem": {"open": "new", "under_investigation": "open", "known_error": "open", "resolved": "closed successful",
                "closed": "closed successful"},
    "change_request": {"pending": "new", "approved": "open", "rejected": "closed unsuccessful"},
}
DEFAULT_TICKET_TYPES = {"incident": "Incident", "problem": "Problem", "change_request": "RfC"}
DEFAULT_PRIORITY = "3 normal"
DEFAULT_QUEUE = "Raw"
# PendingTime of a pending state set without an IMS follow-up time (OTOBO refuses a pending state without one)
DEFAULT_PENDING_MINUTES = 24 * 60
SEARCH_CAP = 500


def pending_minutes(until: Any, now: Any = None) -> int:
    """OTOBO ``PendingTime.Diff`` (minutes from now, at least 1) for the IMS follow-up time ``until``."""
    if until is None or until == "":
        return DEFAULT_PENDING_MINUTES
    seconds = (cast(datetime.datetime, parse_time(until, FOLLOW_UP_KEY)) - (now or utc_now())).total_seconds()
    return max(1, math.ceil(seconds / 60.0))


def missing_read_permission_hint(queue: Any, agent: Any) -> str:
    """Why a ticket the agent just created is not found again (OTOBO's create and ro are separate permissions)."""
    return (f"the agent {agent!r} can create tickets in queue {queue!r} but lacks the 'ro' permission there, so every ticket "
            f"search answers nothing; grant the agent's group 'ro' (and 'rw' for updates) on queue {queue!r}")


def merge_state_map(overrides: Optional[Mapping[str, Any]]) -> dict:
    """DEFAULT_STATE_MAP with ``{entity: {status: state}}`` overrides applied."""
    return merge_platform_state_map(DEFAULT_STATE_MAP, overrides)


def _encode(key: str, value: Any) -> Any:
    if value is None:
        return ""
    if key in LIST_KEYS:
        return ",".join(str(item) for item in value)
    return str(value)


def _decode(key: str, value: Any) -> Any:
    if value is None or value == "":
        return [] if key in LIST_KEYS else None
    if isinstance(value, list):
        value = ",".join(str(item) for item in value)
    if key in LIST_KEYS:
        return [item for item in str(value).split(",") if item]
    return str(value)


class OtoboPlatform(TicketPlatform):
    """IMS records on OTOBO tickets."""

    name = PLATFORM

    def __init__(self, client: Any, *, queue: str, customer_user: Optional[str] = None, state_map: Optional[Mapping[str, Any]] = None,
                 ticket_types: Optional[Mapping[str, Any]] = None, priority_map: Optional[Mapping[str, Any]] = None,
                 field_map: Optional[Mapping[str, str]] = None) -> None:
        self.client = client
        self.queue = queue
        self.customer_user = customer_user
        self.state_map = merge_state_map(state_map)
        self.ticket_types = dict(DEFAULT_TICKET_TYPES, **dict(ticket_types or {}))
        self.priorities = prio.priority_map(PLATFORM, priority_map)
        self.field_map = dict(FIELD_MAP, **dict(field_map or {}))

    # -- reading ------------------------------------------------------------------------

    def to_record(self, ticket: Mapping[str, Any]) -> dict:
        dynamic = ticket.get("dynamic_fields") or {}
        record = {key: _decode(key, dynamic.get(name)) for key, name in self.field_map.items()}
        key = record.get("correlation_key")
        title = ticket.get("title") or ""
        if key and title.endswith(f" [ck:{key}]"):
            title = title[:-len(f" [ck:{key}]")]
        record.update(id=ticket.get("ticket_number"), title=title, opened_at=record.get("opened_at") or normalise_time(ticket.get("created"), "created"),
                      platform_state=ticket.get("state"), platform_priority=ticket.get("priority"), _ticket_id=ticket.get("ticket_id"))
        return record

    def get(self, entity: str, ref: str) -> Optional[dict]:
        text = str(ref).strip()
        if not text.isdigit():
            return None
        ticket = self.client.find_ticket_by_number(text)
        return None if ticket is None else self.to_record(ticket)

    def search(self, entity: str, *, active_only: bool = False, limit: int = DEFAULT_LOOKUP_LIMIT,
               match: Optional[Callable[[Mapping[str, Any]], bool]] = None) -> list:
        # Newest first (OrderBy Down): the SEARCH_CAP window must hold the recent tickets, not the oldest ones.
        criteria = {"Queues": [self.queue], "SortBy": "Age", "OrderBy": "Down", "Limit": SEARCH_CAP}
        if self.ticket_types.get(entity):
            criteria["Types"] = [self.ticket_types[entity]]
        if active_only:
            criteria["States"] = list(OPEN_STATES)
        records = []
        for ticket in self.client.get_tickets(self.client.search_ticket_ids(**criteria)):
            record = self.to_record(ticket)
            if record.get("entity") == entity and (match is None or match(record)):
                records.append(record)
                if len(records) >= limit:
                    break
        return records

    def find_by_correlation_key(self, key: str) -> Optional[dict]:
        ticket = self.client.find_by_correlation_key(key, open_only=False)
        if ticket is None:
            return None
        record = self.to_record(ticket)
        return record if record.get("entity") == "incident" else None

    # -- writing ------------------------------------------------------------------------

    def _state(self, entity: str, status: str) -> str:
        return self.state_map[entity][status]

    def _ticket_part(self, entity: str, values: Mapping[str, Any], creating: bool) -> dict:
        ticket = {}  # type: dict[str, Any]
        if "status" in values:
            ticket["state"] = self._state(entity, values["status"])
            if (state_type(ticket["state"]) or "").startswith("pending"):
                ticket["pending_time"] = {"Diff": pending_minutes(values.get(FOLLOW_UP_KEY))}
        if values.get("severity_level"):
            ticket["priority"] = prio.severity_to_priority(values["severity_level"], PLATFORM, self.priorities)
        elif creating:
            ticket["priority"] = DEFAULT_PRIORITY
        if "title" in values:
            ticket["title"] = title_with_marker(values["title"], values.get("correlation_key"))
        return ticket

    def _dynamic(self, values: Mapping[str, Any]) -> dict:
        return {self.field_map[key]: _encode(key, value) for key, value in values.items() if key in self.field_map}

    @staticmethod
    def _article(note: Optional[Mapping[str, Any]]) -> Optional[dict]:
        if not note:
            return None
        return {"subject": note["subject"], "body": note["body"] or note["subject"], "content_type": "text/plain; charset=utf8",
                "communication_channel": "Internal", "sender_type": "agent",
                "is_visible_for_customer": bool(note.get("visible"))}

    def create(self, entity: str, values: Mapping[str, Any], note: Mapping[str, Any]) -> Optional[dict]:
        if not self.customer_user:
            raise ValidationError(f"otobo: customer_user is required to create {entity} tickets")
        ticket = self._ticket_part(entity, values, True)
        ticket.update(queue=self.queue, customer_user=self.customer_user)
        if self.ticket_types.get(entity):
            ticket["type"] = self.ticket_types[entity]
        dynamic = {name: value for name, value in self._dynamic(values).items() if value != ""}
        correlation_field = getattr(self.client, "correlation_field", None)
        if correlation_field and values.get("correlation_key"):
            # The client searches this field when a POST search route is configured: keep it filled.
            dynamic.setdefault(correlation_field, values["correlation_key"])
        created = self.client.create_ticket(ticket, self._article(note), dynamic)
        stored = self.client.get_ticket(created["ticket_id"])
        if stored is None:
            # not readable (the agent may lack 'ro' on the queue): what OTOBO replied, so the creation can be audited
            return {"id": created["ticket_number"], "entity": entity, "_ticket_id": created["ticket_id"]} if created["ticket_number"] else None
        return self.to_record(stored)

    def update(self, record: Mapping[str, Any], changes: Mapping[str, Any], note: Optional[Mapping[str, Any]] = None) -> dict:
        ticket_id = record["_ticket_id"]
        values = dict(changes)
        if "title" in values:
            values.setdefault("correlation_key", record.get("correlation_key"))
        self.client.update_ticket(ticket_id, ticket=self._ticket_part(record["entity"], values, False) or None,
                                  article=self._article(note), dynamic_fields=self._dynamic(changes) or None)
        return self.to_record(self.client.get_ticket(ticket_id))

    def add_note(self, record: Mapping[str, Any], note: Mapping[str, Any]) -> None:
        self.client.update_ticket(record["_ticket_id"], article=self._article(note))

    def unfindable_hint(self, record: Optional[Mapping[str, Any]]) -> str:
        return missing_read_permission_hint(self.queue, getattr(self.client, "username", None))

    def routed(self, queue: Optional[str]) -> "OtoboPlatform":
        """The adapter for ``queue`` sharing this one's client (and so its OTOBO session)."""
        if not queue or queue == self.queue:
            return self
        other = copy.copy(self)
        other.queue = queue
        return other


def platform_from_params(params: Mapping[str, Any], client: Any) -> OtoboPlatform:
    """The adapter from the registry's validated options (``_platforms``) plus the routing ``queue``."""
    return OtoboPlatform(client, queue=params.get("queue") or DEFAULT_QUEUE, customer_user=params.get("customer_user"),
                         state_map=params.get("state_map"), ticket_types=params.get("ticket_types"),
                         priority_map=params.get("priority_map"), field_map=params.get("dynamic_field_map"))
