"""ServiceNow simulator: table schemas, choice lists, default config, seed data and the row store.

Everything here follows ``contracts/servicenow.md``: every stored value is a string, ``sys_id``
is 32 lowercase hex characters, numbers are a table prefix plus 7 digits.  The store keeps raw
values only; views (display values, reference links) are computed in :mod:`simulators.servicenow`.
"""
from __future__ import annotations

import copy
import fnmatch
import hashlib
import json
import os
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

SYS_ID_LENGTH = 32
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"

RECENT_CLOSE_CODES = [
    "Duplicate", "Known error", "No resolution provided", "Resolved by caller", "Resolved by change",
    "Resolved by problem", "Resolved by request", "Solution provided", "Workaround provided", "User error",
]

DEFAULT_CONFIG: dict[str, Any] = {
    "users": {
        "admin": {"password": "admin-pw", "roles": ["admin"], "name": "System Administrator", "email": "admin@example.com"},
        "itsm.bot": {"password": "bot-pw", "roles": ["itil"], "name": "ITSM Bot", "email": "itsm.bot@example.com"},
    },
    "oauth_clients": {"labops": {"secret": "client-secret", "user": "itsm.bot"}},
    "api_keys": {"key-123": "itsm.bot"},
    "token_lifetime": 1799,
    "refresh_lifetime": 8640000,
    "require_close_fields": True,
    "require_hold_reason": True,
    "change_requires_assignment_group": True,
    "problem_state_model": False,
    "closed_read_only": True,
    "rate_limit": None,
    # role -> {table or "*": [read, create, write, delete]}; a user's rights are the union over its roles
    "acls": {
        "admin": {"*": ["read", "create", "write", "delete"]},
        "itil": {
            "incident": ["read", "create", "write"], "problem": ["read", "create", "write"],
            "change_request": ["read", "create", "write"], "kb_knowledge": ["read", "create", "write"],
            "*": ["read"],
        },
        "snc_read_only": {"*": ["read"]},
    },
    # custom columns an admin added: table -> names or fnmatch patterns ("u_*": any u_ field exists)
    "custom_fields": {"incident": ["u_*"], "problem": ["u_*"], "change_request": ["u_*"]},
    "close_codes": list(RECENT_CLOSE_CODES),
    "invalid_query_returns_no_rows": False,
    "instance_url": None,
    "max_limit": 10000,
    "seed_rows": {},
    "state_file": None,
}


@dataclass(frozen=True)
class FieldDef:
    """One column: ``kind`` is string, integer, boolean, datetime, reference, journal or choice."""

    kind: str = "string"
    label: str = ""
    ref: str = ""
    choices: tuple[tuple[str, str], ...] = ()
    numeric: bool = False  # choice values compared as numbers (integer choices)
    max_length: int = 0

    def choice_label(self, value: str) -> str:
        for choice_value, label in self.choices:
            if choice_value == value:
                return label
        return value


def _choice(label: str, pairs: Iterable[tuple[str, str]], numeric: bool = False) -> FieldDef:
    return FieldDef("choice", label, choices=tuple(pairs), numeric=numeric)


def _ref(label: str, table: str) -> FieldDef:
    return FieldDef("reference", label, ref=table)


def _s(label: str, max_length: int = 0) -> FieldDef:
    return FieldDef("string", label, max_length=max_length)


def _dt(label: str) -> FieldDef:
    return FieldDef("datetime", label)


def _bool(label: str) -> FieldDef:
    return FieldDef("boolean", label)


def _int(label: str) -> FieldDef:
    return FieldDef("integer", label)


IMPACT = (("1", "1 - High"), ("2", "2 - Medium"), ("3", "3 - Low"))
URGENCY = IMPACT
PRIORITY = (("1", "1 - Critical"), ("2", "2 - High"), ("3", "3 - Moderate"), ("4", "4 - Low"), ("5", "5 - Planning"))
INCIDENT_STATES = (("1", "New"), ("2", "In Progress"), ("3", "On Hold"), ("6", "Resolved"), ("7", "Closed"), ("8", "Canceled"))
HOLD_REASONS = (("1", "Awaiting Caller"), ("3", "Awaiting Problem"), ("4", "Awaiting Vendor"), ("5", "Awaiting Change"))
PROBLEM_STATES = (("101", "New"), ("102", "Assess"), ("103", "Root Cause Analysis"), ("104", "Fix in Progress"),
                  ("106", "Resolved"), ("107", "Closed"))
RESOLUTION_CODES = (("fix_applied", "Fix Applied"), ("risk_accepted", "Risk Accepted"), ("duplicate", "Duplicate"), ("canceled", "Canceled"))
CHANGE_STATES = (("-5", "New"), ("-4", "Assess"), ("-3", "Authorize"), ("-2", "Scheduled"), ("-1", "Implement"),
                 ("0", "Review"), ("3", "Closed"), ("4", "Canceled"))
CHANGE_TYPES = (("normal", "Normal"), ("standard", "Standard"), ("emergency", "Emergency"))
APPROVALS = (("not requested", "Not Yet Requested"), ("requested", "Requested"), ("approved", "Approved"), ("rejected", "Rejected"))
RISKS = (("1", "Very High"), ("2", "High"), ("3", "Moderate"), ("4", "Low"))
CHANGE_CLOSE_CODES = (("successful", "Successful"), ("successful_issues", "Successful with issues"), ("unsuccessful", "Unsuccessful"))
ON_HOLD_REASONS = (("awaiting_info", "Awaiting Information"), ("awaiting_vendor", "Awaiting Vendor"), ("awaiting_change", "Awaiting Change"))
CONTACT_TYPES = (("email", "Email"), ("phone", "Phone"), ("self-service", "Self-service"), ("walk-in", "Walk-in"),
                 ("monitoring", "Monitoring"), ("event", "Event"), ("integration", "Integration"))
KB_WORKFLOW = (("draft", "Draft"), ("review", "Review"), ("published", "Published"), ("outdated", "Outdated"), ("retired", "Retired"))
OPERATIONAL_STATUS = (("1", "Operational"), ("2", "Non-Operational"), ("3", "Repair in Progress"), ("6", "Retired"))

INCIDENT_CATEGORIES = (("inquiry", "Inquiry / Help"), ("software", "Software"), ("hardware", "Hardware"), ("network", "Network"),
                       ("database", "Database"))

SYSTEM_FIELDS: dict[str, FieldDef] = {
    "sys_id": _s("Sys ID", 32), "sys_created_on": _dt("Created"), "sys_created_by": _s("Created by"),
    "sys_updated_on": _dt("Updated"), "sys_updated_by": _s("Updated by"), "sys_mod_count": _int("Updates"),
    "sys_class_name": _s("Class"), "sys_tags": _s("Tags"),
}

TASK_FIELDS: dict[str, FieldDef] = {
    "number": _s("Number", 40), "short_description": _s("Short description", 160), "description": _s("Description"),
    "active": _bool("Active"), "impact": _choice("Impact", IMPACT, True), "urgency": _choice("Urgency", URGENCY, True),
    "priority": _choice("Priority", PRIORITY, True), "assignment_group": _ref("Assignment group", "sys_user_group"),
    "assigned_to": _ref("Assigned to", "sys_user"), "cmdb_ci": _ref("Configuration item", "cmdb_ci"),
    "opened_at": _dt("Opened"), "opened_by": _ref("Opened by", "sys_user"), "closed_at": _dt("Closed"),
    "closed_by": _ref("Closed by", "sys_user"), "close_notes": _s("Close notes", 4000),
    "work_notes": FieldDef("journal", "Work notes"), "comments": FieldDef("journal", "Additional comments"),
    "correlation_id": _s("Correlation ID", 100), "correlation_display": _s("Correlation display", 100),
    "contact_type": _choice("Contact type", CONTACT_TYPES), "due_date": _dt("Due date"),
    "watch_list": _s("Watch list"), "work_notes_list": _s("Work notes list"), "company": _s("Company"),
    "location": _s("Location"), "business_service": _s("Service"), "follow_up": _dt("Follow up"),
}

INCIDENT_FIELDS: dict[str, FieldDef] = {
    **TASK_FIELDS,
    "state": _choice("State", INCIDENT_STATES, True), "incident_state": _choice("Incident state", INCIDENT_STATES, True),
    "caller_id": _ref("Caller", "sys_user"), "category": _choice("Category", INCIDENT_CATEGORIES),
    "subcategory": _s("Subcategory"), "hold_reason": _choice("On hold reason", HOLD_REASONS, True),
    "close_code": _choice("Resolution code", ()), "close_notes": _s("Resolution notes", 4000),
    "resolved_at": _dt("Resolved"), "resolved_by": _ref("Resolved by", "sys_user"), "reopen_count": _int("Reopen count"),
    "reopened_time": _dt("Last reopened at"), "reopened_by": _ref("Last reopened by", "sys_user"),
    "problem_id": _ref("Problem", "problem"), "rfc": _ref("Change Request", "change_request"),
    "caused_by": _ref("Caused by Change", "change_request"), "parent_incident": _ref("Parent Incident", "incident"),
    "severity": _choice("Severity", (("1", "1 - High"), ("2", "2 - Medium"), ("3", "3 - Low")), True),
    "notify": _choice("Notify", (("1", "Do Not Notify"), ("2", "Send Email")), True),
}

PROBLEM_FIELDS: dict[str, FieldDef] = {
    **TASK_FIELDS,
    "state": _choice("State", PROBLEM_STATES, True), "problem_state": _choice("Problem state", PROBLEM_STATES, True),
    "resolution_code": _choice("Resolution code", RESOLUTION_CODES), "cause_notes": _s("Cause notes", 4000),
    "fix_notes": _s("Fix notes", 4000), "duplicate_of": _ref("Duplicate of", "problem"), "known_error": _bool("Known error"),
    "workaround": _s("Workaround", 4000), "problem_statement": _s("Problem statement", 160), "category": _s("Category"),
    "subcategory": _s("Subcategory"), "resolved_at": _dt("Resolved"), "resolved_by": _ref("Resolved by", "sys_user"),
    "reopen_count": _int("Reopen count"), "first_reported_by_task": _ref("First reported by", "incident"),
    "rfc": _ref("Change request", "change_request"),
}

CHANGE_FIELDS: dict[str, FieldDef] = {
    **TASK_FIELDS,
    "state": _choice("State", CHANGE_STATES, True), "type": _choice("Type", CHANGE_TYPES), "approval": _choice("Approval", APPROVALS),
    "risk": _choice("Risk", RISKS, True), "close_code": _choice("Close code", CHANGE_CLOSE_CODES), "close_notes": _s("Close notes", 4000),
    "on_hold": _bool("On hold"), "on_hold_reason": _s("On hold reason", 4000), "start_date": _dt("Planned start date"),
    "end_date": _dt("Planned end date"), "justification": _s("Justification", 4000), "implementation_plan": _s("Implementation plan", 4000),
    "backout_plan": _s("Backout plan", 4000), "test_plan": _s("Test plan", 4000), "risk_impact_analysis": _s("Risk and impact analysis", 4000),
    "category": _s("Category"), "requested_by": _ref("Requested by", "sys_user"), "chg_model": _s("Model"),
}

KB_FIELDS: dict[str, FieldDef] = {
    "number": _s("Number", 40), "short_description": _s("Short description", 160), "text": _s("Article body"),
    "workflow_state": _choice("Workflow", KB_WORKFLOW), "kb_knowledge_base": _s("Knowledge base"), "kb_category": _s("Category"),
    "author": _ref("Author", "sys_user"), "active": _bool("Active"), "valid_to": _s("Valid to"), "article_type": _s("Article type"),
    "topic": _s("Topic"), "category": _s("Category (legacy)"), "published": _s("Published"), "meta": _s("Meta"),
    "source": _ref("Source task", "incident"),
}

USER_FIELDS: dict[str, FieldDef] = {
    "user_name": _s("User ID", 40), "first_name": _s("First name"), "last_name": _s("Last name"), "name": _s("Name"),
    "email": _s("Email"), "active": _bool("Active"), "title": _s("Title"), "department": _s("Department"),
    "phone": _s("Business phone"), "locked_out": _bool("Locked out"), "time_zone": _s("Time zone"),
}

GROUP_FIELDS: dict[str, FieldDef] = {
    "name": _s("Name"), "description": _s("Description", 1000), "active": _bool("Active"), "email": _s("Group email"),
    "manager": _ref("Manager", "sys_user"), "type": _s("Type"), "parent": _ref("Parent", "sys_user_group"),
}

CI_FIELDS: dict[str, FieldDef] = {
    "name": _s("Name"), "short_description": _s("Description", 1000), "ip_address": _s("IP Address"), "fqdn": _s("Fully qualified domain name"),
    "operational_status": _choice("Operational status", OPERATIONAL_STATUS, True), "support_group": _ref("Support group", "sys_user_group"),
    "managed_by_group": _ref("Managed by group", "sys_user_group"), "assigned_to": _ref("Assigned to", "sys_user"),
    "category": _s("Category"), "location": _s("Location"), "environment": _s("Environment"), "install_status": _s("Status"),
}

JOURNAL_FIELDS: dict[str, FieldDef] = {
    "element_id": _s("Element ID", 32), "element": _s("Element"), "name": _s("Table name"), "value": _s("Value"),
}

CHOICE_FIELDS: dict[str, FieldDef] = {
    "name": _s("Table"), "element": _s("Element"), "value": _s("Value"), "label": _s("Label"), "sequence": _int("Sequence"),
    "inactive": _bool("Inactive"), "language": _s("Language"), "dependent_value": _s("Dependent value"),
}


ATTACHMENT_FIELDS: dict[str, FieldDef] = {
    "file_name": _s("File name", 100), "content_type": _s("Content type"), "size_bytes": _int("Size bytes"),
    "size_compressed": _int("Size compressed"), "compressed": _bool("Compressed"), "hash": _s("Hash"),
    "table_name": _s("Table name"), "table_sys_id": _s("Table sys ID", 32), "download_link": _s("Download link"),
    "state": _s("State"),
}


@dataclass(frozen=True)
class TableDef:
    name: str
    fields: dict[str, FieldDef]
    prefix: str = ""  # number prefix ("" = no number)
    first_number: int = 0
    display: str = "name"  # the display field (reference display values)


TABLES: dict[str, TableDef] = {
    "incident": TableDef("incident", INCIDENT_FIELDS, "INC", 10001, "number"),
    "problem": TableDef("problem", PROBLEM_FIELDS, "PRB", 40001, "number"),
    "change_request": TableDef("change_request", CHANGE_FIELDS, "CHG", 30001, "number"),
    "kb_knowledge": TableDef("kb_knowledge", KB_FIELDS, "KB", 10001, "number"),
    "sys_user": TableDef("sys_user", USER_FIELDS, display="name"),
    "sys_user_group": TableDef("sys_user_group", GROUP_FIELDS, display="name"),
    "cmdb_ci": TableDef("cmdb_ci", CI_FIELDS, display="name"),
    "sys_journal_field": TableDef("sys_journal_field", JOURNAL_FIELDS, display="value"),
    "sys_choice": TableDef("sys_choice", CHOICE_FIELDS, display="label"),
    "sys_attachment": TableDef("sys_attachment", ATTACHMENT_FIELDS, display="file_name"),
}
ATTACHMENT_TABLE = "sys_attachment"
TASK_TABLES = ("incident", "problem", "change_request")
JOURNAL_TABLE = "sys_journal_field"
CHOICE_TABLE = "sys_choice"

# The problem state model of recent releases (Madrid on): allowed moves; 107 is final.
PROBLEM_MOVES = {
    "101": {"102", "107"}, "102": {"103", "107"}, "103": {"104", "106", "107"}, "104": {"103", "106", "107"},
    "106": {"103", "107"}, "107": set(),
}

# Base data-lookup rules: (impact, urgency) -> priority.
PRIORITY_LOOKUP = {
    ("1", "1"): "1", ("1", "2"): "2", ("1", "3"): "3",
    ("2", "1"): "2", ("2", "2"): "3", ("2", "3"): "4",
    ("3", "1"): "3", ("3", "2"): "4", ("3", "3"): "5",
}

SEED_GROUPS = [
    ("Infrastructure", "Proxmox cluster nodes and hardware"), ("Platform", "Guests, databases and web services"),
    ("Storage", "Ceph and backup storage"), ("Service Desk", "First-line support"), ("Network", "Switches, routers and firewalls"),
]
SEED_CIS = [
    *[(f"pve{n:02d}", "cmdb_ci_server", "Infrastructure", f"pve{n:02d}.mgmt.example.net") for n in range(1, 8)],
    ("erp-db-02", "cmdb_ci_database", "Platform", "erp-db-02.example.net"),
    ("intranet-web-01", "cmdb_ci_web_server", "Platform", "intranet-web-01.example.net"),
    ("ci-runner-03", "cmdb_ci_server", "Platform", "ci-runner-03.example.net"),
]
SEED_EXTRA_USERS = [("monitoring", "Monitoring Bot", "monitoring@example.com")]


def fmt_time(epoch: float) -> str:
    return time.strftime(DATE_FORMAT, time.gmtime(epoch))


def stable_sys_id(*parts: str) -> str:
    """A deterministic sys_id for seed rows, so they keep their ids across resets and restarts."""
    return hashlib.md5("/".join(parts).encode("utf-8"), usedforsecurity=False).hexdigest()


def new_sys_id() -> str:
    return uuid.uuid4().hex


def is_sys_id(value: str) -> bool:
    return len(value) == SYS_ID_LENGTH and all(c in "0123456789abcdef" for c in value)


def to_str(value: Any) -> str:
    """Coerce a JSON value the way the platform stores it: everything becomes a string."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dict):
        if "value" in value:  # a reference/choice echoed back in the {value, link} shape
            return to_str(value["value"])
        if "sys_id" in value:
            return to_str(value["sys_id"])
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, list):
        return ",".join(to_str(item) for item in value)
    return str(value)


class Schema:
    """Table definitions plus the configured custom columns and the configured close-code choices."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.custom: dict[str, list[str]] = {}
        for table, names in (config.get("custom_fields") or {}).items():
            if table not in TABLES:
                raise ValueError(f"custom_fields: unknown table {table!r}")
            if not isinstance(names, list) or not all(isinstance(n, str) and n.startswith("u_") for n in names):
                raise ValueError(f"custom_fields.{table}: a list of u_ field names or patterns")
            self.custom[table] = list(names)
        close_codes = tuple((str(code), str(code)) for code in config.get("close_codes") or [])
        self.tables = dict(TABLES)
        self.tables["incident"] = TableDef("incident", dict(INCIDENT_FIELDS, close_code=_choice("Resolution code", close_codes)), "INC", 10001, "number")
        self.dynamic: dict[str, set[str]] = {name: set() for name in self.tables}

    def table(self, name: str) -> TableDef | None:
        return self.tables.get(name)

    def field(self, table: str, name: str) -> FieldDef | None:
        if name in SYSTEM_FIELDS:
            return SYSTEM_FIELDS[name]
        tdef = self.tables[table]
        if name in tdef.fields:
            return tdef.fields[name]
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in self.custom.get(table, [])):
            return FieldDef("string", name)
        return None

    def columns(self, table: str) -> list[str]:
        """Every column a full record shows: system fields, table fields, custom fields in use."""
        tdef = self.tables[table]
        names = list(SYSTEM_FIELDS) + list(tdef.fields)
        plain = [p for p in self.custom.get(table, []) if not any(c in p for c in "*?[")]
        names += [n for n in plain if n not in names]
        names += sorted(n for n in self.dynamic[table] if n not in names)
        return names

    def choice_rows(self) -> list[dict[str, str]]:
        """sys_choice rows for every choice field of the task tables (the live close_code list included)."""
        rows = []
        for table in (*TASK_TABLES, "kb_knowledge", "cmdb_ci"):
            for name, fdef in self.tables[table].fields.items():
                for seq, (value, label) in enumerate(fdef.choices, start=1):
                    rows.append({"name": table, "element": name, "value": value, "label": label, "sequence": str(seq * 10),
                                 "inactive": "false", "language": "en", "dependent_value": ""})
        return rows


@dataclass
class Store:
    """All rows by table and sys_id (insertion ordered), number counters and the token tables."""

    rows: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    refresh_tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    tokens_issued: int = 0
    blobs: dict[str, str] = field(default_factory=dict)  # attachment sys_id -> content, base64

    def table(self, name: str) -> dict[str, dict[str, str]]:
        return self.rows.setdefault(name, {})

    def next_number(self, tdef: TableDef) -> str:
        current = self.counters.get(tdef.name, tdef.first_number)
        self.counters[tdef.name] = current + 1
        return f"{tdef.prefix}{current:07d}"

    def to_json(self) -> dict[str, Any]:
        return {"rows": self.rows, "counters": self.counters, "tokens": self.tokens, "refresh_tokens": self.refresh_tokens,
                "tokens_issued": self.tokens_issued, "blobs": self.blobs}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Store:
        return cls(copy.deepcopy(dict(data.get("rows", {}))), dict(data.get("counters", {})), dict(data.get("tokens", {})),
                   dict(data.get("refresh_tokens", {})), int(data.get("tokens_issued", 0)), dict(data.get("blobs", {})))

    def save(self, path: str) -> None:
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(self.to_json(), handle)
        os.replace(tmp, path)


def seed_rows(config: Mapping[str, Any]) -> dict[str, list[dict[str, str]]]:
    """The rows a fresh instance has: users of the config plus ``monitoring``, the groups and the CIs."""
    users = []
    for user_name, spec in sorted(config["users"].items()):
        name = str(spec.get("name") or " ".join(part.capitalize() for part in user_name.replace(".", " ").split()))
        first, _sep, last = name.partition(" ")
        users.append({"sys_id": stable_sys_id("sys_user", user_name), "user_name": user_name, "name": name, "first_name": first,
                      "last_name": last, "email": str(spec.get("email") or f"{user_name}@example.com"), "active": "true"})
    for user_name, name, email in SEED_EXTRA_USERS:
        if user_name not in config["users"]:
            first, _sep, last = name.partition(" ")
            users.append({"sys_id": stable_sys_id("sys_user", user_name), "user_name": user_name, "name": name,
                          "first_name": first, "last_name": last, "email": email, "active": "true"})
    groups = [{"sys_id": stable_sys_id("sys_user_group", name), "name": name, "description": desc, "active": "true"}
              for name, desc in SEED_GROUPS]
    cis = [{"sys_id": stable_sys_id("cmdb_ci", name), "name": name, "sys_class_name": cls, "fqdn": fqdn, "operational_status": "1",
            "support_group": stable_sys_id("sys_user_group", group)} for name, cls, group, fqdn in SEED_CIS]
    return {"sys_user": users, "sys_user_group": groups, "cmdb_ci": cis}
