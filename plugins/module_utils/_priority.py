# -*- coding: utf-8 -*-
# Copyright: (c) 2025, labops.itsm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Severity, priority and SLA arithmetic of the IMS (seed 004, seed 002, seed 001).

Pure functions, no I/O, platform independent:

* the urgency x impact matrix (seed 004 section 3.2) → severity level S1..S4;
* the S-levels with their response and resolution targets (seed 004 section 3.1 and 6.1);
* the S-level ↔ IMS priority mapping (seed 002 uses low/medium/high);
* per-platform priority vocabularies (seed 001 for ServiceNow and Jira, OTOBO's stock names),
  overridable by the caller;
* SLA deadlines and breach computation from timestamps.

Response target of S1: seed 004 says "Immediate response" in the severity table and
"First Response Time Critical <15min" in the KPI table.  "Immediate" cannot be measured,
so the measurable KPI wins: S1 first response is due 15 minutes after logging.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
from typing import Any, Mapping, Optional

from ansible_collections.labops.itsm.plugins.module_utils._errors import ValidationError
from ansible_collections.labops.itsm.plugins.module_utils._time import format_time, parse_time, utc_now

LEVELS = ("S1", "S2", "S3", "S4")
LEVEL_NAMES = {"S1": "critical", "S2": "high", "S3": "medium", "S4": "low"}
NAME_LEVELS = {name: level for level, name in LEVEL_NAMES.items()}
RATINGS = ("high", "medium", "low")

# seed 004 section 3.2: (urgency, impact) -> level
PRIORITY_MATRIX = {
    ("high", "high"): "S1", ("high", "medium"): "S2", ("high", "low"): "S3",
    ("medium", "high"): "S2", ("medium", "medium"): "S3", ("medium", "low"): "S4",
    ("low", "high"): "S3", ("low", "medium"): "S4", ("low", "low"): "S4",
}

# seed 004 section 3.1 (resolution) and 6.1 (S1 first response < 15 min), in minutes
SLA_TARGETS = {
    "S1": {"response_minutes": 15, "resolution_minutes": 4 * 60},
    "S2": {"response_minutes": 30, "resolution_minutes": 8 * 60},
    "S3": {"response_minutes": 4 * 60, "resolution_minutes": 24 * 60},
    "S4": {"response_minutes": 24 * 60, "resolution_minutes": 72 * 60},
}

# seed 002 priority (low/medium/high) <-> seed 004 level. S1 and S2 are both "high";
# the reverse mapping picks the less severe level unless the caller knows better.
LEVEL_TO_IMS_PRIORITY = {"S1": "high", "S2": "high", "S3": "medium", "S4": "low"}
IMS_PRIORITY_TO_LEVEL = {"high": "S2", "medium": "S3", "low": "S4"}

# seed 001 (ServiceNow, Jira) and OTOBO's stock priority names ("1 very low" is not used).
PLATFORM_PRIORITY_MAPS = {
    "otobo": {"critical": "5 very high", "high": "4 high", "medium": "3 normal", "low": "2 low"},
    "servicenow": {"critical": "1", "high": "2", "medium": "3", "low": "4"},
    "jira": {"critical": "Highest", "high": "High", "medium": "Medium", "low": "Low"},
}

# ServiceNow derives priority from impact x urgency (contract section 9, the base data-lookup rules); the pairs
# below give seed 001's priorities (critical 1, high 2, medium 3, low 4) through that lookup.
SERVICENOW_PRIORITY_LOOKUP = {
    ("1", "1"): "1", ("1", "2"): "2", ("1", "3"): "3",
    ("2", "1"): "2", ("2", "2"): "3", ("2", "3"): "4",
    ("3", "1"): "3", ("3", "2"): "4", ("3", "3"): "5",
}
SERVICENOW_IMPACT_URGENCY = {
    "critical": {"impact": "1", "urgency": "1"},
    "high": {"impact": "1", "urgency": "2"},
    "medium": {"impact": "2", "urgency": "2"},
    "low": {"impact": "2", "urgency": "3"},
}


def servicenow_priority(impact: Any, urgency: Any) -> str:
    """The priority ServiceNow computes for ``impact`` x ``urgency`` (``'1'``..``'5'``)."""
    key = (str(impact).strip(), str(urgency).strip())
    if key not in SERVICENOW_PRIORITY_LOOKUP:
        raise ValidationError(f"servicenow impact and urgency must be 1, 2 or 3, got impact {impact!r}, urgency {urgency!r}",
                              value=f"{impact}/{urgency}")
    return SERVICENOW_PRIORITY_LOOKUP[key]


def servicenow_impact_urgency(severity: Any, mapping: Optional[Mapping[str, Any]] = None) -> dict:
    """``{impact, urgency}`` of a severity (S-level or name) on ServiceNow; ``mapping`` overrides per severity
    (``{"critical": {"impact": 1, "urgency": 1}}``), each pair checked against the lookup."""
    table = {name: dict(pair) for name, pair in SERVICENOW_IMPACT_URGENCY.items()}
    for key, pair in (mapping or {}).items():
        name = LEVEL_NAMES[normalise_level(key)]
        if not isinstance(pair, Mapping) or set(pair) != {"impact", "urgency"}:
            raise ValidationError(f"servicenow severity map {key!r}: give impact and urgency, got {pair!r}", value=str(key))
        servicenow_priority(pair["impact"], pair["urgency"])
        table[name] = {"impact": str(pair["impact"]), "urgency": str(pair["urgency"])}
    return dict(table[LEVEL_NAMES[normalise_level(severity)]])


def _choice(name: str, value: Any, allowed: tuple) -> str:
    text = str(value).strip().lower() if isinstance(value, str) else value
    if text not in allowed:
        raise ValidationError("{0} must be one of {1}, got {2!r}".format(name, ", ".join(allowed), value), value=str(value))
    return text


def priority_matrix(urgency: Any, impact: Any) -> str:
    """Seed 004 matrix: ``priority_matrix('high', 'medium') == 'S2'``."""
    return PRIORITY_MATRIX[(_choice("urgency", urgency, RATINGS), _choice("impact", impact, RATINGS))]


def normalise_level(severity: Any) -> str:
    """``S1``..``S4`` (any case) or ``critical/high/medium/low`` → ``S1``..``S4``."""
    if isinstance(severity, str):
        text = severity.strip()
        if text.upper() in LEVELS:
            return text.upper()
        if text.lower() in NAME_LEVELS:
            return NAME_LEVELS[text.lower()]
    raise ValidationError(
        f"severity must be one of S1, S2, S3, S4 or critical, high, medium, low, got {severity!r}",
        value=str(severity))


def level_to_ims_priority(severity: Any) -> str:
    """S-level → seed 002 priority (``low``/``medium``/``high``)."""
    return LEVEL_TO_IMS_PRIORITY[normalise_level(severity)]


def ims_priority_to_level(priority: Any) -> str:
    """Seed 002 priority → the default S-level (high → S2; S1 must be set explicitly or by the matrix)."""
    return IMS_PRIORITY_TO_LEVEL[_choice("priority", priority, tuple(IMS_PRIORITY_TO_LEVEL))]


def priority_map(platform: Any, mapping: Optional[Mapping[str, Any]] = None) -> dict:
    """The platform's severity-name → priority-value map with the caller's overrides applied.

    ``mapping`` keys may be severity names or S-levels; unknown platforms need a full mapping.
    """
    name = str(platform or "").strip().lower()
    table = dict(PLATFORM_PRIORITY_MAPS.get(name, {}))
    for key, value in (mapping or {}).items():
        table[LEVEL_NAMES[normalise_level(key)]] = str(value)
    missing = [level for level in ("critical", "high", "medium", "low") if level not in table]
    if missing:
        raise ValidationError(
            "no priority mapping for platform {0!r} (known: {1}); missing: {2}".format(
                platform, ", ".join(sorted(PLATFORM_PRIORITY_MAPS)), ", ".join(missing)),
            value=str(platform))
    return table


def severity_to_priority(severity: Any, platform: Any, mapping: Optional[Mapping[str, Any]] = None) -> str:
    """``severity_to_priority('S1', 'servicenow') == '1'``; ``mapping`` overrides the defaults."""
    return priority_map(platform, mapping)[LEVEL_NAMES[normalise_level(severity)]]


def priority_to_severity(value: Any, platform: Any, mapping: Optional[Mapping[str, Any]] = None) -> Optional[str]:
    """Reverse lookup of a platform priority value → S-level, None when the value is not mapped."""
    for name, mapped in priority_map(platform, mapping).items():
        if str(mapped) == str(value):
            return NAME_LEVELS[name]
    return None


def sla_targets(severity: Any) -> dict:
    """Response and resolution targets of an S-level, in minutes and as text."""
    level = normalise_level(severity)
    target = SLA_TARGETS[level]
    return {
        "severity": level,
        "name": LEVEL_NAMES[level],
        "ims_priority": LEVEL_TO_IMS_PRIORITY[level],
        "response_minutes": target["response_minutes"],
        "resolution_minutes": target["resolution_minutes"],
        "response": _duration_text(target["response_minutes"]),
        "resolution": _duration_text(target["resolution_minutes"]),
    }


def _duration_text(minutes: int) -> str:
    if minutes % 60:
        return f"{minutes}min"
    return f"{minutes // 60}h"


def sla_deadlines(severity: Any, opened_at: Any) -> dict:
    """``{response_due, resolution_due}`` (ISO-8601 UTC) of an incident logged at ``opened_at``."""
    opened = parse_time(opened_at, "opened_at")
    if opened is None:
        raise ValidationError("opened_at is required to compute SLA deadlines")
    target = SLA_TARGETS[normalise_level(severity)]
    return {
        "response_due": format_time(opened + datetime.timedelta(minutes=target["response_minutes"])),
        "resolution_due": format_time(opened + datetime.timedelta(minutes=target["resolution_minutes"])),
    }


def _breach(due: datetime.datetime, done: Optional[datetime.datetime], now: datetime.datetime) -> dict:
    """One target: met/breached/pending and the minutes left (negative = overdue)."""
    reference = done or now
    left = (due - reference).total_seconds() / 60.0
    if done is not None:
        status = "met" if done <= due else "breached"
    else:
        status = "pending" if now <= due else "breached"
    return {"status": status, "breached": status == "breached", "minutes_left": round(left, 1)}


def sla_status(severity: Any, opened_at: Any, responded_at: Any = None, resolved_at: Any = None, now: Any = None) -> dict:
    """SLA evaluation of one incident.

    A target is ``met`` when it was done before its deadline, ``breached`` when done late or
    not done and already overdue, otherwise ``pending``.
    """
    level = normalise_level(severity)
    opened = parse_time(opened_at, "opened_at")
    if opened is None:
        raise ValidationError("opened_at is required to compute the SLA status")
    current = parse_time(now, "now") or utc_now()
    target = SLA_TARGETS[level]
    response_due = opened + datetime.timedelta(minutes=target["response_minutes"])
    resolution_due = opened + datetime.timedelta(minutes=target["resolution_minutes"])
    response = _breach(response_due, parse_time(responded_at, "responded_at"), current)
    resolution = _breach(resolution_due, parse_time(resolved_at, "resolved_at"), current)
    response["due"] = format_time(response_due)
    resolution["due"] = format_time(resolution_due)
    return {
        "severity": level,
        "response": response,
        "resolution": resolution,
        "breached": response["breached"] or resolution["breached"],
    }
