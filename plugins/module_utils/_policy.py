# -*- coding: utf-8 -*-
# Copyright: (c) 2025, labops.itsm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The IMS lifecycle policy of seed 002, as data plus small pure check functions.

Platform independent: every ticket adapter (OTOBO now, ServiceNow and Jira later) and the
SOP engine (``_sop.py``) use these tables.  Nothing here performs I/O.

Every check raises :class:`PolicyViolation` with ``sop``, ``rule`` and ``value`` set and a
message of the form ``"<sop>: <rule>: <explanation> (got <value>)"``, so the halt names
the SOP, the rule and the offending value.

Decisions that seed 002 leaves open (documented in ``docs/lifecycle.md``):

* incident: ``open -> escalated`` is allowed only as an *automatic* escalation (high priority
  or a breached response SLA; seed 002 "Escalation Procedures: Automatic");
  ``resolved -> in_progress`` is the reopen (``incident_assign`` with a reopen reason, when the
  end user does not confirm the restoration); ``closed`` is final: a recurrence is a new
  incident linked to the same problem.
* problem statuses: ``open`` (created) -> ``under_investigation`` -> ``known_error``
  (workaround available) -> ``resolved`` -> ``closed``; ``resolved -> under_investigation``
  reopens when the validation evidence does not hold.
* change approval: ``pending -> approved | rejected``; both results are final.
* post-incident review: closing a high-priority incident is allowed and records
  ``pir_required``; the closure counts as complete once ``incident_review`` is recorded.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from typing import Any, Iterable, Mapping, Optional

from ansible_collections.labops.itsm.plugins.module_utils._errors import PolicyViolation

# --------------------------------------------------------------------------- entities and enums

ENTITIES = (
    "incident", "problem", "change_request", "communication", "monitoring_event", "tool_usage",
    "simulation", "kb_article", "vendor_engagement",
)
TICKET_ENTITIES = ("incident", "problem", "change_request")

INCIDENT_CATEGORIES = ("hardware", "software", "security", "performance", "other")
PRIORITIES = ("low", "medium", "high")
SEVERITIES = ("low", "medium", "high")
INCIDENT_STATUSES = ("open", "in_progress", "escalated", "pending_vendor", "resolved", "closed")
DETECTION_SOURCES = ("user_report", "monitoring_tool", "automated_alert")
MONITORING_SOURCES = ("monitoring_tool", "automated_alert")
CHANGE_APPROVALS = ("pending", "approved", "rejected")
PROBLEM_STATUSES = ("open", "under_investigation", "known_error", "resolved", "closed")
RECIPIENT_GROUPS = ("end_users", "stakeholders", "executives", "IT_staff")
EXTERNAL_RECIPIENTS = ("end_users", "stakeholders", "executives")
CONTACT_METHODS = ("phone", "email", "vendor_portal", "API")
TOOLS = (
    "monitoring", "root_cause_analysis", "ITSM_service_desk", "incident_response", "AI_virtual_agent", "AIOps",
    "automation_script",
)
# seed 002 "Communication Types": notifications (status/ETA/resolution) and PIR outputs
MESSAGE_TYPES = ("status", "eta", "resolution", "pir")
KB_ARTICLE_TYPES = ("resolution", "workaround", "prevention")
SIMULATION_SCOPES = ("tabletop", "drill")

# SOP 6 assignment teams and SOP 8 escalation targets
ASSIGNMENT_TEAMS = ("service_desk", "L1", "L2", "L3", "facilities", "change_mgmt", "devops")
ESCALATION_TARGETS = ("L2", "L3", "incident_manager", "change_mgmt", "facilities", "devops")
# seed 002 "Escalation Procedures: Targets": service_desk -> L1 -> L2 -> L3/incident_manager/change_mgmt/facilities/devops
TIER_RANK = {
    "service_desk": 0, "L1": 1, "L2": 2, "L3": 3, "incident_manager": 3, "change_mgmt": 3, "facilities": 3, "devops": 3,
}
TOP_TIER = 3

ROLES = (
    "service_desk", "service_desk_manager", "L1", "L2", "L3", "incident_manager", "change_mgmt", "devops", "facilities",
    "end_user", "automation",
)
# seed 002 SOP 13: "Incident Manager/Service Desk Manager for high priority"
HIGH_PRIORITY_CLOSERS = ("incident_manager", "service_desk_manager")

# seed 002 "Audit Trails": the permitted audit actions (identical to _ledger.ACTIONS)
AUDIT_ACTIONS = (
    "identify", "create", "read", "update", "notify", "escalate", "resolve", "close", "review", "kb_update",
    "vendor_engagement", "simulation", "tool_use", "link",
)

# --------------------------------------------------------------------------- SOP catalogue

# name: (seed 002 SOP number, title, audit actions written on success, entity acted on)
SOP_CATALOG = {
    "entity_lookup": (1, "Entities Lookup / Discovery", ("identify",), None),
    "incident_identify": (2, "Incident Identification", ("identify",), "incident"),
    "incident_log": (3, "Incident Logging", ("create",), "incident"),
    "incident_categorize": (4, "Incident Categorization", ("update",), "incident"),
    "incident_prioritize": (5, "Incident Prioritization", ("update",), "incident"),
    "incident_assign": (6, "Initial Response & Assignment", ("update", "notify"), "incident"),
    "incident_diagnose": (7, "Diagnosis & Temporary Workaround", ("update",), "incident"),
    "incident_escalate": (8, "Escalation", ("escalate",), "incident"),
    "vendor_engage": (9, "Vendor Engagement", ("vendor_engagement",), "incident"),
    "change_request": (10, "Change Coordination: request a change", ("create",), "change_request"),
    "change_approve": (10, "Change Coordination: approve or reject a change", ("update",), "change_request"),
    "change_coordinate": (10, "Change Coordination", ("update",), "incident"),
    # "update": the acknowledgement an alert-path resolve of a still-open incident records (acknowledge input)
    "incident_resolve": (11, "Resolution & Recovery", ("resolve", "update"), "incident"),
    "communication_update": (12, "Communication Updates", ("notify",), "incident"),
    "incident_close": (13, "Incident Closure", ("close",), "incident"),
    "incident_review": (14, "Post-Incident Review (PIR)", ("review",), "incident"),
    "kb_update": (15, "Knowledge Base Update", ("kb_update",), "incident"),
    # "update": a firing alert that reopens its resolved incident (reopen_window) or renames it (repeat_update)
    "monitoring_intake": (16, "Monitoring & Alert Intake", ("create", "update"), "incident"),
    "tool_usage": (17, "Tool & Automation Usage", ("tool_use",), "tool_usage"),
    "simulation_run": (18, "Incident Response Simulation", ("simulation",), "simulation"),
    "problem_create": (19, "Problem Management: Create", ("create", "link"), "problem"),
    "problem_update": (19, "Problem Management: Update", ("update",), "problem"),
    "problem_link_incident": (19, "Problem Management: Link", ("link",), "problem"),
    "problem_workaround": (19, "Problem Management: Workaround", ("kb_update",), "problem"),
    "problem_resolve": (19, "Problem Management: Resolve", ("resolve",), "problem"),
    "problem_close": (19, "Problem Management: Close", ("close",), "problem"),
    "audit_log": (20, "Audit Trail Logging (Global)", AUDIT_ACTIONS, None),
}
SOPS = tuple(SOP_CATALOG)

_INTAKE = ("entity_lookup", "incident_identify", "incident_log", "incident_categorize", "incident_prioritize",
           "incident_assign", "incident_escalate", "communication_update", "tool_usage", "audit_log")
_DESK = _INTAKE + ("incident_diagnose", "incident_resolve", "incident_close", "monitoring_intake")
_TECH = ("entity_lookup", "incident_identify", "incident_log", "incident_diagnose", "incident_escalate", "vendor_engage",
         "change_request", "incident_resolve", "communication_update", "tool_usage", "audit_log")
_PROBLEM_WORK = ("problem_create", "problem_update", "problem_link_incident", "problem_workaround")

# role -> SOPs it may run (seed 002 "Roles and Responsibilities"; docs/lifecycle.md has the matrix)
ROLE_SOPS = {
    "end_user": frozenset(("incident_identify",)),
    "automation": frozenset(_INTAKE + ("incident_resolve", "monitoring_intake")),
    "service_desk": frozenset(_DESK),
    "L1": frozenset(_DESK),
    "service_desk_manager": frozenset(_DESK + ("kb_update",)),
    "L2": frozenset(_INTAKE + _TECH + _PROBLEM_WORK + ("change_coordinate", "kb_update")),
    "L3": frozenset(_INTAKE + _TECH + _PROBLEM_WORK + ("change_coordinate", "kb_update", "problem_resolve")),
    "devops": frozenset(_TECH + _PROBLEM_WORK + ("change_coordinate", "problem_resolve")),
    "facilities": frozenset(_TECH),
    "change_mgmt": frozenset(("entity_lookup", "incident_identify", "incident_log", "incident_diagnose", "change_request",
                              "change_approve", "change_coordinate", "communication_update", "tool_usage",
                              "problem_link_incident", "audit_log")),
    "incident_manager": frozenset(SOPS),
}

# --------------------------------------------------------------------------- lifecycles

# status -> statuses reachable from it (None = not created yet)
INCIDENT_FLOW = {
    None: ("open",),
    "open": ("in_progress", "escalated"),
    "in_progress": ("in_progress", "escalated", "pending_vendor", "resolved"),
    "escalated": ("in_progress", "escalated", "pending_vendor", "resolved"),
    "pending_vendor": ("in_progress", "resolved"),
    "resolved": ("in_progress", "closed"),
    "closed": (),
}
PROBLEM_FLOW = {
    None: ("open",),
    "open": ("under_investigation", "known_error"),
    "under_investigation": ("known_error", "resolved"),
    "known_error": ("known_error", "resolved"),
    "resolved": ("under_investigation", "closed"),
    "closed": (),
}
CHANGE_FLOW = {
    None: ("pending",),
    "pending": ("approved", "rejected"),
    "approved": (),
    "rejected": (),
}
FLOWS = {"incident": INCIDENT_FLOW, "problem": PROBLEM_FLOW, "change_request": CHANGE_FLOW}
STATUS_ENUMS = {"incident": INCIDENT_STATUSES, "problem": PROBLEM_STATUSES, "change_request": CHANGE_APPROVALS}

_ACTIVE_INCIDENT = ("open", "in_progress", "escalated", "pending_vendor")
_ACTIVE_PROBLEM = ("open", "under_investigation", "known_error")
# SOP -> statuses of its ticket in which it may run (the "prior state" check)
SOP_PRIOR_STATES = {
    "incident_log": _ACTIVE_INCIDENT,
    "incident_categorize": _ACTIVE_INCIDENT,
    "incident_prioritize": _ACTIVE_INCIDENT,
    "incident_assign": _ACTIVE_INCIDENT + ("resolved",),
    "incident_diagnose": _ACTIVE_INCIDENT,
    "incident_escalate": ("open", "in_progress", "escalated"),
    "vendor_engage": ("in_progress", "escalated"),
    "change_coordinate": _ACTIVE_INCIDENT,
    "incident_resolve": ("in_progress", "escalated", "pending_vendor"),
    "communication_update": INCIDENT_STATUSES,
    "incident_close": ("resolved",),
    "incident_review": ("resolved", "closed"),
    "kb_update": ("closed",),
    "change_approve": ("pending",),
    "problem_update": _ACTIVE_PROBLEM + ("resolved",),
    "problem_link_incident": _ACTIVE_PROBLEM,
    "problem_workaround": _ACTIVE_PROBLEM,
    "problem_resolve": ("under_investigation", "known_error"),
    "problem_close": ("resolved",),
}
# SOP -> the status it sets (None: leaves the status alone)
SOP_TARGET_STATUS = {
    "incident_identify": "open",
    "monitoring_intake": "open",
    "incident_assign": "in_progress",
    "incident_escalate": "escalated",
    "vendor_engage": "pending_vendor",
    "incident_resolve": "resolved",
    "incident_close": "closed",
    "change_request": "pending",
    "problem_create": "open",
    "problem_workaround": "known_error",
    "problem_resolve": "resolved",
    "problem_close": "closed",
}

# --------------------------------------------------------------------------- violations


def violation(sop: Any, rule: str, explanation: str, value: Any = None) -> PolicyViolation:
    """Build the one exception type of every halt: names the SOP, the rule and the value."""
    message = "{0}: {1}: {2}".format(sop or "ims", rule, explanation)
    if value is not None:
        message += f" (got {value!r})"
    return PolicyViolation(message, sop=sop, rule=rule, value=None if value is None else _plain(value))


def _plain(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def sop_info(sop: Any) -> dict:
    """Catalogue entry of a SOP name; PolicyViolation for unknown names."""
    if sop not in SOP_CATALOG:
        raise violation(sop, "unknown_sop", "sop must be one of " + ", ".join(SOPS), sop)
    number, title, actions, entity = SOP_CATALOG[sop]
    return {"sop": sop, "number": number, "title": title, "audit_actions": actions, "entity": entity}


# --------------------------------------------------------------------------- input checks


def require(sop: str, name: str, value: Any) -> Any:
    """A required input: None, empty or whitespace-only strings/lists halt."""
    if value is None or (isinstance(value, (str, list, dict, tuple)) and not (value.strip() if isinstance(value, str) else value)):
        raise violation(sop, "missing_input", f"{name} is required")
    return value


def check_choice(sop: str, name: str, value: Any, allowed: Iterable[str], required: bool = False) -> Optional[str]:
    """An enum input: exact seed 002 spelling (``IT_staff``, ``API``...). None passes unless required."""
    if value is None:
        if required:
            raise violation(sop, "missing_input", f"{name} is required")
        return None
    allowed = tuple(allowed)
    if value not in allowed:
        raise violation(sop, "invalid_value", "{0} must be one of {1}".format(name, ", ".join(allowed)), value)
    return value


def check_true(sop: str, rule: str, name: str, value: Any) -> None:
    """A confirmation input that must be true (``fix_applied``, ``service_restored``...)."""
    if value is not True:
        raise violation(sop, rule, f"{name} must be true", value)


# --------------------------------------------------------------------------- authorisation


def allowed_sops(role: Any) -> frozenset:
    return ROLE_SOPS.get(role, frozenset())


def authorise(sop: str, role: Any) -> None:
    """Role authorisation of a SOP (ROLE_SOPS)."""
    if role not in ROLES:
        raise violation(sop, "unknown_role", "actor_role must be one of " + ", ".join(ROLES), role)
    if sop not in allowed_sops(role):
        permitted = sorted(name for name, sops in ROLE_SOPS.items() if sop in sops)
        raise violation(sop, "role_not_authorised",
                        "role {0} may not run {1}; permitted roles: {2}".format(role, sop, ", ".join(permitted)), role)


def authorise_closure(sop: str, role: Any, priority: Any) -> None:
    """SOP 13: a high-priority incident is closed only by the Incident or Service Desk Manager."""
    if priority == "high" and role not in HIGH_PRIORITY_CLOSERS:
        raise violation(sop, "authority_required",
                        "closing a high-priority incident needs role {0}".format(" or ".join(HIGH_PRIORITY_CLOSERS)), role)


# --------------------------------------------------------------------------- segregation of duties


def _same_person(left: Any, right: Any) -> bool:
    return bool(left) and bool(right) and str(left).strip().lower() == str(right).strip().lower()


def sod_change_approver(sop: str, approver: Any, requester: Any) -> None:
    """Change initiator != approver."""
    if _same_person(approver, requester):
        raise violation(sop, "segregation_of_duties", "the requester of a change cannot approve or reject it", approver)


def sod_incident_closer(sop: str, closer: Any, reporter: Any, priority: Any) -> None:
    """The reporter cannot close an incident that needs higher authority (high priority)."""
    if priority == "high" and _same_person(closer, reporter):
        raise violation(sop, "segregation_of_duties", "the reporter of a high-priority incident cannot close it", closer)


def sod_problem_closer(sop: str, closer: Any, resolver: Any) -> None:
    """The resolver of a problem cannot confirm its closure after the stability window."""
    if _same_person(closer, resolver):
        raise violation(sop, "segregation_of_duties", "the resolver of a problem cannot close it", closer)


# --------------------------------------------------------------------------- lifecycle checks


def check_exists(sop: str, entity: str, ref: Any, record: Optional[Mapping[str, Any]]) -> Mapping[str, Any]:
    if record is None:
        raise violation(sop, "not_found", f"{entity} {ref} does not exist", ref)
    if record.get("entity") != entity:
        raise violation(sop, "wrong_entity", "{0} is a {1}, {2} needs a {3}".format(ref, record.get("entity"), sop, entity),
                        record.get("entity"))
    return record


def check_prior_state(sop: str, entity: str, status: Any) -> None:
    """The SOP may only run on a ticket in one of SOP_PRIOR_STATES[sop]."""
    allowed = SOP_PRIOR_STATES.get(sop)
    if allowed is not None and status not in allowed:
        raise violation(sop, "wrong_state", "{0} status must be {1}".format(entity, " or ".join(allowed)), status)


def check_transition(sop: str, entity: str, current: Any, target: Any) -> None:
    """``current -> target`` must be an edge of the entity's lifecycle."""
    flow = FLOWS[entity]
    if target not in STATUS_ENUMS[entity]:
        raise violation(sop, "invalid_value", "{0} status must be one of {1}".format(entity, ", ".join(STATUS_ENUMS[entity])), target)
    if target not in flow.get(current, ()):
        raise violation(sop, "invalid_transition", "{0} cannot go from {1} to {2}".format(entity, current or "(new)", target),
                        target)


def check_escalation_path(sop: str, current_team: Any, target: Any) -> None:
    """Escalation goes up the tiers; at the top tier only sideways to another team."""
    check_choice(sop, "escalate_to", target, ESCALATION_TARGETS, required=True)
    rank = TIER_RANK.get(current_team, 0)
    if target == current_team:
        raise violation(sop, "invalid_escalation_path", f"the incident is already with {target}", target)
    if TIER_RANK[target] < rank or (TIER_RANK[target] == rank and rank < TOP_TIER):
        raise violation(sop, "invalid_escalation_path",
                        f"escalation from {current_team} must go to a higher tier", target)


def check_automatic_escalation(sop: str, priority: Any, response_breached: bool) -> None:
    """``open -> escalated`` only when classification (high priority) or an SLA breach triggers it."""
    if priority != "high" and not response_breached:
        raise violation(sop, "automatic_escalation_not_triggered",
                        "an open incident is escalated only when its priority is high or its response SLA is breached",
                        priority)


def check_change_approved(sop: str, change: Mapping[str, Any]) -> None:
    """SOP 10: only an approved change (approved by someone other than its requester) is coordinated."""
    if change.get("status") != "approved":
        raise violation(sop, "change_not_approved", "change {0} must be approved".format(change.get("id")), change.get("status"))
    sod_change_approver(sop, change.get("approver"), change.get("requester"))


def pir_required(priority: Any) -> bool:
    """Seed 002 "Post-Incident Reviews": required for high-priority incidents."""
    return priority == "high"


def closure_complete(record: Mapping[str, Any]) -> bool:
    """A closed incident's closure is complete once a required PIR was recorded."""
    if record.get("status") != "closed":
        return False
    return record.get("pir") != "required"
