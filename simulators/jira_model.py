"""Jira simulator: default config, the instance catalog (projects, workflow, priorities, fields) and the issue store.

Follows ``contracts/jira.md``.  The store keeps issues in a neutral internal shape (names, epochs,
rich text as an ADF object or a plain string, whichever API wrote it); :mod:`simulators.jira`
renders them for the v3 (ADF), v2 and Data Center flavours.
"""
from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from simulators.base import ConfigError

TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"

DEFAULT_CONFIG: dict[str, Any] = {
    "mode": "cloud",
    "users": {
        "bot@example.com": {"api_token": "jira-api-token", "account_id": "5b10a2844c20165700ede21g", "display_name": "Alert Bot",
                            "name": "itsm.bot", "password": "bot-pw", "pat": "jira-pat-123"},
        "admin@example.com": {"api_token": "admin-token", "account_id": "5b10ac8d82e05b22cc7d4ef5", "display_name": "Jira Admin",
                              "name": "admin", "password": "admin-pw", "pat": "admin-pat", "admin": True},
    },
    "projects": {
        "OPS": {"id": "10000", "name": "Operations", "issue_types": ["Incident", "Problem", "Change", "Task"],
                "components": ["Virtualisation", "Storage", "Network", "Platform"]},
        "NET": {"id": "10001", "name": "Network", "issue_types": ["Incident", "Problem", "Change", "Task"],
                "components": ["Core", "Edge"]},
    },
    "priorities": ["Highest", "High", "Medium", "Low", "Lowest"],
    "default_priority": "Medium",
    "resolutions": ["Done", "Won't Do", "Duplicate", "Cannot Reproduce"],
    "custom_fields": {
        "customfield_10050": {"name": "Affected host", "type": "text"},
        "customfield_10051": {"name": "Alert fingerprint", "type": "text"},
        "customfield_10052": {"name": "Environment", "type": "select", "options": ["prod", "staging"]},
    },
    "workflow": {
        "statuses": {"To Do": "new", "In Progress": "indeterminate", "Done": "done"},
        "initial": "To Do",
        "transitions": [
            {"id": "11", "name": "To Do", "to": "To Do"},
            {"id": "21", "name": "In Progress", "to": "In Progress"},
            {"id": "31", "name": "Done", "to": "Done", "screen": ["resolution"]},
            {"id": "41", "name": "Reopen", "from": ["Done"], "to": "To Do"},
        ],
    },
    "link_types": [
        {"id": "10000", "name": "Blocks", "inward": "is blocked by", "outward": "blocks"},
        {"id": "10001", "name": "Cloners", "inward": "is cloned by", "outward": "clones"},
        {"id": "10002", "name": "Duplicate", "inward": "is duplicated by", "outward": "duplicates"},
        {"id": "10003", "name": "Relates", "inward": "relates to", "outward": "relates to"},
        {"id": "10004", "name": "Problem/Incident", "inward": "is caused by", "outward": "causes"},
    ],
    "search_lag": 0.0,
    "max_results_cap": 100,
    "anonymous_read": False,
    "max_comments": None,
    "rate_limit": None,
    "captcha_after": None,
    "dc_deployment_type": "DataCenter",
    "base_url": None,
    "state_file": None,
}

CATEGORIES = {
    "new": {"id": 2, "key": "new", "colorName": "blue-gray", "name": "To Do"},
    "indeterminate": {"id": 4, "key": "indeterminate", "colorName": "yellow", "name": "In Progress"},
    "done": {"id": 3, "key": "done", "colorName": "green", "name": "Done"},
    "undefined": {"id": 1, "key": "undefined", "colorName": "medium-gray", "name": "No Category"},
}
CUSTOM_TYPES = {
    "text": ("string", "com.atlassian.jira.plugin.system.customfieldtypes:textfield"),
    "textarea": ("string", "com.atlassian.jira.plugin.system.customfieldtypes:textarea"),
    "select": ("option", "com.atlassian.jira.plugin.system.customfieldtypes:select"),
    "multiselect": ("array", "com.atlassian.jira.plugin.system.customfieldtypes:multiselect"),
    "number": ("number", "com.atlassian.jira.plugin.system.customfieldtypes:float"),
    "labels": ("array", "com.atlassian.jira.plugin.system.customfieldtypes:labels"),
}
# System fields: id -> (name, schema type, orderable on create/edit screens, navigable)
SYSTEM_FIELDS: dict[str, tuple[str, str, bool]] = {
    "summary": ("Summary", "string", True), "description": ("Description", "string", True),
    "project": ("Project", "project", True), "issuetype": ("Issue Type", "issuetype", True),
    "priority": ("Priority", "priority", True), "labels": ("Labels", "array", True),
    "components": ("Components", "array", True), "assignee": ("Assignee", "user", True),
    "reporter": ("Reporter", "user", True), "status": ("Status", "status", False),
    "resolution": ("Resolution", "resolution", True), "resolutiondate": ("Resolved", "datetime", False),
    "created": ("Created", "datetime", False), "updated": ("Updated", "datetime", False),
    "comment": ("Comment", "comments-page", True), "issuelinks": ("Linked Issues", "array", True),
    "statuscategorychangedate": ("Status Category Changed", "datetime", False),
}
EDITABLE = {"summary", "description", "priority", "labels", "components", "assignee", "reporter"}


def fmt_time(epoch: float | None) -> str | None:
    """``2026-05-04T10:15:30.000+0000`` (UTC, milliseconds, offset without colon)."""
    if epoch is None:
        return None
    millis = round((epoch - int(epoch)) * 1000)
    if millis == 1000:
        epoch, millis = int(epoch) + 1, 0
    return time.strftime(TIME_FORMAT, time.gmtime(int(epoch))) + f".{millis:03d}+0000"


@dataclass
class Transition:
    id: str
    name: str
    to: str
    sources: list[str] | None  # None: global
    screen: list[str]


@dataclass
class Catalog:
    """The instance's configuration objects with their ids, derived from the config."""

    config: Mapping[str, Any]
    statuses: dict[str, str] = field(default_factory=dict)  # name -> category key
    status_ids: dict[str, str] = field(default_factory=dict)
    initial: str = ""
    transitions: list[Transition] = field(default_factory=list)
    priorities: list[str] = field(default_factory=list)
    resolutions: list[str] = field(default_factory=list)
    issuetype_ids: dict[str, str] = field(default_factory=dict)
    component_ids: dict[tuple[str, str], str] = field(default_factory=dict)
    link_types: list[dict[str, str]] = field(default_factory=list)

    @classmethod
    def build(cls, config: Mapping[str, Any]) -> Catalog:
        cat = cls(config)
        if config.get("mode") not in ("cloud", "datacenter"):
            raise ConfigError("mode must be 'cloud' or 'datacenter'")
        for key in ("users", "projects", "custom_fields", "workflow"):
            if not isinstance(config.get(key), dict):
                raise ConfigError(f"{key} must be an object")
        for user, spec in config["users"].items():
            if not isinstance(spec, dict) or not spec.get("account_id") or not spec.get("name"):
                raise ConfigError(f"users.{user}: needs at least account_id and name")
        flow = config["workflow"]
        statuses = flow.get("statuses")
        if not isinstance(statuses, dict) or not statuses:
            raise ConfigError("workflow.statuses must map status names to categories")
        for name, category in statuses.items():
            if category not in CATEGORIES:
                raise ConfigError(f"workflow.statuses.{name}: category must be one of {', '.join(CATEGORIES)}")
            cat.statuses[name] = category
            cat.status_ids[name] = str(10000 + len(cat.status_ids))
        cat.initial = flow.get("initial") or next(iter(statuses))
        if cat.initial not in statuses:
            raise ConfigError("workflow.initial must be one of the statuses")
        for item in flow.get("transitions") or []:
            if not isinstance(item, dict) or item.get("to") not in statuses or not item.get("id") or not item.get("name"):
                raise ConfigError("workflow.transitions: each needs id, name and a 'to' status of the workflow")
            sources = item.get("from")
            if sources is not None and (not isinstance(sources, list) or any(s not in statuses for s in sources)):
                raise ConfigError(f"workflow transition {item['id']}: 'from' must list statuses of the workflow")
            screen = list(item.get("screen") or [])
            cat.transitions.append(Transition(str(item["id"]), str(item["name"]), item["to"], sources, screen))
        cat.priorities = [str(p) for p in config.get("priorities") or []]
        if not cat.priorities or config.get("default_priority") not in cat.priorities:
            raise ConfigError("priorities must be a non-empty list holding default_priority")
        cat.resolutions = [str(r) for r in config.get("resolutions") or []]
        for key, project in config["projects"].items():
            if not isinstance(project, dict) or not project.get("id") or not project.get("issue_types"):
                raise ConfigError(f"projects.{key}: needs id and issue_types")
            for name in project["issue_types"]:
                cat.issuetype_ids.setdefault(name, str(10001 + len(cat.issuetype_ids)))
            for name in project.get("components") or []:
                cat.component_ids[(key, name)] = str(10100 + len(cat.component_ids))
        for cf_id, spec in config["custom_fields"].items():
            if not cf_id.startswith("customfield_") or not cf_id[len("customfield_"):].isdigit():
                raise ConfigError(f"custom_fields: {cf_id!r} is not a customfield_<n> id")
            if not isinstance(spec, dict) or spec.get("type") not in CUSTOM_TYPES:
                raise ConfigError(f"custom_fields.{cf_id}: type must be one of {', '.join(CUSTOM_TYPES)}")
        cat.link_types = [dict(t) for t in config.get("link_types") or []]
        for rule_key in ("rate_limit",):
            rule = config.get(rule_key)
            if rule is not None and (not isinstance(rule, dict) or not isinstance(rule.get("limit"), int) or rule["limit"] < 1):
                raise ConfigError('rate_limit must be null or {"limit": N, "window": seconds, ...}')
        lag = config.get("search_lag")
        if isinstance(lag, bool) or not isinstance(lag, (int, float)) or lag < 0:
            raise ConfigError("search_lag must be a non-negative number of seconds")
        if config.get("dc_deployment_type") not in ("DataCenter", "Server"):
            raise ConfigError("dc_deployment_type must be 'DataCenter' or 'Server'")
        if config.get("captcha_after") is not None and (not isinstance(config["captcha_after"], int) or config["captcha_after"] < 1):
            raise ConfigError("captcha_after must be null or a positive integer")
        if config.get("max_comments") is not None and (not isinstance(config["max_comments"], int) or config["max_comments"] < 0):
            raise ConfigError("max_comments must be null or a non-negative integer")
        return cat

    # -- lookups (case-insensitive by name, or by id)
    def project(self, ref: Any) -> str | None:
        """The project key for ``{"key"}`` / ``{"id"}`` / a key string."""
        projects = self.config["projects"]
        if isinstance(ref, dict):
            if ref.get("key") is not None:
                return next((k for k in projects if k.lower() == str(ref["key"]).lower()), None)
            if ref.get("id") is not None:
                return next((k for k, p in projects.items() if str(p["id"]) == str(ref["id"])), None)
            return None
        if isinstance(ref, str):
            return next((k for k, p in projects.items() if ref.lower() in (k.lower(), str(p["id"]), str(p.get("name", "")).lower())), None)
        return None

    def status_category(self, status: str) -> str:
        return self.statuses.get(status, "undefined")

    def priority_id(self, name: str) -> str:
        return str(self.priorities.index(name) + 1) if name in self.priorities else ""

    def resolution_id(self, name: str) -> str:
        return str(10000 + self.resolutions.index(name)) if name in self.resolutions else ""

    def named(self, ref: Any, names: list[str], ids: Mapping[str, str]) -> str | None:
        """Resolve ``{"name"}`` / ``{"id"}`` against ``names`` (with ``ids``: name -> id)."""
        if not isinstance(ref, dict):
            return None
        if ref.get("name") is not None:
            return next((n for n in names if n.lower() == str(ref["name"]).lower()), None)
        if ref.get("id") is not None:
            return next((n for n in names if ids.get(n) == str(ref["id"])), None)
        return None

    def priority(self, ref: Any) -> str | None:
        return self.named(ref, self.priorities, {n: self.priority_id(n) for n in self.priorities})

    def resolution(self, ref: Any) -> str | None:
        return self.named(ref, self.resolutions, {n: self.resolution_id(n) for n in self.resolutions})

    def issuetype(self, project: str, ref: Any) -> str | None:
        return self.named(ref, list(self.config["projects"][project]["issue_types"]), self.issuetype_ids)

    def component(self, project: str, ref: Any) -> str | None:
        names = list(self.config["projects"][project].get("components") or [])
        return self.named(ref, names, {n: self.component_ids[(project, n)] for n in names})

    def link_type(self, ref: Any) -> dict[str, str] | None:
        if not isinstance(ref, dict):
            return None
        for item in self.link_types:
            if ref.get("name") is not None and item["name"].lower() == str(ref["name"]).lower():
                return item
            if ref.get("id") is not None and item["id"] == str(ref["id"]):
                return item
        return None

    def available(self, status: str) -> list[Transition]:
        """Transitions offered from ``status``: listed sources, or global ones to another status."""
        result = []
        for item in self.transitions:
            if item.sources is None:
                if item.to != status:
                    result.append(item)
            elif status in item.sources:
                result.append(item)
        return result


@dataclass
class Store:
    """Issues by id, links by id, the counters behind ids and keys."""

    issues: dict[str, dict[str, Any]] = field(default_factory=dict)
    links: dict[str, dict[str, str]] = field(default_factory=dict)
    next_issue_id: int = 10000
    next_comment_id: int = 10000
    next_link_id: int = 10000
    project_counters: dict[str, int] = field(default_factory=dict)

    def by_ref(self, ref: str) -> dict[str, Any] | None:
        """An issue by id or key (keys are case-insensitive)."""
        if ref in self.issues:
            return self.issues[ref]
        upper = ref.upper()
        return next((issue for issue in self.issues.values() if issue["key"] == upper), None)

    def new_issue_id(self) -> str:
        value = str(self.next_issue_id)
        self.next_issue_id += 1
        return value

    def new_key(self, project: str) -> str:
        self.project_counters[project] = self.project_counters.get(project, 0) + 1
        return f"{project}-{self.project_counters[project]}"

    def new_comment_id(self) -> str:
        value = str(self.next_comment_id)
        self.next_comment_id += 1
        return value

    def new_link_id(self) -> str:
        value = str(self.next_link_id)
        self.next_link_id += 1
        return value

    def to_json(self) -> dict[str, Any]:
        return {"issues": self.issues, "links": self.links, "next_issue_id": self.next_issue_id,
                "next_comment_id": self.next_comment_id, "next_link_id": self.next_link_id,
                "project_counters": self.project_counters}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Store:
        return cls(issues=dict(data.get("issues") or {}), links=dict(data.get("links") or {}),
                   next_issue_id=int(data.get("next_issue_id", 10000)), next_comment_id=int(data.get("next_comment_id", 10000)),
                   next_link_id=int(data.get("next_link_id", 10000)), project_counters=dict(data.get("project_counters") or {}))

    def save(self, path: str) -> None:
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(self.to_json(), handle)
        os.replace(tmp, path)


def snapshot(issue: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of an issue without its index history (what the search index holds)."""
    return copy.deepcopy({k: v for k, v in issue.items() if k != "_versions"})
