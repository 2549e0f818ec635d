# -*- coding: utf-8 -*-
# Copyright: (c) 2026, labops.itsm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""CMDB enrichment of the alert path: an AlertManager source event -> the SOP request that handles it.

The one place that turns an event as the ``labops.itsm.alertmanager`` source emits it
(``{alert, group, correlation_key, meta}``) and the inventory into what ``labops.itsm.alert_intake``
runs: SOP 16 ``monitoring_intake`` for a firing alert, SOP 11 ``incident_resolve`` for a resolved one,
with the platform, its options and the queue. The action plugin of ``alert_intake`` reads the
inventory (the play's variables and ``hostvars`` of the alert's asset) and calls :func:`request_for`;
nothing here touches Ansible. docs/alert_path.md ("CMDB enrichment") lists the variables read.

Pure functions, Python 3.8 syntax (module_utils).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import hashlib
import re
from typing import Any, Mapping, Optional

from ansible_collections.labops.itsm.plugins.module_utils import _priority as prio
from ansible_collections.labops.itsm.plugins.module_utils import _refire as refire
from ansible_collections.labops.itsm.plugins.module_utils import _time
from ansible_collections.labops.itsm.plugins.module_utils._correlation import alert_ticket_key, group_ticket_key
from ansible_collections.labops.itsm.plugins.module_utils._errors import ValidationError

# Play / group variables (group_vars/all) the enrichment reads.
# Ticket semantics (jiralert's): which alerts share a ticket and what a firing does to a resolved one. Read from the
# asset first (a group_vars file of the platform's group), then the play / group_vars/all.
TICKET_VARS = ("itsm_alert_grouping", "itsm_reopen_window", "itsm_never_reopen", "itsm_repeat_update")
SETTINGS_VARS = ("itsm_platform", "itsm_platform_options", "itsm_team_queues", "itsm_default_queue", "itsm_default_impact",
                 "itsm_severity_urgency", "itsm_min_severity") + TICKET_VARS
# Per-asset variables (hostvars[<asset>]) the enrichment reads.
ASSET_VARS = ("itsm_platform", "itsm_queue", "itsm_impact", "itsm_service", "itsm_category", "itsm_team", "itsm_location") + TICKET_VARS

# episode: one ticket per alert episode (fingerprint + startsAt; a new episode opens a new ticket: the default);
# alert: one ticket per alert (fingerprint), reused across episodes; group: one ticket per AlertManager group (receiver +
# groupKey), resolved when the whole group is.
GROUPINGS = ("episode", "alert", "group")

DEFAULT_QUEUE = "Raw"
DEFAULT_IMPACT = "medium"
DEFAULT_URGENCY = "medium"
DEFAULT_MIN_SEVERITY = "low"
DEFAULT_SEVERITY_LABEL = "warning"

_FINGERPRINT = re.compile(r"^[0-9a-f]{16}$")
_KEY_PREFIX = "alertmanager|"
_KEY_LENGTH = 24


def _given(mapping: Mapping[str, Any], name: str) -> bool:
    """Jinja's ``is defined`` for the enrichment: present and not null."""
    return isinstance(mapping, Mapping) and mapping.get(name) is not None


def _pick(*candidates: Any) -> Any:
    """``a | default(b | default(c))``: the first (mapping, name) pair that is given, else the last plain value."""
    for candidate in candidates[:-1]:
        mapping, name = candidate
        if _given(mapping, name):
            return mapping[name]
    return candidates[-1]


def correlation_key(fingerprint: Any, starts_at: Any) -> str:
    """The alert episode's key: ``sha256("alertmanager|<fingerprint>|<canonical startsAt>")[:24]``.

    The same function as the ``labops.itsm.correlation_key`` filter and the event source.
    """
    if not isinstance(fingerprint, str) or _FINGERPRINT.match(fingerprint) is None:
        raise ValidationError(f"alert.fingerprint must be 16 lowercase hex characters, got {fingerprint!r}")
    if not isinstance(starts_at, str) or not starts_at:
        raise ValidationError(f"alert.startsAt must be an RFC 3339 timestamp, got {starts_at!r}")
    try:
        canonical = _time.canonical_timestamp(starts_at)
    except ValueError:
        raise ValidationError(f"alert.startsAt must be an RFC 3339 timestamp, got {starts_at!r}")
    return hashlib.sha256((_KEY_PREFIX + fingerprint + "|" + canonical).encode("utf-8")).hexdigest()[:_KEY_LENGTH]


def ticket_key(event: Mapping[str, Any], grouping: str) -> str:
    """The correlation key of the event's ticket under ``grouping`` (:data:`GROUPINGS`); the episode key is the event's."""
    if grouping == "episode":
        return event_correlation_key(event)
    if grouping == "alert":
        return alert_ticket_key(alert_of(event)["fingerprint"])
    if grouping == "group":
        group = _group_of(event)
        if not group.get("key"):
            raise ValidationError("itsm_alert_grouping group: the event has no group.key (AlertManager's groupKey)")
        return group_ticket_key(str(group.get("receiver") or ""), str(group["key"]))
    raise ValidationError("itsm_alert_grouping must be one of {0}, got {1!r}".format(", ".join(GROUPINGS), grouping))


def _group_of(event: Mapping[str, Any]) -> dict:
    """The event's AlertManager group (key, status, receiver, labels (groupLabels), ...), or {}."""
    group = event.get("group")
    return dict(group) if isinstance(group, Mapping) else {}


def _ticket_settings(settings: Mapping[str, Any], asset: Mapping[str, Any]) -> dict:
    """The ticket semantics of an asset (asset vars over play vars), checked."""
    grouping = str(_pick((asset, "itsm_alert_grouping"), (settings, "itsm_alert_grouping"), "episode"))
    if grouping not in GROUPINGS:
        raise ValidationError("itsm_alert_grouping must be one of {0}, got {1!r}".format(", ".join(GROUPINGS), grouping))
    window = _pick((asset, "itsm_reopen_window"), (settings, "itsm_reopen_window"), None)
    never = _pick((asset, "itsm_never_reopen"), (settings, "itsm_never_reopen"), [])
    if isinstance(never, str):
        never = [never]
    refire.parse_window(window, "itsm_reopen_window")
    repeat = str(_pick((asset, "itsm_repeat_update"), (settings, "itsm_repeat_update"), "none"))
    if repeat not in refire.REPEAT_UPDATES:
        raise ValidationError("itsm_repeat_update must be one of {0}, got {1!r}".format(", ".join(refire.REPEAT_UPDATES), repeat))
    return {"grouping": grouping, "reopen_window": None if window is None else str(window),
            "never_reopen": [str(name) for name in never], "repeat_update": repeat}


def alert_of(event: Any) -> dict:
    """The event's alert, checked: a dict with status firing|resolved, a fingerprint and an alertname label."""
    if not isinstance(event, Mapping):
        raise ValidationError("an alert event must be a mapping {alert, group, correlation_key, meta}")
    alert = event.get("alert")
    if not isinstance(alert, Mapping):
        raise ValidationError("the alert event has no alert")
    if alert.get("status") not in ("firing", "resolved"):
        raise ValidationError("alert.status must be firing or resolved, got {0!r}".format(alert.get("status")))
    labels = alert.get("labels")
    if not isinstance(labels, Mapping) or not labels.get("alertname"):
        raise ValidationError("the alert has no alertname label")
    if not isinstance(alert.get("fingerprint"), str) or _FINGERPRINT.match(alert["fingerprint"]) is None:
        raise ValidationError("alert.fingerprint must be 16 lowercase hex characters, got {0!r}".format(alert.get("fingerprint")))
    return dict(alert)


def event_correlation_key(event: Mapping[str, Any]) -> str:
    """The event's ``correlation_key`` (the source sets it), else derived from fingerprint and startsAt."""
    if _given(event, "correlation_key"):
        return str(event["correlation_key"])
    alert = alert_of(event)
    return correlation_key(alert.get("fingerprint"), alert.get("startsAt"))


def asset_name(event: Mapping[str, Any]) -> str:
    """The CMDB name of the alert's asset: label ``name``, else ``node``, else ``instance`` without its port."""
    labels = alert_of(event).get("labels") or {}
    return str(_pick((labels, "name"), (labels, "node"), str(_pick((labels, "instance"), "")).split(":", 1)[0]))


def _labels_text(labels: Mapping[str, Any]) -> str:
    """Jinja ``labels | dictsort | map('join', '=') | join(', ')`` (dictsort is case-insensitive)."""
    return ", ".join(f"{key}={labels[key]}" for key in sorted(labels, key=lambda key: str(key).lower()))


def _routing(labels: Mapping[str, Any], settings: Mapping[str, Any], asset: Mapping[str, Any], name: str) -> dict:
    """Platform, its options and the queue of an alert (shared by firing and resolved)."""
    platform = _pick((asset, "itsm_platform"), (settings, "itsm_platform"), None)
    if not platform:
        raise ValidationError(f"no ticket platform for asset {name!r}: set itsm_platform in the inventory")
    options = (settings.get("itsm_platform_options") or {}).get(platform) or {}
    team_queues = settings.get("itsm_team_queues") or {}
    queue = _pick((asset, "itsm_queue"), (team_queues, str(_pick((labels, "team"), ""))),
                  _pick((settings, "itsm_default_queue"), DEFAULT_QUEUE))
    return {"platform": str(platform), "platform_options": dict(options), "queue": str(queue)}


def firing_request(event: Mapping[str, Any], settings: Mapping[str, Any], asset: Mapping[str, Any]) -> dict:
    """SOP 16 ``monitoring_intake`` for a firing alert, as playbooks/incident_open.yml built it in Jinja."""
    alert = alert_of(event)
    labels = alert.get("labels") or {}
    annotations = alert.get("annotations") or {}
    episode = event_correlation_key(event)
    ticket = _ticket_settings(settings, asset)
    key = ticket_key(event, ticket["grouping"])
    name = asset_name(event)
    alertname = str(labels["alertname"])
    urgency = str(_pick(((settings.get("itsm_severity_urgency") or {}), str(_pick((labels, "severity"), DEFAULT_SEVERITY_LABEL))),
                        DEFAULT_URGENCY))
    impact = str(_pick((asset, "itsm_impact"), (labels, "impact"), _pick((settings, "itsm_default_impact"), DEFAULT_IMPACT)))
    level = prio.priority_matrix(urgency, impact)
    routing = _routing(labels, settings, asset, name)
    service = str(_pick((asset, "itsm_service"), (labels, "service_id"), name or alertname))
    summary = str(_pick((annotations, "summary"), alertname))
    team = _pick((asset, "itsm_team"), (labels, "team"), "unknown")
    location = _pick((asset, "itsm_location"), "unknown")
    details = "\n".join([
        str(_pick((annotations, "description"), "")),
        "",
        "Alert:       {0} ({1})".format(alertname, _pick((labels, "severity"), "unknown")),
        "Started:     {0}".format(alert.get("startsAt")),
        f"Asset:       {name} (service {service},",
        f"             team {team},",
        f"             location {location})",
        "Queue:       {0}".format(routing["queue"]),
        f"Priority:    {level} (urgency {urgency} x impact {impact})",
        f"Labels:      {_labels_text(labels)}",
        "Runbook:     {0}".format(_pick((annotations, "runbook_url"), "none")),
        "Source:      {0}".format(_pick((alert, "generatorURL"), "")),
        "Fingerprint: {0}  correlation key {1}".format(alert.get("fingerprint"), episode),
    ] + ([] if key == episode else ["Ticket key:  {0} (one ticket per {1})".format(key, ticket["grouping"])]))
    meta = event.get("meta") if isinstance(event.get("meta"), Mapping) else {}
    inputs = {
        "event": {
            "event_id": str(_pick((meta, "uuid"), key)), "service": service, "source": "automated_alert", "alert_type": alertname,
            "severity": urgency, "occurred_at": alert.get("startsAt"), "summary": summary, "correlation_key": key,
            "title": _title(event, ticket["grouping"], level, alertname, name, summary),
            "subject": f"FIRING {alertname} {name}", "details": details,
        },
        "impact": impact,
        "min_severity": str(_pick((settings, "itsm_min_severity"), DEFAULT_MIN_SEVERITY)),
        "repeat_update": ticket["repeat_update"],
    }
    if ticket["reopen_window"] is not None:
        inputs["reopen_window"] = ticket["reopen_window"]
        inputs["never_reopen"] = ticket["never_reopen"]
    if _given(asset, "itsm_category"):
        inputs["category"] = str(asset["itsm_category"])
    return dict(routing, sop="monitoring_intake", status="firing", correlation_key=episode, ticket_key=key, alertname=alertname,
                asset=name, severity_level=level, inputs=inputs)


def _title(event: Mapping[str, Any], grouping: str, level: str, alertname: str, name: str, summary: str) -> str:
    """The incident title: the alert's asset, or for a group ticket the group's labels (the whole group shares it)."""
    if grouping != "group":
        return f"[{level}] {alertname} {name}: {summary}"
    group = _group_of(event)
    group_labels = group["labels"] if isinstance(group.get("labels"), Mapping) else {}
    values = " ".join(str(group_labels[label]) for label in sorted(group_labels)) or alertname
    return f"[{level}] {values}: {summary}"


def resolution_summary(alert: Mapping[str, Any], key: str) -> str:
    """The resolution summary of a resolved alert (playbooks/incident_resolve.yml's text)."""
    labels = alert.get("labels") or {}
    return ("RESOLVED {0}: the alert resolved at its source (started {1}, ended {2}; correlation key {3}).".format(
        labels.get("alertname"), alert.get("startsAt"), _pick((alert, "endsAt"), "?"), key))


def resolved_request(event: Mapping[str, Any], settings: Mapping[str, Any], asset: Mapping[str, Any]) -> dict:
    """SOP 11 ``incident_resolve`` by correlation key, acknowledging an open incident (incident_resolve.yml)."""
    alert = alert_of(event)
    labels = alert.get("labels") or {}
    episode = event_correlation_key(event)
    ticket = _ticket_settings(settings, asset)
    key = ticket_key(event, ticket["grouping"])
    name = asset_name(event)
    routing = _routing(labels, settings, asset, name)
    request = dict(routing, sop="incident_resolve", status="resolved", correlation_key=episode, ticket_key=key,
                   alertname=str(labels["alertname"]), asset=name)
    group = _group_of(event)
    if ticket["grouping"] == "group" and group.get("status") != "resolved":
        # One alert of the group cleared, others still fire: the group's ticket stays open until the group resolves.
        return dict(request, sop=None, hold="group_firing")
    # The source's resolved notification is the evidence: the condition that raised the alert is gone and
    # the monitored service answers again. The service desk reopens with incident_assign when it is not so.
    request["inputs"] = {"correlation_key": key, "acknowledge": True, "resolution_summary": resolution_summary(alert, episode),
                         "fix_applied": True, "service_restored": True}
    return request


def request_for(event: Mapping[str, Any], settings: Mapping[str, Any], asset: Optional[Mapping[str, Any]]) -> dict:
    """The SOP request of one source event; ``settings`` holds :data:`SETTINGS_VARS`, ``asset`` :data:`ASSET_VARS`
    of ``hostvars[asset_name(event)]`` (empty or None when the asset is not in the inventory).

    Raises ValidationError for an event that is not a well-formed AlertManager alert event.
    """
    alert = alert_of(event)
    if alert["status"] == "firing":
        return firing_request(event, settings or {}, asset or {})
    return resolved_request(event, settings or {}, asset or {})


def delay_note(accepted_at: float, handled_at: float, attempts: int, last_error: Optional[str]) -> str:
    """The text an incident carries when its alert event was handled late or after failed attempts."""
    text = f"Delayed: accepted by the intake at {_epoch_text(accepted_at)}, handled at {_epoch_text(handled_at)} after {int(attempts)} failed attempt(s)"
    if last_error:
        text += f"; last error: {last_error}"
    return text


def _epoch_text(epoch: float) -> str:
    moment = datetime.datetime.fromtimestamp(float(epoch), datetime.timezone.utc)
    return str(_time.format_time(moment))
