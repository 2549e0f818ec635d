# -*- coding: utf-8 -*-
# Copyright: (c) 2026, labops.itsm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Jira implementation of the SOP engine's ``TicketPlatform`` (thin, over ``_jira.JiraClient``).

Mapping (all overridable, see ``docs/lifecycle.md``):

* incidents, problems and change requests are issues of the types ``issue_types`` names (Incident, Problem,
  Change) in the routed project (``queue`` ``PROJECT`` or ``PROJECT/Component``, default option ``project``);
  the IMS id is the issue key;
* every IMS key is kept in the issue property ``labops.ims`` (JSON), so one GET (``?properties=labops.ims``) or one
  search reads a record back whole; the native fields that carry meaning in Jira are written too: ``title`` ->
  ``summary`` (clipped to 255 characters), the S-level -> ``priority`` (``priority_map``), the correlation key ->
  the label ``<label_prefix><key>`` next to the static ``labels``, the routed component -> ``components``,
  ``field_map`` IMS keys -> custom fields by id, ``problem_link`` / ``change_link`` -> issue links (``link_type``);
* the IMS status is a workflow status (``statuses``), reached by the transition that leads there (found by target
  status, cached per project, issue type and current status); entering a done status sends ``resolution`` when the
  transition screen offers it. Read back, the native status wins over a stale property (a human moved the issue);
* the first note is the description, later notes are comments (Jira has no internal notes).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import re
import time
from typing import Any, Callable, Mapping, Optional

from ansible_collections.labops.itsm.plugins.module_utils import _jira_markup as markup
from ansible_collections.labops.itsm.plugins.module_utils import _priority as prio
from ansible_collections.labops.itsm.plugins.module_utils._errors import AmbiguousWriteError, ValidationError
from ansible_collections.labops.itsm.plugins.module_utils._jira import ISSUE_REF_RE, CreationIndex, jira_time, jql_string
from ansible_collections.labops.itsm.plugins.module_utils._platform import (
    DEFAULT_LOOKUP_LIMIT,
    FOLLOW_UP_KEY,
    TicketPlatform,
    merge_platform_state_map,
    validate_correlation_key,
)
from ansible_collections.labops.itsm.plugins.module_utils._time import format_time, parse_time

PLATFORM = "jira"
PROPERTY = "labops.ims"
ENTITIES = ("incident", "problem", "change_request")
# the IMS keys a record carries (_sop.RECORD_KEYS; repeated here so that module_utils do not import the engine)
RECORD_KEYS = (
    "entity", "status", "title", "category", "subcategory", "priority", "severity", "severity_level",
    "detection_source", "reporter", "affected_service", "assigned_team", "change_link", "problem_link",
    "incident_links", "workaround", "root_cause", "pir", "kb_link", "opened_at", "responded_at", "resolved_at",
    "resolved_by", "closed_by", "requester", "approver", "vendor", "correlation_key",
)
LIST_KEYS = ("incident_links",)
DEFAULT_ISSUE_TYPES = {"incident": "Incident", "problem": "Problem", "change_request": "Change"}
DEFAULT_STATUSES = {
    "incident": {"open": "To Do", "in_progress": "In Progress", "escalated": "In Progress", "pending_vendor": "In Progress",
                 "resolved": "Done", "closed": "Done"},
    "problem": {"open": "To Do", "under_investigation": "In Progress", "known_error": "In Progress", "resolved": "Done", "closed": "Done"},
    "change_request": {"pending": "To Do", "approved": "In Progress", "rejected": "Done"},
}
# the status category (new, indeterminate, done) of every IMS status, and what a native status outside the map reads as
IMS_CATEGORIES = {
    "incident": {"open": "new", "in_progress": "indeterminate", "escalated": "indeterminate", "pending_vendor": "indeterminate",
                 "resolved": "done", "closed": "done"},
    "problem": {"open": "new", "under_investigation": "indeterminate", "known_error": "indeterminate", "resolved": "done", "closed": "done"},
    "change_request": {"pending": "new", "approved": "indeterminate", "rejected": "done"},
}
CATEGORY_STATUS = {
    "incident": {"new": "open", "indeterminate": "in_progress", "done": "resolved"},
    "problem": {"new": "open", "indeterminate": "under_investigation", "done": "resolved"},
    "change_request": {"new": "pending", "indeterminate": "approved", "done": "rejected"},
}
DONE_STATUSES = ("resolved", "closed", "rejected")
DEFAULT_RESOLUTION = "Done"
DEFAULT_LABEL_PREFIX = "labops-"
DEFAULT_LABELS = ("alertmanager",)
DEFAULT_LINK_TYPE = "Relates"
READ_FIELDS = ("summary", "status", "priority", "labels", "components", "resolution", "resolutiondate", "issuetype", "project")
SEARCH_CAP = 500
SEARCH_PAGE = 100
LINK_KEYS = ("problem_link", "change_link")
CUSTOM_FIELD_RE = re.compile(r"^customfield_[0-9]+$")
# After a create whose reply was lost (its id unknown, so not in reconcileIssues), Cloud's lookup of the key is repeated
# after these delays (seconds) until the lagging search shows the issue, before the governed write would create again.
SETTLE_DELAYS = (1.0, 2.0, 4.0, 8.0, 15.0)


def merge_statuses(overrides: Optional[Mapping[str, Any]]) -> dict:
    """DEFAULT_STATUSES with ``{entity: {IMS status: Jira status name}}`` overrides applied."""
    return merge_platform_state_map(DEFAULT_STATUSES, overrides)


def merge_issue_types(overrides: Optional[Mapping[str, Any]]) -> dict:
    result = dict(DEFAULT_ISSUE_TYPES)
    for entity, name in (overrides or {}).items():
        if entity not in result or not isinstance(name, str) or not name.strip():
            raise ValidationError(f"issue_types: give an issue type name for incident, problem or change_request, got {entity!r}: {name!r}")
        result[entity] = name.strip()
    if len({name.casefold() for name in result.values()}) != len(result):
        raise ValidationError("issue_types: each entity needs its own issue type (the entity is read back from it)")
    return result


def check_field_map(field_map: Optional[Mapping[str, Any]]) -> dict:
    result = {}
    for key, field in (field_map or {}).items():
        if key not in RECORD_KEYS or key in ("entity", "status"):
            raise ValidationError("field_map: unknown IMS key {0!r}; known: {1}".format(key, ", ".join(sorted(set(RECORD_KEYS) - {"entity", "status"}))))
        if not isinstance(field, str) or not CUSTOM_FIELD_RE.match(field.strip()):
            raise ValidationError(f"field_map.{key}: a custom field id such as customfield_10050 is required, got {field!r}")
        result[key] = field.strip()
    return result


def split_queue(queue: Optional[str]) -> tuple:
    """``"OPS"`` -> (OPS, None); ``"OPS/Storage"`` -> (OPS, Storage)."""
    text = str(queue or "").strip()
    project, _sep, component = text.partition("/")
    project, component = project.strip(), component.strip()
    if not re.match(r"^[A-Za-z][A-Za-z0-9_]*$", project):
        raise ValidationError(f"jira: the queue must be a project key or PROJECT/Component, got {queue!r}")
    return project.upper(), component or None


def _stored(key: str, value: Any) -> Any:
    if key in LIST_KEYS:
        return [str(item) for item in value or []]
    return None if value in (None, "") else value


def _name(value: Any) -> Optional[str]:
    return value.get("name") if isinstance(value, dict) else None


class JiraPlatform(TicketPlatform):
    """IMS records on Jira issues (Cloud v3 or Data Center v2, as the client speaks)."""

    name = PLATFORM
    # Creating needs Browse Projects, and the creation index makes the next (lagging) search name the new issue.
    reply_proves_findable = True

    def __init__(self, client: Any, *, project: Optional[str] = None, issue_types: Optional[Mapping[str, Any]] = None,
                 statuses: Optional[Mapping[str, Any]] = None, resolution: Optional[str] = None,
                 priority_map: Optional[Mapping[str, Any]] = None, field_map: Optional[Mapping[str, Any]] = None,
                 label_prefix: Optional[str] = None, labels: Any = None, link_type: Optional[str] = None,
                 index: Optional[CreationIndex] = None, warn: Optional[Callable[[str], None]] = None,
                 settle_delays: Any = SETTLE_DELAYS, sleep: Callable[[float], None] = time.sleep) -> None:
        if not project:
            raise ValidationError("jira: project is required (the project key issues are created in, or a queue PROJECT/Component)")
        self.client = client
        self.project, self.component = split_queue(project)
        self.issue_types = merge_issue_types(issue_types)
        self.statuses = merge_statuses(statuses)
        self.resolution = resolution or DEFAULT_RESOLUTION
        self.priorities = prio.priority_map(PLATFORM, priority_map)
        self.field_map = check_field_map(field_map)
        self.label_prefix = DEFAULT_LABEL_PREFIX if label_prefix is None else str(label_prefix)
        self.labels = [markup.jira_label(str(label)) for label in (DEFAULT_LABELS if labels is None else labels)]
        self.link_type = link_type or DEFAULT_LINK_TYPE
        self.index = index if index is not None else CreationIndex(client.cache_dir, client.base_url, warn=warn)
        self.settle_delays = tuple(settle_delays)
        self.sleep = sleep
        self._unsettled = set()  # type: set  # labels whose create reply was lost in this process

    # -- helpers ------------------------------------------------------------------------

    def label(self, key: str) -> str:
        """The correlation label of ``key``: ``<label_prefix><key>`` (a valid Jira label)."""
        return markup.jira_label(self.label_prefix + key)

    def _entity_of_type(self, type_name: Any) -> Optional[str]:
        for entity, name in self.issue_types.items():
            if type_name and name.casefold() == str(type_name).casefold():
                return entity
        return None

    def _level_to_name(self, level: Any) -> str:
        return self.priorities[prio.LEVEL_NAMES[prio.normalise_level(level)]]

    def _name_to_level(self, name: Any) -> Optional[str]:
        for severity, mapped in self.priorities.items():
            if name and str(mapped).casefold() == str(name).casefold():
                return prio.NAME_LEVELS[severity]
        return None

    def _status_of(self, entity: str, native: Any, category: Any, kept: Any) -> Optional[str]:
        """The IMS status an issue in native status ``native`` (of ``category``) shows; ``kept`` is the property's."""
        mapping = self.statuses[entity]
        if not native:
            return kept
        wanted = str(native).casefold()
        if kept in mapping and mapping[kept].casefold() == wanted:
            return kept
        for status, name in mapping.items():
            if name.casefold() == wanted:
                return status
        if kept and IMS_CATEGORIES[entity].get(kept) == category:
            return kept
        return CATEGORY_STATUS[entity].get(str(category)) or kept

    # -- reading ------------------------------------------------------------------------

    def to_record(self, issue: Mapping[str, Any], entity: Optional[str] = None) -> dict:
        """The IMS record of a Jira issue (fields READ_FIELDS and the property ``labops.ims``)."""
        fields = issue.get("fields") or {}
        kept = (issue.get("properties") or {}).get(PROPERTY)
        kept = dict(kept) if isinstance(kept, dict) else {}
        type_name = _name(fields.get("issuetype"))
        entity = str(kept["entity"]) if kept.get("entity") in ENTITIES else (self._entity_of_type(type_name) or entity or "incident")
        record = {key: ([] if key in LIST_KEYS else None) for key in RECORD_KEYS}  # type: dict[str, Any]
        for key in RECORD_KEYS:
            if key in kept:
                record[key] = _stored(key, kept[key])
        record["entity"] = entity
        for key, field in self.field_map.items():
            if field in fields:  # read with the issue: the custom field as Jira holds it wins (edited in Jira)
                value = fields[field]
                value = value.get("value") if isinstance(value, dict) else value
                if key in LIST_KEYS:
                    record[key] = [item.strip() for item in str(value or "").split(",") if item.strip()]
                else:
                    record[key] = _stored(key, None if value is None else str(value))
        summary = fields.get("summary")
        if summary and (not record["title"] or markup.clip_summary(str(record["title"])) != summary):
            record["title"] = summary  # edited in Jira
        status = fields.get("status") or {}
        category = (status.get("statusCategory") or {}).get("key")
        record["status"] = self._status_of(entity, status.get("name"), category, kept.get("status"))
        if category and category != "done" and kept.get("status") in DONE_STATUSES:
            record["resolved_at"] = None  # reopened in Jira
        priority = _name(fields.get("priority"))
        if priority and kept.get("jira_priority") and str(priority).casefold() != str(kept["jira_priority"]).casefold():
            level = self._name_to_level(priority)  # changed in Jira: the native priority wins
            if level:
                record["severity_level"], record["priority"] = level, prio.level_to_ims_priority(level)
        labels = [str(label) for label in fields.get("labels") or []]
        if not record["correlation_key"]:
            for label in labels:
                if label.startswith(self.label_prefix) and re.match(r"^[0-9a-f]{8,64}$", label[len(self.label_prefix):]):
                    record["correlation_key"] = label[len(self.label_prefix):]
        resolution = _name(fields.get("resolution"))
        if category == "done" and not record["resolved_at"] and fields.get("resolutiondate"):
            record["resolved_at"] = format_time(parse_time(jira_time(fields["resolutiondate"]), "resolutiondate"))
        record.update(id=issue.get("key"), platform_state=status.get("name"), platform_priority=priority, resolution=resolution,
                      _jira_id=str(issue.get("id") or ""), _project=(fields.get("project") or {}).get("key"), _issuetype=type_name,
                      _status_category=category, _labels=labels,
                      _components=[_name(c) for c in fields.get("components") or [] if _name(c)], _property=kept)
        return record

    def _read_fields(self) -> list:
        return list(READ_FIELDS) + sorted(set(self.field_map.values()))

    def get(self, entity: str, ref: str) -> Optional[dict]:
        text = str(ref or "").strip()
        if not ISSUE_REF_RE.match(text):
            return None
        issue = self.client.get_issue(text.upper(), fields=self._read_fields(), properties=[PROPERTY])
        return None if issue is None else self.to_record(issue, entity)

    def search(self, entity: str, *, active_only: bool = False, limit: int = DEFAULT_LOOKUP_LIMIT,
               match: Optional[Callable[[Mapping[str, Any]], bool]] = None) -> list:
        """Newest first through the routed project's issues (at most SEARCH_CAP), filtered by entity, activity and ``match``."""
        jql = f"project = {jql_string(self.project)} ORDER BY created DESC"
        records = []  # type: list[dict]
        for count, issue in enumerate(self.client.iter_search(jql, fields=self._read_fields(), properties=[PROPERTY], page_size=SEARCH_PAGE)):
            if count >= SEARCH_CAP:
                break
            record = self.to_record(issue)
            if record["entity"] != entity or (active_only and record["status"] in ("closed", "rejected")):
                continue
            if match is None or match(record):
                records.append(record)
                if len(records) >= limit:
                    break
        return records

    def find_by_correlation_key(self, key: str) -> Optional[dict]:
        """One search: ``labels = "<label>" ORDER BY created DESC``, at most 1 issue, with the issues this controller
        created under that label named in ``reconcileIssues`` (Cloud's search lags behind creates). After a create of
        the key whose reply was lost (its id unknown) the search is repeated after SETTLE_DELAYS until it shows one."""
        label = self.label(validate_correlation_key(key))
        delays = list(self.settle_delays) if label in self._unsettled else []
        self._unsettled.discard(label)
        while True:
            issues = self.client.search(f"labels = {jql_string(label)} ORDER BY created DESC", fields=self._read_fields(),
                                        properties=[PROPERTY], limit=1, reconcile=self.index.ids(label))
            if issues or not delays:
                return self.to_record(issues[0], "incident") if issues else None
            self.sleep(delays.pop(0))  # a create of this key whose reply was lost may not be searchable yet

    # -- writing ------------------------------------------------------------------------

    @staticmethod
    def _note_text(note: Optional[Mapping[str, Any]]) -> str:
        if not note:
            return ""
        subject, body = str(note.get("subject") or "").strip(), str(note.get("body") or "").strip()
        return subject if not body or body == subject else f"{subject}\n\n{body}"

    def _property(self, before: Mapping[str, Any], values: Mapping[str, Any], jira_priority: Optional[str]) -> dict:
        kept = {key: before.get(key) for key in RECORD_KEYS if key in before}
        for key, value in values.items():
            if key in RECORD_KEYS:
                kept[key] = _stored(key, value)
        if values.get(FOLLOW_UP_KEY):
            kept[FOLLOW_UP_KEY] = values[FOLLOW_UP_KEY]
        elif "status" in values:
            kept.pop(FOLLOW_UP_KEY, None)
        kept["jira_priority"] = jira_priority
        return kept

    def _fields(self, entity: str, values: Mapping[str, Any]) -> dict:
        """The native fields of the IMS ``values`` (summary, priority, custom fields)."""
        fields = {}  # type: dict[str, Any]
        if values.get("title"):
            fields["summary"] = markup.clip_summary(str(values["title"]))
        level = values.get("severity_level") or (prio.ims_priority_to_level(values["priority"]) if values.get("priority") else None)
        if level:
            fields["priority"] = {"name": self._level_to_name(level)}
        for key, field in self.field_map.items():
            if key in values:
                value = values[key]
                fields[field] = None if value in (None, "", []) else (", ".join(map(str, value)) if isinstance(value, list) else str(value))
        return fields

    def _labels(self, key: Optional[str]) -> list:
        labels = list(self.labels)
        if key:
            labels.append(self.label(key))
        return list(dict.fromkeys(labels))

    def create(self, entity: str, values: Mapping[str, Any], note: Mapping[str, Any]) -> Optional[dict]:
        """One POST (fields, labels, the ``labops.ims`` property; the first note is the description); a status other than
        the workflow's initial one costs a transition. The new id is in the creation index before this returns."""
        if entity not in ENTITIES:
            raise ValidationError(f"jira: unknown entity {entity!r}")
        fields = dict(self._fields(entity, values), project={"key": self.project}, issuetype={"name": self.issue_types[entity]})
        text = self._note_text(note)
        fields.setdefault("summary", markup.clip_summary(text or entity))
        if text:
            fields["description"] = self.client.rich_text(markup.clip_description(text))
        key = values.get("correlation_key") or None
        fields["labels"] = self._labels(key)
        if self.component:
            fields["components"] = [{"name": self.component}]
        written = _name(fields.get("priority"))
        kept = self._property({}, dict(values, entity=entity), written)
        try:
            created = self.client.create_issue(fields, properties={PROPERTY: kept})
        except AmbiguousWriteError:
            if key and self.client.cloud:
                self._unsettled.add(self.label(key))  # the governed write looks the key up next: wait out the search lag there
            raise
        if key:
            self.index.remember(self.label(key), created["id"])
        initial = next(iter(self.statuses[entity].values()))
        issue = {"id": created["id"], "key": created["key"],
                 "fields": {"summary": fields["summary"], "status": {"name": initial, "statusCategory": {"key": "new"}},
                            "priority": fields.get("priority"), "labels": fields["labels"], "components": fields.get("components") or [],
                            "resolution": None, "resolutiondate": None, "issuetype": {"name": self.issue_types[entity]},
                            "project": {"key": self.project}},
                 "properties": {PROPERTY: kept}}
        record = self.to_record(issue, entity)
        target = self.statuses[entity].get(str(values.get("status") or ""))
        if target and target.casefold() != initial.casefold():
            return self.update(record, {"status": values["status"]})
        return record

    @staticmethod
    def _cache_key(record: Mapping[str, Any]) -> tuple:
        return (record.get("_project"), record.get("_issuetype"), str(record.get("platform_state") or "").casefold())

    def _transition_to(self, record: Mapping[str, Any], target: str) -> dict:
        """The transition from the issue's status to ``target`` (cached per project, issue type and status)."""
        return self.client.find_transition(record["id"], to_status=target, cache_key=self._cache_key(record),
                                           current_status=record.get("platform_state"))

    def update(self, record: Mapping[str, Any], changes: Mapping[str, Any], note: Optional[Mapping[str, Any]] = None) -> dict:
        """Fields by PUT (with the property), a status by its transition (with resolution, the note and the property),
        a note as a comment, links by POST /issueLink. The transition is looked up before anything is written: a
        workflow that cannot reach the status fails with nothing changed."""
        entity, key = record["entity"], record["id"]
        transition = None
        target = ""
        cached = self.client.has_transitions(self._cache_key(record))
        if changes.get("status"):
            target = self.statuses[entity][changes["status"]]
            if target.casefold() != str(record.get("platform_state") or "").casefold():
                transition = self._transition_to(record, target)
        fields = self._fields(entity, changes)
        old_key, new_key = record.get("correlation_key"), changes.get("correlation_key")
        update = {"labels": [{"add": self.label(new_key)}]} if new_key and new_key != old_key else None
        before = record.get("_property") or {key_: record.get(key_) for key_ in RECORD_KEYS}
        written = _name(fields.get("priority")) or before.get("jira_priority")
        kept = self._property(before, changes, written)
        text = self._note_text(note)
        if transition is not None:
            if fields or update:
                self.client.edit_issue(key, fields=fields, update=update)
            try:
                self._transition(record, transition, kept, text)
            except ValidationError:
                if not cached:
                    raise
                # the cached transition may not apply to this issue (its status changed meanwhile): look it up again, once
                self.client.forget_transitions(self._cache_key(record))
                self._transition(record, self.client.find_transition(key, to_status=target), kept, text)
        else:
            self.client.edit_issue(key, fields=fields, update=update, properties={PROPERTY: kept})
            if text:
                self.client.add_comment(key, text)
        for link in LINK_KEYS:
            if changes.get(link) and changes[link] != record.get(link):
                self.client.link_issues(self.link_type, str(changes[link]), key)
        label_key = new_key or old_key
        if label_key and record.get("_jira_id"):
            self.index.remember(self.label(label_key), record["_jira_id"])  # the next lookup sees this write despite the lag
        return self._after(record, fields, update, kept, target if transition is not None else None, transition)

    def _transition(self, record: Mapping[str, Any], transition: Mapping[str, Any], kept: Mapping[str, Any], text: str) -> None:
        target_category = ((transition.get("to") or {}).get("statusCategory") or {}).get("key")
        screen = transition.get("fields") or {}
        fields = {"resolution": {"name": self.resolution}} if target_category == "done" and "resolution" in screen else None
        update = {"comment": [{"add": {"body": self.client.rich_text(text)}}]} if text else None
        self.client.transition(record["id"], transition["id"], fields=fields, update=update, properties={PROPERTY: kept})

    def _after(self, record: Mapping[str, Any], fields: Mapping[str, Any], update: Any, kept: Mapping[str, Any],
               target: Optional[str], transition: Optional[Mapping[str, Any]]) -> dict:
        """The record as Jira now holds it, from what was written (no read-back GET)."""
        labels = list(record.get("_labels") or [])
        for operation in (update or {}).get("labels", []):
            if operation.get("add") and operation["add"] not in labels:
                labels.append(operation["add"])
        priority = fields.get("priority") or ({"name": record["platform_priority"]} if record.get("platform_priority") else None)
        status = {"name": record.get("platform_state"), "statusCategory": {"key": record.get("_status_category")}}
        resolution = {"name": record["resolution"]} if record.get("resolution") else None
        if transition is not None:
            to = transition.get("to") or {}
            category = (to.get("statusCategory") or {}).get("key")
            status = {"name": to.get("name") or target, "statusCategory": {"key": category}}
            if category == "done":
                resolution = {"name": self.resolution}
            else:
                resolution = None
        issue = {"id": record.get("_jira_id"), "key": record["id"],
                 "fields": {"summary": fields.get("summary") or markup.clip_summary(str(kept.get("title") or record.get("title") or "")),
                            "status": status, "priority": priority, "labels": labels,
                            "components": [{"name": name} for name in record.get("_components") or []],
                            "resolution": resolution, "resolutiondate": None,
                            "issuetype": {"name": record.get("_issuetype")}, "project": {"key": record.get("_project")}},
                 "properties": {PROPERTY: dict(kept)}}
        return self.to_record(issue, record["entity"])

    def add_note(self, record: Mapping[str, Any], note: Mapping[str, Any]) -> None:
        text = self._note_text(note)
        if text:
            self.client.add_comment(record["id"], text)

    def creation_lock(self, key: str) -> Any:
        """An exclusive lock (flock, on this controller) of the key's label around "find, else create"."""
        return self.index.lock(self.label(validate_correlation_key(key)))

    def unfindable_hint(self, record: Optional[Mapping[str, Any]]) -> str:
        return (f"the jira account can create issues in {self.project} but does not find them by their label: it needs the "
                "Browse Projects permission there (and an issue security level that lets it see them)")

    def routed(self, queue: Optional[str]) -> "JiraPlatform":
        """The adapter for ``queue`` (``PROJECT`` or ``PROJECT/Component``) sharing this one's client and creation index."""
        if not queue:
            return self
        project, component = split_queue(queue)
        if (project, component) == (self.project, self.component):
            return self
        other = copy.copy(self)
        other.project, other.component = project, component
        return other


def platform_from_params(params: Mapping[str, Any], client: Any, warn: Optional[Callable[[str], None]] = None) -> JiraPlatform:
    """The adapter from the registry's validated options (``_platforms``) plus the routing ``queue``."""
    return JiraPlatform(client, project=params.get("queue") or params.get("project"), issue_types=params.get("issue_types"),
                        statuses=params.get("statuses"), resolution=params.get("resolution"), priority_map=params.get("priority_map"),
                        field_map=params.get("field_map"), label_prefix=params.get("label_prefix"), labels=params.get("labels"),
                        link_type=params.get("link_type"), warn=warn)
