# -*- coding: utf-8 -*-
# Copyright: (c) 2025, labops.itsm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""ServiceNow implementation of the SOP engine's ``TicketPlatform`` (thin, over ``_servicenow.ServiceNowClient``).

Mapping (all overridable, see ``docs/lifecycle.md``):

* incidents live in ``incident``, problems in ``problem``, change requests in ``change_request``; the IMS id is
  the record ``number`` (``INC0010001``); ``get`` also accepts a sys_id;
* the IMS status is the native ``state`` (``state_map``) and is also kept in ``u_ims_status`` to tell apart
  IMS statuses that share a state (``in_progress`` and ``escalated`` are both 2 In Progress); a state changed in
  ServiceNow wins over a stale ``u_ims_status``. ``pending_vendor`` is On Hold with ``hold_reason`` 4 (Awaiting
  Vendor); ``resolved`` and ``closed`` carry ``close_code`` / ``close_notes`` in the same PATCH (a data policy
  usually demands it); problems get ``resolution_code`` and ``close_notes``; a change's status is also its
  ``approval``;
* the S-level sets ``impact`` / ``urgency`` (``_priority.servicenow_impact_urgency``) and ServiceNow derives
  ``priority``; the IMS priority and S-level are read back from the native priority;
* ``assigned_team`` is the ``assignment_group``: the first-line team ``service_desk`` is the routed queue (the
  assignment group the CMDB names), other teams the group named in ``team_groups`` (default: the team's name);
* ``correlation_key`` -> ``correlation_id``, ``problem_link`` -> ``problem_id``, ``change_link`` -> ``rfc``,
  ``title`` -> ``short_description``, ``detection_source`` -> ``contact_type``, ``opened_at`` -> ``opened_at``,
  a problem's ``workaround`` and ``root_cause`` -> ``workaround`` and ``cause_notes``, the incident's
  ``severity`` -> ``severity``; every other IMS key -> a ``u_`` field (``field_map``);
* notes are work notes (a customer-visible note: ``comments``); the IMS follow-up time goes to ``follow_up``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import re
from typing import Any, Callable, Mapping, Optional

from ansible_collections.labops.itsm.plugins.module_utils import _priority as prio
from ansible_collections.labops.itsm.plugins.module_utils._errors import NotFoundError, PermissionDenied, ValidationError
from ansible_collections.labops.itsm.plugins.module_utils._platform import (
    DEFAULT_LOOKUP_LIMIT,
    FOLLOW_UP_KEY,
    TicketPlatform,
    merge_platform_state_map,
    validate_correlation_key,
)
from ansible_collections.labops.itsm.plugins.module_utils._servicenow import SYS_ID_RE, eq
from ansible_collections.labops.itsm.plugins.module_utils._time import format_time, parse_time

PLATFORM = "servicenow"
TABLES = {"incident": "incident", "problem": "problem", "change_request": "change_request"}
NUMBER_PREFIXES = {"INC": "incident", "PRB": "problem", "CHG": "change_request"}
DEFAULT_QUEUE = "Service Desk"
DEFAULT_CLOSE_CODE = "Solution provided"
DEFAULT_PROBLEM_RESOLUTION = "fix_applied"
INTAKE_TEAM = "service_desk"
SEARCH_CAP = 500
SEARCH_PAGE = 100
HOLD_AWAITING_VENDOR = "4"
# newest first; records created within the same second are ordered by their number
NEWEST_FIRST = "ORDERBYDESCsys_created_on^ORDERBYDESCnumber"
LIST_KEYS = ("incident_links",)
DATE_KEYS = ("opened_at",)

# IMS key -> ServiceNow field, per table. Keys absent here are not stored (priority and severity_level are
# derived from impact/urgency/priority; id is the number).
COMMON_FIELDS = {
    "status": "u_ims_status", "title": "short_description", "category": "category", "subcategory": "subcategory",
    "detection_source": "contact_type", "reporter": "u_reporter", "affected_service": "u_affected_service",
    "correlation_key": "correlation_id", "opened_at": "opened_at", "severity": "u_severity", "change_link": "u_change_link",
    "problem_link": "u_problem_link", "incident_links": "u_incident_links", "workaround": "u_workaround", "root_cause": "u_root_cause",
    "pir": "u_pir", "kb_link": "u_kb_link", "responded_at": "u_responded_at", "resolved_at": "u_resolved_at",
    "resolved_by": "u_resolved_by", "closed_by": "u_closed_by", "requester": "u_requester", "approver": "u_approver",
    "vendor": "u_vendor",
}
FIELD_MAP = {
    "incident": dict(COMMON_FIELDS, severity="severity", problem_link="problem_id", change_link="rfc"),
    "problem": dict(COMMON_FIELDS, workaround="workaround", root_cause="cause_notes", change_link="rfc"),
    "change_request": dict(COMMON_FIELDS),
}
# reference fields: IMS key -> referenced table (the IMS value is the referenced record's number)
REFERENCE_KEYS = {"problem_link": "problem", "change_link": "change_request"}
# IMS value <-> ServiceNow value of mapped choice fields
VALUE_MAPS = {
    "contact_type": {"user_report": "self-service", "monitoring_tool": "monitoring", "automated_alert": "event"},
    "severity": {"high": "1", "medium": "2", "low": "3"},
}
DEFAULT_STATE_MAP = {
    "incident": {"open": "1", "in_progress": "2", "escalated": "2", "pending_vendor": "3", "resolved": "6", "closed": "7"},
    "problem": {"open": "101", "under_investigation": "103", "known_error": "104", "resolved": "106", "closed": "107"},
    "change_request": {"pending": "-3", "approved": "-2", "rejected": "4"},
}
# native states no IMS status maps to, read as: (Canceled incident, Assess problem, other change states)
EXTRA_STATES = {
    "incident": {"8": "closed"},
    "problem": {"102": "open"},
    "change_request": {"-5": "pending", "-4": "pending", "-1": "approved", "0": "approved", "3": "approved"},
}
# The base problem state model (recent releases enforce it server-side): state -> the states it may move to.
PROBLEM_STATE_MOVES = {
    "101": ("102", "107"), "102": ("103", "107"), "103": ("104", "106", "107"), "104": ("103", "106", "107"),
    "106": ("103", "107"), "107": (),
}
CHANGE_APPROVAL = {"pending": "requested", "approved": "approved", "rejected": "rejected"}
# Knowledge articles (SOP kb_update, problem_workaround): kb_knowledge, found again by number or by source record.
KB_TABLE = "kb_knowledge"
KB_FIELDS = "sys_id,number,short_description,text,source,meta"
KB_NUMBER_RE = re.compile(r"^KB[0-9]{7,}$")
KB_TITLE_LIMIT = 160
READ_EXTRA = ("sys_id", "number", "state", "impact", "urgency", "priority", "assignment_group", "hold_reason", "close_code",
              "close_notes", "active", "sys_created_on", "approval", "resolution_code")


def merge_state_map(overrides: Optional[Mapping[str, Any]]) -> dict:
    """DEFAULT_STATE_MAP with ``{entity: {status: state}}`` overrides applied."""
    return merge_platform_state_map(DEFAULT_STATE_MAP, overrides)


def merge_field_map(overrides: Optional[Mapping[str, Any]]) -> dict:
    """FIELD_MAP with overrides: ``{ims_key: field}`` for every table and/or ``{entity: {ims_key: field}}``."""
    result = {entity: dict(fields) for entity, fields in FIELD_MAP.items()}
    for key, value in (overrides or {}).items():
        if key in result and isinstance(value, Mapping):
            targets, pairs = [key], dict(value)
        else:
            targets, pairs = list(result), {key: value}
        for ims_key, field in pairs.items():
            if ims_key not in COMMON_FIELDS:
                raise ValidationError("field_map: unknown IMS key {0!r}; known: {1}".format(ims_key, ", ".join(sorted(COMMON_FIELDS))))
            if not isinstance(field, str) or not field.strip():
                raise ValidationError(f"field_map.{ims_key}: a ServiceNow field name is required, got {field!r}")
            for entity in targets:
                result[entity][ims_key] = field.strip()
    return result


def state_path(moves: Mapping[str, Any], start: str, goal: str) -> list:
    """The states to pass through from ``start`` to ``goal`` (``goal`` last), shortest first; [] when unreachable."""
    seen, frontier = {start: [start]}, [start]
    while frontier:
        following = []
        for state in frontier:
            for nxt in moves.get(state, ()):
                if nxt not in seen:
                    seen[nxt] = seen[state] + [nxt]
                    if nxt == goal:
                        return seen[nxt][1:]
                    following.append(nxt)
        frontier = following
    return []


def _state_model_refusal(exc: PermissionDenied) -> bool:
    text = "{0} {1}".format(exc.details.get("error_detail") or "", exc.message).lower()
    return "state transition" in text or "state model" in text


def _sn_date(value: Any) -> str:
    moment = parse_time(value)
    return "" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S")


def _raw(row: Mapping[str, Any], field: str) -> Any:
    value = row.get(field)
    return value.get("value") if isinstance(value, dict) else value


def _shown(row: Mapping[str, Any], field: str) -> Any:
    value = row.get(field)
    return value.get("display_value") if isinstance(value, dict) else value


class ServiceNowPlatform(TicketPlatform):
    """IMS records on ServiceNow incident, problem and change_request records."""

    name = PLATFORM
    # The POST reply is the stored record as the account may read it: a correlation_id in it proves the lookup.
    reply_proves_findable = True

    def __init__(self, client: Any, *, queue: Optional[str] = None, caller: Optional[str] = None,
                 field_map: Optional[Mapping[str, Any]] = None, state_map: Optional[Mapping[str, Any]] = None,
                 close_code: Optional[str] = None, team_groups: Optional[Mapping[str, Any]] = None,
                 severity_map: Optional[Mapping[str, Any]] = None, cmdb_lookup: bool = True) -> None:
        self.client = client
        self.queue = queue or DEFAULT_QUEUE
        self.caller = caller
        self.field_map = merge_field_map(field_map)
        self.state_map = merge_state_map(state_map)
        self.close_code = close_code or DEFAULT_CLOSE_CODE
        self.team_groups = {str(team): str(group) for team, group in (team_groups or {}).items()}
        groups = list(self.team_groups.values())
        if len(set(groups)) != len(groups):
            raise ValidationError("team_groups: each team needs its own assignment group (the team is read back from the group)")
        self.severity_map = dict(severity_map or {})
        for level in prio.LEVELS:
            prio.servicenow_impact_urgency(level, self.severity_map)  # validated now, not at the first write
        self.cmdb_lookup = cmdb_lookup
        self._cis = {}  # type: dict  # affected_service -> cmdb_ci sys_id or "" (shared by routed copies)

    # -- reading ------------------------------------------------------------------------

    def _fields(self, entity: str) -> str:
        return ",".join(sorted(set(self.field_map[entity].values()) | set(READ_EXTRA)))

    def _team_of(self, group_name: Any) -> Optional[str]:
        if not group_name:
            return None
        if group_name == self.queue:
            return INTAKE_TEAM
        for team, group in self.team_groups.items():
            if group == group_name:
                return team
        return str(group_name)

    def _status_of(self, entity: str, row: Mapping[str, Any]) -> Optional[str]:
        state = str(_raw(row, "state") or "")
        kept = _raw(row, self.field_map[entity]["status"])
        if kept and self.state_map[entity].get(kept) == state:
            return str(kept)
        for status, mapped in self.state_map[entity].items():
            if mapped == state:
                return status
        return EXTRA_STATES[entity].get(state)

    def to_record(self, entity: str, row: Mapping[str, Any]) -> dict:
        fields = self.field_map[entity]
        record = {}  # type: dict[str, Any]
        for key, field in fields.items():
            if key in REFERENCE_KEYS and not field.startswith("u_"):
                value = _shown(row, field) if _raw(row, field) else None
            else:
                value = _raw(row, field)
                reverse = {sn: ims for ims, sn in VALUE_MAPS.get(field, {}).items()} if not field.startswith("u_") else {}
                value = reverse.get(value, value)
            if value in (None, ""):
                record[key] = [] if key in LIST_KEYS else None
            elif key in LIST_KEYS:
                record[key] = [item for item in str(value).split(",") if item]
            elif key in DATE_KEYS and not field.startswith("u_"):
                record[key] = format_time(parse_time(value, key))
            else:
                record[key] = str(value)
        record["status"] = self._status_of(entity, row)
        level = prio.priority_to_severity(_raw(row, "priority"), PLATFORM) if entity == "incident" else None
        record["severity_level"] = level
        record["priority"] = prio.level_to_ims_priority(level) if level else None
        record["assigned_team"] = self._team_of(_shown(row, "assignment_group"))
        record.update(entity=entity, id=_raw(row, "number"), platform_state=_raw(row, "state"),
                      platform_priority=_raw(row, "priority"), _sys_id=_raw(row, "sys_id"), _table=TABLES[entity],
                      _close_code=_raw(row, "close_code") or None, _close_notes=_raw(row, "close_notes") or None)
        if record["_sys_id"] and record["id"]:
            self.client.remember_reference(TABLES[entity], record["id"], record["_sys_id"])
        return record

    def _read(self, entity: str, query: str, limit: int = 1, offset: int = 0) -> list:
        return self.client.list(TABLES[entity], query, fields=self._fields(entity), limit=limit, offset=offset, display_value="all")

    def get(self, entity: str, ref: str) -> Optional[dict]:
        text = str(ref).strip()
        if entity not in TABLES or not text:
            return None
        if SYS_ID_RE.match(text):
            row = self.client.get(TABLES[entity], text, fields=self._fields(entity), display_value="all")
            return None if row is None else self.to_record(entity, row)
        owner = NUMBER_PREFIXES.get(text[:3].upper(), entity)
        rows = self._read(owner, eq("number", text.upper() if text[:3].upper() in NUMBER_PREFIXES else text))
        return self.to_record(owner, rows[0]) if rows else None

    def search(self, entity: str, *, active_only: bool = False, limit: int = DEFAULT_LOOKUP_LIMIT,
               match: Optional[Callable[[Mapping[str, Any]], bool]] = None) -> list:
        query = ("active=true^" if active_only else "") + NEWEST_FIRST
        records = []  # type: list
        offset = 0
        while offset < SEARCH_CAP:
            rows = self._read(entity, query, limit=SEARCH_PAGE, offset=offset)
            for row in rows:
                record = self.to_record(entity, row)
                if match is None or match(record):
                    records.append(record)
                    if len(records) >= limit:
                        return records
            if len(rows) < SEARCH_PAGE:
                break
            offset += len(rows)
        return records

    def find_by_correlation_key(self, key: str) -> Optional[dict]:
        """One GET: ``correlation_id=<key>^ORDERBYDESCsys_created_on^ORDERBYDESCnumber``, ``sysparm_limit=1`` (the newest incident)."""
        key = validate_correlation_key(key)
        field = self.field_map["incident"]["correlation_key"]
        rows = self._read("incident", eq(field, key) + "^" + NEWEST_FIRST)
        return self.to_record("incident", rows[0]) if rows else None

    # -- writing ------------------------------------------------------------------------

    def _group(self, team: str) -> str:
        name = self.queue if team == INTAKE_TEAM else self.team_groups.get(team, team)
        return self.client.resolve_reference("sys_user_group", name)

    def _ci(self, service: Any) -> Optional[str]:
        if not self.cmdb_lookup or not service:
            return None
        if service not in self._cis:
            try:
                self._cis[service] = self.client.resolve_reference("cmdb_ci", service)
            except NotFoundError:
                self._cis[service] = ""
        return self._cis[service] or None

    def _encode(self, entity: str, key: str, value: Any) -> Any:
        field = self.field_map[entity][key]
        if value is None or value == "" or value == []:
            return ""
        if key in REFERENCE_KEYS and not field.startswith("u_"):
            return self.client.resolve_reference(REFERENCE_KEYS[key], value)
        if key in LIST_KEYS:
            return ",".join(str(item) for item in value)
        if key in DATE_KEYS and not field.startswith("u_"):
            return _sn_date(value)
        if not field.startswith("u_"):
            return VALUE_MAPS.get(field, {}).get(value, value)
        return str(value)

    @staticmethod
    def _note_text(note: Optional[Mapping[str, Any]]) -> str:
        if not note:
            return ""
        subject, body = str(note.get("subject") or ""), str(note.get("body") or "")
        return subject if not body or body == subject else f"{subject}\n\n{body}"

    def _body(self, entity: str, values: Mapping[str, Any], note: Optional[Mapping[str, Any]],
              before: Optional[Mapping[str, Any]] = None) -> dict:
        fields = self.field_map[entity]
        body = {}  # type: dict[str, Any]
        for key, value in values.items():
            if key in fields:
                body[fields[key]] = self._encode(entity, key, value)
        level = values.get("severity_level") or (prio.ims_priority_to_level(values["priority"]) if values.get("priority") else None)
        if level and entity == "incident":
            body.update(prio.servicenow_impact_urgency(level, self.severity_map))
        if "assigned_team" in values:
            body["assignment_group"] = self._group(values["assigned_team"]) if values["assigned_team"] else ""
        if values.get(FOLLOW_UP_KEY):
            body["follow_up"] = _sn_date(values[FOLLOW_UP_KEY])
        text = self._note_text(note)
        if text:
            body["comments" if note and note.get("visible") else "work_notes"] = text
        if "status" in values:
            body.update(self._state_fields(entity, values["status"], text, before))
        return body

    def _state_fields(self, entity: str, status: str, text: str, before: Optional[Mapping[str, Any]]) -> dict:
        state = self.state_map[entity][status]
        result = {"state": state}
        before = before or {}
        if entity == "incident":
            result["hold_reason"] = HOLD_AWAITING_VENDOR if status == "pending_vendor" else ""
            if state in ("6", "7"):
                result["close_code"] = before.get("_close_code") or self.close_code
                result["close_notes"] = before.get("_close_notes") or text or status
        elif entity == "problem" and state in ("106", "107"):
            result["resolution_code"] = DEFAULT_PROBLEM_RESOLUTION
            result["close_notes"] = before.get("_close_notes") or text or status
        elif entity == "change_request":
            result["approval"] = CHANGE_APPROVAL.get(status, "")
        return result

    def create(self, entity: str, values: Mapping[str, Any], note: Mapping[str, Any]) -> Optional[dict]:
        if entity not in TABLES:
            raise ValidationError(f"servicenow: unknown entity {entity!r}")
        body = self._body(entity, values, note)
        if note and not body.get("description"):
            # the first note (for an alert: its FIRING details) is what an agent reads first on the form
            body["description"] = self._note_text(note)
        if not values.get("assigned_team"):
            body["assignment_group"] = self._group(INTAKE_TEAM)  # the routed queue (changes need a group from Assess on)
        if entity == "incident":
            if self.caller:
                body["caller_id"] = self.client.resolve_reference("sys_user", self.caller)
            ci = self._ci(values.get("affected_service"))
            if ci:
                body["cmdb_ci"] = ci
        if values.get("correlation_key"):
            body["correlation_display"] = "labops.itsm"
        row = self.client.create(TABLES[entity], body, fields=self._fields(entity), display_value="all")
        return self.to_record(entity, row)

    def update(self, record: Mapping[str, Any], changes: Mapping[str, Any], note: Optional[Mapping[str, Any]] = None) -> dict:
        entity = record["entity"]
        body = self._body(entity, changes, note, record)
        if entity == "incident" and "affected_service" in changes:
            body["cmdb_ci"] = self._ci(changes["affected_service"]) or ""
        try:
            row = self.client.update(TABLES[entity], record["_sys_id"], body, fields=self._fields(entity), display_value="all")
        except PermissionDenied as exc:
            if entity != "problem" or "state" not in body or not _state_model_refusal(exc):
                raise self._closed_hint(record, exc)
            row = self._walk_problem_states(record, body, exc)
        return self.to_record(entity, row)

    def _walk_problem_states(self, record: Mapping[str, Any], body: Mapping[str, Any], refusal: PermissionDenied) -> dict:
        """The instance enforces the problem state model: pass through the states in between (state-only PATCHes),
        then send the whole change. Nothing was written by the refused PATCH."""
        path = state_path(PROBLEM_STATE_MOVES, str(record.get("platform_state") or ""), str(body["state"]))
        if len(path) < 2:
            raise refusal
        for state in path[:-1]:
            step = {"state": state}
            if state in ("106", "107"):
                step.update(resolution_code=body.get("resolution_code") or DEFAULT_PROBLEM_RESOLUTION, close_notes=body.get("close_notes") or state)
            self.client.update("problem", record["_sys_id"], step, fields="sys_id")
        return self.client.update("problem", record["_sys_id"], body, fields=self._fields("problem"), display_value="all")

    def add_note(self, record: Mapping[str, Any], note: Mapping[str, Any]) -> None:
        body = self._body(record["entity"], {}, note)
        if body:
            try:
                self.client.update(TABLES[record["entity"]], record["_sys_id"], body, fields="sys_id")
            except PermissionDenied as exc:
                raise self._closed_hint(record, exc)

    def publish_kb(self, record: Mapping[str, Any], *, requested: Optional[str], planned: str, title: Optional[str],
                   content: Optional[str], kb_type: Optional[str]) -> str:
        """The article in ``kb_knowledge``: the one the caller named, else the one the record links, else the one whose
        ``source`` is the record; created (draft) when there is none. Only what differs is written. Returns its number."""
        body = {"short_description": str(title or planned)[:KB_TITLE_LIMIT], "text": content or "",
                "source": record.get("_sys_id") or ""}
        if kb_type:
            body["meta"] = f"labops.itsm kb_type={kb_type}"
        article = None
        for number in (requested, record.get("kb_link")):
            if article is None and number and KB_NUMBER_RE.match(str(number)):
                article = self.client.find_one(KB_TABLE, eq("number", number), fields=KB_FIELDS)
        if article is None and record.get("_sys_id"):
            article = self.client.find_one(KB_TABLE, eq("source", record["_sys_id"]) + "^ORDERBYDESCsys_created_on", fields=KB_FIELDS)
        if article is None:
            return str(self.client.create(KB_TABLE, dict(body, workflow_state="draft"), fields=KB_FIELDS)["number"])
        changes = {key: value for key, value in body.items() if str(article.get(key) or "") != value}
        if changes:
            self.client.update(KB_TABLE, article["sys_id"], changes, fields="sys_id")
        return str(article["number"])

    @staticmethod
    def _closed_hint(record: Mapping[str, Any], exc: PermissionDenied) -> PermissionDenied:
        """Closed incidents are read-only to non-admin roles; the IMS still records the PIR and the KB link on them."""
        if record.get("entity") != "incident" or record.get("platform_state") != "7":
            return exc
        return PermissionDenied(f"{exc.message} (incident {record.get('id')} is Closed, which ServiceNow keeps read-only for "
                                "non-admin roles; the IMS records the PIR and the KB link after closure, so give the integration "
                                "account write access to closed incidents, e.g. an ACL on incident for its role)", **exc.details)

    def unfindable_hint(self, record: Optional[Mapping[str, Any]]) -> str:
        return ("the servicenow account can create incidents but cannot read them back by correlation_id: grant it read access "
                "to incident and its correlation_id field (the itil role has it)")

    def routed(self, queue: Optional[str]) -> "ServiceNowPlatform":
        """The adapter for assignment group ``queue`` sharing this one's client (token, reference cache)."""
        if not queue or queue == self.queue:
            return self
        other = copy.copy(self)
        other.queue = queue
        return other


def platform_from_params(params: Mapping[str, Any], client: Any) -> ServiceNowPlatform:
    """The adapter from the registry's validated options (``_platforms``) plus the routing ``queue``."""
    return ServiceNowPlatform(client, queue=params.get("queue") or params.get("assignment_group"), caller=params.get("caller"),
                              field_map=params.get("field_map"), state_map=params.get("state_map"), close_code=params.get("close_code"),
                              team_groups=params.get("team_groups"), severity_map=params.get("severity_map"),
                              cmdb_lookup=params.get("cmdb_lookup", True))
